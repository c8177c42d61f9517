"""Training curves on the leaderboard: the compact curve a record carries (from a run's metrics.jsonl and the
reward-hacking monitor), its schema checks, the curves plot (one line per trained record), ``check`` on a stale
curves plot, and the settings that tell rows of one method apart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness import leaderboard
from harness.compare import load_evaluated
from harness.errors import DataError
from harness.leaderboard import render
from harness.records import ResultRecord, run_folder_curve, training_curve, with_run_details
from tests.test_compare import base_verdicts, improved, make_run

CONFIG = {"learning_rate": 3e-5, "train_batch_size": 4, "adam_betas": [0.9, 0.999]}


def write_training_run(folder: Path, rewards: list[float], images_per_round: int = 16,
                       monitor: dict | None = None) -> Path:
    """A training run folder as ``harness train`` leaves it: checkpoint/, metrics.jsonl, summary.json."""
    (folder / "checkpoint").mkdir(parents=True)
    rows = [{"round": r + 1, "reward": reward, "loss": 0.69, "images_sampled": images_per_round * (r + 1),
             "grad_norm": 0.01} for r, reward in enumerate(rewards)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "summary.json").write_text(json.dumps({"method": "d3po", "monitor": monitor}))
    return folder


def training(method: str, run: Path, budget: int, seed: int = 0, feedback: str = "objective:geneval",
             monitor: dict | None = None, **config: object) -> dict:
    return {"method": method, "feedback": feedback, "seed": seed, "in_reward": True, "ckpt": "builtin:shapes",
            "budget": budget, "config": {**CONFIG, **config}, "monitor": monitor,
            "cost": {"wall_s": 60.0, "images_sampled": budget, "labels_used": 0},
            "checkpoint": str(run / "checkpoint")}


def test_curve_from_a_run_folder(tmp_path: Path) -> None:
    monitor = {"curves": {"round": [0, 2], "proxy_reward": [None, 0.5], "geneval/overall": [0.40, 0.45],
                          "held_out": [0.40, 0.45], "distortion_rate": [0.0, 0.125], "colour_entropy": [3.0, 2.5],
                          "seed_diversity": [0.2, 0.1], "hacking_warning": [False, False]}, "warnings": []}
    run = write_training_run(tmp_path / "run", [0.25, 0.5, 0.75], monitor=monitor)
    curve = run_folder_curve(run, monitor)
    assert curve == {"per_point": 1, "round": [0, 1, 2, 3], "images_sampled": [0, 16, 32, 48],
                     "reward": [None, 0.25, 0.5, 0.75], "loss": [None, 0.69, 0.69, 0.69],
                     "held_out": [0.4, None, 0.45, None], "distortion_rate": [0.0, None, 0.125, None],
                     "colour_entropy": [3.0, None, 2.5, None], "seed_diversity": [0.2, None, 0.1, None],
                     "held_out_benchmark": "geneval"}
    # without the summary's copy, the monitor file of a train-and-eval run folder gives the same curves
    (run / "monitor").mkdir()
    (run / "monitor" / "monitor.json").write_text(json.dumps({"curves": monitor["curves"]}))
    assert run_folder_curve(run) == curve
    # the eval path: a training block naming the run's checkpoint gets the curve; others are left alone
    filled = with_run_details({"method": "d3po", "checkpoint": str(run / "checkpoint"), "monitor": monitor})
    assert filled["curve"] == curve
    assert with_run_details({"method": "d3po", "checkpoint": str(tmp_path / "gone" / "checkpoint")}).keys() == {
        "method", "checkpoint"}
    assert with_run_details({"ckpt": "builtin:shapes"}) == {"ckpt": "builtin:shapes"}
    assert with_run_details({"checkpoint": str(run / "checkpoint"), "curve": {"x": 1}})["curve"] == {"x": 1}
    # the judge that made the training signal comes from summary.json; a record's own copy is kept
    scorer = {"feedback": "objective:geneval", "perception": {"detector": "oracle@3", "color": "oracle@3"}}
    (run / "summary.json").write_text(json.dumps({"method": "d3po", "feedback_scorer": scorer}))
    assert with_run_details({"checkpoint": str(run / "checkpoint")})["feedback_scorer"] == scorer
    assert with_run_details({"checkpoint": str(run / "checkpoint"), "feedback_scorer": {"x": 1}})[
        "feedback_scorer"] == {"x": 1}
    (run / "metrics.jsonl").write_text("{not json\n")
    with pytest.raises(DataError, match=r"metrics.jsonl:1: not valid JSON .*; each line must be one metrics object"):
        run_folder_curve(run)


def test_long_runs_are_grouped_into_at_most_100_points() -> None:
    """250 rounds and a measurement before training: round 0 alone, then 84 groups of ceil(250 / 99) = 3 rounds,
    each with its last round and image count and the mean of its rewards."""
    metrics = [{"round": r, "reward": float(r % 3 == 0), "images_sampled": 16 * r} for r in range(1, 251)]
    curve = training_curve(metrics, {"round": [0, 3, 250], "held_out": [0.4, 0.5, 0.6]})
    assert curve is not None and curve["per_point"] == 3 and len(curve["round"]) == 85
    assert curve["round"][:3] == [0, 3, 6] and curve["round"][-2:] == [249, 250]
    assert curve["images_sampled"][:3] == [0, 48, 96] and curve["images_sampled"][-1] == 4000
    assert curve["reward"][:3] == [None, 0.333333, 0.333333] and curve["reward"][-1] == 0.0  # round 250 alone
    assert curve["held_out"][:3] == [0.4, 0.5, None] and curve["held_out"][-1] == 0.6
    offline = training_curve([{"step": s, "loss": 1.0 / s} for s in range(1, 5)])
    assert offline == {"per_point": 1, "step": [1, 2, 3, 4], "loss": [1.0, 0.5, 0.333333, 0.25]}
    assert training_curve([]) is None


def test_record_schema_checks_the_curve(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", base_verdicts(n_prompts=6), replicates=20)
    record = ResultRecord.load(run / "result.json")  # a record without a curve still loads
    good = training_curve([{"round": r, "reward": 0.5, "images_sampled": 16 * r} for r in range(1, 4)])
    record.training = {"method": "d3po", "curve": good}
    record.save(tmp_path / "ok.json")
    assert ResultRecord.load(tmp_path / "ok.json").training["curve"] == good
    for bad, message in (({**good, "reward": [0.5]}, r"curve\.reward: 1 values for 3 points"),
                         ({**good, "lr": [1, 2, 3]}, r"curve: unknown field 'lr'"),
                         ({**good, "round": list(range(101))}, r"curve\.round: more than 100 items"),
                         ({"per_point": 1, "reward": [0.5]}, r"matches 0 of the anyOf alternatives")):
        record.training = {"method": "d3po", "curve": bad}
        with pytest.raises(DataError, match=message):
            record.to_json()


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Base, D3PO at 640 and 960 images (with different learning rates), and GRPO with monitor curves: every
    trained run folder is on disk, so publish fills the curves."""
    tmp = tmp_path_factory.mktemp("curves")
    verdicts = base_verdicts(n_prompts=24)
    monitor = {"curves": {"round": [0, 20, 40], "geneval/overall": [0.4, 0.42, 0.41], "held_out": [0.4, 0.42, 0.41],
                          "distortion_rate": [0.0, 0.0, 0.1]}, "warnings": []}
    d3po_640 = write_training_run(tmp / "d3po-640", [0.3] * 40)
    d3po_960 = write_training_run(tmp / "d3po-960", [0.4] * 60)
    grpo = write_training_run(tmp / "grpo", [0.2] * 40, monitor=monitor)
    runs = [make_run(tmp / "base", verdicts),
            make_run(tmp / "e640", improved(verdicts, 10), method="d3po", model=str(d3po_640 / "checkpoint"),
                     training=training("d3po", d3po_640, 640)),
            make_run(tmp / "e960", improved(verdicts, 20), method="d3po", model=str(d3po_960 / "checkpoint"),
                     training=training("d3po", d3po_960, 960, seed=1, learning_rate=1e-5)),
            make_run(tmp / "egrpo", verdicts, method="grpo", model=str(grpo / "checkpoint"),
                     training=training("grpo", grpo, 640, monitor=monitor))]
    results = tmp / "results"
    for run in runs:
        leaderboard.publish(run, results, replicates=50)
    leaderboard.build(results)
    return results


def test_published_records_carry_their_curves(board: Path) -> None:
    records = {r.record.method: r.record for r in leaderboard.load_board(board)}
    assert "curve" not in records["pretrained"].training
    grpo = records["grpo"].training["curve"]
    assert grpo["round"][:2] == [0, 1] and grpo["held_out"][:2] == [0.4, None] and len(grpo["round"]) == 41
    assert len(json.dumps(grpo)) < 4000


def test_curves_plot_has_one_line_per_trained_record(board: Path) -> None:
    svg = (board / "plots" / "geneval-builtin-curves.svg").read_text()
    panels = svg.split('transform="rotate(-90')
    assert len(panels) == 4  # proxy reward, held-out score, distortion rate (only GRPO's monitor measured them)
    assert [panel.count("<path") for panel in panels[1:]] == [3, 1, 1]
    assert "held-out geneval (monitor)" in svg and "images sampled during training" in svg
    # colour by method, dash by settings: the two D3PO lines share a colour and differ in dash
    strokes = re.findall(r'<path d="[^"]*" fill="none" stroke="(#[0-9a-f]{6})" stroke-width="1.5"'
                         r'( stroke-dasharray="[^"]*")?/>', panels[1])
    assert strokes[0][0] == strokes[1][0] != strokes[2][0] and strokes[0][1] != strokes[1][1]
    # the 960-image run reaches the right end of the axis, the 640-image runs two thirds of it
    ends = [float(m) for m in re.findall(r'L([0-9.]+),[0-9.]+" fill="none"', panels[1])]
    assert ends == [round(60.0 + 520.0 * 640 / 960, 1), 580.0, round(60.0 + 520.0 * 640 / 960, 1)]
    md = (board / "LEADERBOARD.md").read_text()
    html = (board / "leaderboard.html").read_text()
    assert "![training curves](plots/geneval-builtin-curves.svg)" in md
    assert '<img src="plots/geneval-builtin-curves.svg" alt="training curves">' in html


def test_check_fails_on_a_stale_curves_plot(board: Path, tmp_path: Path) -> None:
    import shutil

    results = tmp_path / "results"
    shutil.copytree(board, results)
    plot = results / "plots" / "geneval-builtin-curves.svg"
    plot.write_text(plot.read_text().replace("<path", "<path opacity=\"0.5\"", 1))
    (problem,) = leaderboard.check(results)
    assert problem.endswith("geneval-builtin-curves.svg differs from what the records produce: run `harness "
                            "leaderboard build`")
    leaderboard.build(results)
    assert leaderboard.check(results) == []
    # a board whose records have no curve draws none, and a leftover curves plot is reported
    empty = tmp_path / "plain"
    leaderboard.publish(make_run(tmp_path / "run", base_verdicts(n_prompts=6), replicates=20), empty, replicates=20)
    leaderboard.build(empty)
    assert not (empty / "plots" / "geneval-builtin-curves.svg").exists()
    shutil.copy(plot, empty / "plots" / plot.name)
    (problem,) = leaderboard.check(empty)
    assert problem.endswith("geneval-builtin-curves.svg is produced by no record: run `harness leaderboard build`")


def test_rows_of_one_method_show_the_settings_that_differ(board: Path) -> None:
    tables = leaderboard.tables([load_evaluated(p) for p in sorted((board / "records").glob("*.json"))],
                                replicates=20)
    (table,) = tables
    labels = render.settings_labels(table.rows)
    by_model = {Path(row.record.model).parent.name: labels.get(row.record_id) for row in table.rows}
    assert by_model == {"": None, "d3po-640": "budget=640, learning_rate=3e-05",
                        "d3po-960": "budget=960, learning_rate=1e-05", "grpo": ""}
    assert render.header(table)[2] == "Settings"
    md = (board / "LEADERBOARD.md").read_text()
    assert "| budget=960, learning_rate=1e-05 | 1 |" in md
    legend = (board / "plots" / "geneval-builtin-curves.svg").read_text()
    assert "D3PO budget=640, learning_rate=3e-05 (seed 0)" in legend and "GRPO (seed 0)" in legend
    # a key one row lacks counts as a difference; the seed never does
    first = {"budget": 640, "config": {"skip_final_steps": 4}, "seed": 0}
    second = {"budget": 640, "config": {"early_steps_fraction": 0.6}, "seed": 1}
    rows = [_row("a", "d3po", first), _row("b", "d3po", second), _row("c", "d3po", {**first, "seed": 2})]
    assert render.settings_labels(rows) == {"a": "skip_final_steps=4", "b": "early_steps_fraction=0.6",
                                            "c": "skip_final_steps=4"}
    # runs trained on different versions of the judge are told apart by it
    judged = [{**first, "feedback_scorer": {"perception": {"detector": f"oracle@{v}", "color": f"oracle@{v}"}}}
              for v in (2, 3)]
    rows = [_row("a", "d3po", judged[0]), _row("b", "d3po", judged[1])]
    assert render.settings_labels(rows) == {"a": "judge=oracle@2", "b": "judge=oracle@3"}
    # an older record without budget and ckpt: its budget is the images it sampled, its ckpt unknown (no difference)
    older = {"config": {"lr": 1}, "cost": {"images_sampled": 640}, "seed": 0}
    newer = {"budget": 640, "ckpt": "builtin:shapes", "config": {"lr": 1}, "cost": {"images_sampled": 640}, "seed": 1}
    rows = [_row("a", "d3po", older), _row("b", "d3po", newer)]
    assert render.settings_labels(rows) == {"a": "", "b": ""}
    rows.append(_row("c", "d3po", {**newer, "ckpt": "other", "budget": 960}))
    assert render.settings_labels(rows) == {"a": "budget=640", "b": "budget=640, ckpt=builtin:shapes",
                                            "c": "budget=960, ckpt=other"}


def test_trailing_mean() -> None:
    assert render.trailing_mean([1.0, None, 3.0, 5.0, 7.0], 3) == [1.0, None, 2.0, 4.0, 5.0]


def _row(record_id: str, method: str, training: dict) -> leaderboard.Row:
    record = ResultRecord(benchmark="geneval", benchmark_version="1", world="builtin", model=record_id,
                          checkpoint_fingerprint=record_id, scores={"overall": 0.5}, n_prompts=1, n_images=1, seeds={},
                          sampler={}, perception={}, method=method, training=training)
    from harness.compare import Evaluated

    return leaderboard.Row(record_id, Evaluated(record, None, Path(record_id)))


def test_both_eval_paths_write_the_curve(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    """train-and-eval's trained record and `harness eval --ckpt RUN/checkpoint` carry the same curve: the run's one
    round (2 images) and the monitor's measurements before and after it."""
    from harness.api import EvalSettings, evaluate, train_and_eval

    out = tmp_path / "run"
    settings = {"num_inference_steps": "2", "prompts_per_round": "1", "images_per_prompt": "2"}
    _, trained = train_and_eval("d3po", str(builtin_random_ckpt), "objective:brightness", "builtin:geneval-train", 2,
                                out, ["geneval"], eval_settings=EvalSettings(limit=2), monitor_every=1,
                                settings=settings, progress=False)
    curve = trained.training["curve"]
    assert curve["round"] == [0, 1] and curve["images_sampled"] == [0, 2] and curve["reward"][0] is None
    assert curve["held_out"] == trained.training["monitor"]["curves"]["held_out"]
    assert curve["held_out_benchmark"] == "geneval" and len(curve["seed_diversity"]) == 2
    (again,) = evaluate(str(out / "checkpoint"), ["geneval"], out=tmp_path / "eval", settings=EvalSettings(limit=2),
                        progress=False)
    assert again.method == "d3po" and again.training["curve"] == curve


def test_rate_tables_leave_counts_and_wilson_bounds_out_of_the_score_columns() -> None:
    from types import SimpleNamespace

    from harness.leaderboard import Table

    scores = {"overall": 0.2, "overall_low95": 0.15, "overall_high95": 0.26, "n_judged": 256, "n_flagged": 52,
              "n_unjudged": 0, "single": 0.3, "counting": 0.25}
    row = SimpleNamespace(record=SimpleNamespace(scores=scores))
    table = Table("distortion", "1.0", "builtin", [row])  # type: ignore[list-item]
    assert table.keys == ["overall", "single", "counting"]
