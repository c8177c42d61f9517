"""Leaderboards from validated records: publish, deterministic build, check (stale tables, edited records), the
committed ``results/`` leaderboard, and the Every Eval Ever export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness import leaderboard
from harness.compare import load_evaluated
from harness.eee import eee_documents, eee_errors, export_eee
from harness.errors import DataError, HarnessError
from harness.leaderboard import render
from tests.test_compare import base_verdicts, improved, make_run

ROOT = Path(__file__).resolve().parents[1]
TRAINING = {"method": "d3po", "feedback": "objective:geneval", "seed": 0, "in_reward": True, "ckpt": "builtin:shapes",
            "cost": {"wall_s": 600.0, "images_sampled": 640, "labels_used": 0}}


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder with a base record, a known-better D3PO record and a record on other seeds."""
    tmp = tmp_path_factory.mktemp("board")
    verdicts = base_verdicts(n_prompts=30)
    runs = [make_run(tmp / "base", verdicts),
            make_run(tmp / "d3po", improved(verdicts, 25), method="d3po", training=TRAINING),
            make_run(tmp / "grpo", verdicts, method="grpo", seed_offset=7,
                     training={**TRAINING, "method": "grpo", "in_reward": False})]
    results = tmp / "results"
    for run in runs:
        leaderboard.publish(run, results, replicates=100)
    leaderboard.build(results)
    return results


def copy_of(board: Path, tmp_path: Path) -> Path:
    target = tmp_path / "results"
    shutil.copytree(board, target)
    return target


def test_build_is_deterministic_and_check_passes(board: Path, tmp_path: Path) -> None:
    before = {p.relative_to(board): p.read_bytes() for p in board.rglob("*") if p.is_file()}
    again = copy_of(board, tmp_path)
    leaderboard.build(again)
    after = {p.relative_to(again): p.read_bytes() for p in again.rglob("*") if p.is_file()}
    assert before == after
    assert leaderboard.check(board) == []
    assert {str(p) for p in before if p.parts[0] == "plots"} == {"plots/geneval-builtin-tags.svg",
                                                                 "plots/geneval-builtin-cost.svg"}


def test_table_rows_deltas_and_marks(board: Path) -> None:
    text = (board / "LEADERBOARD.md").read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["base"].count("[") == 7  # overall and six tags, each with an interval
    d3po = rows["D3PO"]
    assert "⚑" in d3po and "†" in d3po and "10.0 min" in d3po and "640" in d3po
    delta = d3po.split(" | ")[11]
    assert delta.startswith("+") and delta.endswith("*")  # significant gain against the base
    assert "McNemar" in d3po.split(" | ")[12]
    assert rows["GRPO"].split(" | ")[11] == "≠" and "≠ GRPO" in text and "different seeds" in text
    assert "RankDPO, Karthik et al., arXiv 2410.18013, Table 1" in text and "| SDXL | RankDPO | 0.61 |" in text
    html = (board / "leaderboard.html").read_text()
    assert html.count("<table>") == 3 and "plots/geneval-builtin-tags.svg" in html
    svg = (board / "plots" / "geneval-builtin-tags.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<rect") > 3 * 7


def test_check_catches_a_stale_table(board: Path, tmp_path: Path) -> None:
    results = copy_of(board, tmp_path)
    md = results / "LEADERBOARD.md"
    md.write_text(md.read_text().replace("D3PO", "D3PO-edited"))
    (problem,) = leaderboard.check(results)
    assert problem.endswith("LEADERBOARD.md differs from what the records produce: run `harness leaderboard build`")
    (results / "plots" / "geneval-builtin-cost.svg").unlink()
    assert any("geneval-builtin-cost.svg is missing" in p for p in leaderboard.check(results))
    leaderboard.build(results)
    assert leaderboard.check(results) == []


def test_check_catches_an_edited_record(board: Path, tmp_path: Path) -> None:
    results = copy_of(board, tmp_path)
    path = next(p for p in (results / "records").glob("*-d3po-*.json"))
    data = json.loads(path.read_text())
    data["scores"]["overall"] += 0.05
    path.write_text(json.dumps(data))
    (problem,) = leaderboard.check(results)
    assert "score overall=" in problem and "does not follow from its per-image results" in problem
    data["scores"]["overall"] = "high"
    path.write_text(json.dumps(data))
    (problem,) = leaderboard.check(results)
    assert "not a valid result record: $.scores.overall: expected number or null, got str" in problem


def test_check_catches_edited_samples_and_orphans(board: Path, tmp_path: Path) -> None:
    results = copy_of(board, tmp_path)
    samples = next((results / "records").glob("*-grpo-*.samples.jsonl"))
    samples.write_text(samples.read_text().replace('"score": 0.0', '"score": 1.0', 1))
    (problem,) = leaderboard.check(results)
    assert "does not match the sha256" in problem
    samples.unlink()
    next((results / "records").glob("*-grpo-*.json")).unlink()
    (results / "records" / "stray.samples.jsonl").write_text("")
    assert any("samples file without a record" in p for p in leaderboard.check(results))


def test_publish_refuses_scores_that_do_not_follow(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", base_verdicts(n_prompts=6))
    data = json.loads((run / "result.json").read_text())
    data["scores"]["counting"] = 0.99
    (run / "result.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"score counting=0\.99 does not follow"):
        leaderboard.publish(run, tmp_path / "results")
    shutil.rmtree(run)
    with pytest.raises(HarnessError, match="neither a run folder"):
        leaderboard.publish(run, tmp_path / "results")


def test_publish_completes_a_schema_2_run(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", base_verdicts(n_prompts=12))
    data = json.loads((run / "result.json").read_text())
    for key in ("prompt_set_hash", "seed_hash", "scorer_hash", "intervals", "standard_errors", "bootstrap", "samples",
                "notes"):
        data.pop(key)
    (run / "result.json").write_text(json.dumps({**data, "schema_version": 2}))
    published = load_evaluated(leaderboard.publish(run, tmp_path / "results", replicates=50)).record
    assert set(published.intervals) == set(published.scores) and published.samples["rows"] == 48
    assert published.notes == ["published from a schema-2 run folder; intervals and hashes recomputed from its samples"]


def test_publish_takes_method_and_cost_from_a_training_summary(tmp_path: Path) -> None:
    """A trained checkpoint evaluated with plain `harness eval` is recorded as pretrained; its training run's
    summary.json (beside the checkpoint folder) gives the method, cost and in-reward mark."""
    run_folder = tmp_path / "train-run"
    checkpoint = run_folder / "checkpoint"
    checkpoint.mkdir(parents=True)
    (run_folder / "summary.json").write_text(json.dumps({
        "method": "grpo", "ckpt": "builtin:shapes", "feedback": "objective:geneval", "seed": 1,
        "feedback_scorer": {"benchmark": "geneval"}, "cost": {"wall_s": 90.0, "images_sampled": 64}}))
    run = make_run(tmp_path / "run", base_verdicts(n_prompts=6), model=str(checkpoint))
    published = load_evaluated(leaderboard.publish(run, tmp_path / "results", replicates=20)).record
    assert published.method == "grpo" and published.training["cost"]["wall_s"] == 90.0
    assert published.training["in_reward"] is True and published.training["seed"] == 1
    (tmp_path / "other.json").write_text(json.dumps({"budget": 64}))
    with pytest.raises(DataError, match="not a harness training summary"):
        leaderboard.publish(run, tmp_path / "results", training_summary=tmp_path / "other.json")


def test_empty_board_builds(tmp_path: Path) -> None:
    leaderboard.build(tmp_path)
    assert "No records published yet." in (tmp_path / "LEADERBOARD.md").read_text()
    assert leaderboard.check(tmp_path) == []


def test_committed_leaderboard_is_what_the_records_produce() -> None:
    """CI's leaderboard regeneration: the committed results/ must be exactly what its records give."""
    results = ROOT / "results"
    assert (results / "records").is_dir(), "results/records/ is missing from the checkout"
    assert leaderboard.check(results) == []


def test_cli_check_fails_with_one_line(board: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    results = copy_of(board, tmp_path)
    (results / "leaderboard.html").write_text("stale")
    out = CliRunner().invoke(app, ["leaderboard", "check", "--results", str(results)])
    assert out.exit_code == 1
    assert out.output.strip().splitlines() == [
        f"leaderboard check failed: {results / 'leaderboard.html'} differs from what the records produce: run "
        "`harness leaderboard build`"]
    assert CliRunner().invoke(app, ["leaderboard", "build", "--results", str(results)]).exit_code == 0
    assert "check passed" in CliRunner().invoke(app, ["leaderboard", "check", "--results", str(results)]).output


# --- Every Eval Ever ---------------------------------------------------------------------------------------------


def test_eee_export_is_valid_and_deterministic(board: Path, tmp_path: Path) -> None:
    records = sorted((board / "records").glob("*[!l].json"))
    first = export_eee(records, tmp_path / "a")
    second = export_eee(records, tmp_path / "b")
    assert [p.relative_to(tmp_path / "a") for p in first] == [p.relative_to(tmp_path / "b") for p in second]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes()
    base = next(p for p in first if p.parent.name == "builtin_shapes")
    assert {p.parent.name for p in first} == {"builtin_shapes", "builtin_shapes_d3po", "builtin_shapes_grpo"}
    doc = json.loads(base.read_text())
    assert base.parts[-4:-2] == ("geneval", "harness")
    assert doc["schema_version"] == "0.3.0" and len(doc["evaluation_results"]) == 7
    overall = doc["evaluation_results"][0]
    uncertainty = overall["score_details"]["uncertainty"]
    assert overall["evaluation_result_id"] == "geneval.overall"
    assert uncertainty["confidence_interval"]["confidence_level"] == 0.95
    assert uncertainty["num_samples"] == 30 and uncertainty["num_bootstrap_samples"] == 100
    samples = base.with_name(doc["detailed_evaluation_results"]["file_path"])
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(rows) == doc["detailed_evaluation_results"]["total_rows"] == 120
    assert rows[0]["input"]["raw"] == "a photo of thing 0" and rows[0]["evaluation"]["is_correct"] in (True, False)
    assert eee_errors(doc, rows) == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d, r: d.pop("eval_library"), "missing required field 'eval_library'"),
        (lambda d, r: d["source_metadata"].update(source_type="scrape"), "'scrape' is not one of"),
        (lambda d, r: d["evaluation_results"][0]["score_details"].update(score=None), "expected number, got NoneType"),
        (lambda d, r: d["evaluation_results"][0]["metric_config"].pop("max_score"), "need min_score and max_score"),
        (lambda d, r: d["evaluation_results"][0].update(source_data={"source_type": "url"}), "oneOf"),
        (lambda d, r: r[0]["evaluation"].pop("is_correct"), "samples[0].evaluation: missing required field"),
        (lambda d, r: r[1].update(evaluation_id="other"), "samples[1]: evaluation_id does not match"),
        (lambda d, r: r.pop(), "total_rows does not match"),
    ],
)
def test_eee_checks_catch_invalid_documents(board: Path, mutate: object, message: str) -> None:
    record = sorted((board / "records").glob("*[!l].json"))[0]
    _, doc, rows = eee_documents(load_evaluated(record))
    mutate(doc, rows)  # type: ignore[operator]
    assert any(message in e for e in eee_errors(doc, rows)), eee_errors(doc, rows)


def test_seed_summary_averages_the_per_seed_deltas_with_a_t_interval(tmp_path: Path) -> None:
    from harness.compare import compare

    verdicts = base_verdicts(n_prompts=30)
    base = make_run(tmp_path / "base", verdicts)
    seeds = {seed: make_run(tmp_path / f"d3po{seed}", improved(verdicts, flips), method="d3po",
                            model=f"d3po{seed}/checkpoint", training={**TRAINING, "seed": seed})
             for seed, flips in ((0, 10), (1, 16), (2, 4))}
    single = make_run(tmp_path / "grpo0", improved(verdicts, 3), method="grpo", model="grpo0/checkpoint",
                      training={**TRAINING, "method": "grpo", "seed": 0, "in_reward": False})
    # each seed's reward model learned from its own labels: one setting over two seeds, beside the true reward
    learned = [make_run(tmp_path / f"grpo-rm{seed}", improved(verdicts, 5 + seed), method="grpo",
                        model=f"grpo-rm{seed}/checkpoint",
                        training={**TRAINING, "method": "grpo", "seed": seed, "in_reward": False,
                                  "feedback": f"reward:runs/reward-model-seed{seed}/model"}) for seed in (0, 1)]
    results = tmp_path / "results"
    for run in (base, *seeds.values(), single, *learned):
        leaderboard.publish(run, results, replicates=100)
    leaderboard.build(results)
    text = (results / "LEADERBOARD.md").read_text()
    summary = text.split("Across training seeds (")[1].split("\n\n")[1]  # the block under the sub-table's title
    _, _, row, rm = summary.splitlines()  # header, rule, D3PO, GRPO on the learned rewards (true reward: one seed)
    assert rm.startswith("| GRPO | feedback=reward:runs/reward-model-seed*/model | 30 × 4 | 0, 1 | ")
    cells = row.strip("| ").split(" | ")
    deltas = [compare(base, seeds[s]).overall.delta for s in (0, 1, 2)]
    mean = sum(deltas) / 3
    half = 4.302653 * (sum((d - mean) ** 2 for d in deltas) / 2) ** 0.5 / 3 ** 0.5  # t_{0.975, 2} sd / sqrt(3)
    assert cells[:4] == ["D3PO", "", "30 × 4", "0, 1, 2"] and cells[-1] == "⚑"
    assert cells[5].rstrip("*") == f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]"
    assert cells[5].endswith("*") == (mean - half > 0)
    assert cells[6] == " / ".join(f"{d:+.3f}" for d in deltas)
    assert "Across training seeds" in (results / "leaderboard.html").read_text()
    forest = (results / "plots" / "geneval-builtin-seeds.svg").read_text()  # one row per group: dot, line, ticks
    assert forest.count("<circle") == 2 and "D3PO (n=3)" in forest and "reward-model-seed*/model (n=2)" in forest
    assert "plots/geneval-builtin-seeds.svg" in text
    # The per-tag plot: one bar series per seeded group (its mean over seeds) and per row outside any group.
    tags = (results / "plots" / "geneval-builtin-tags.svg").read_text()
    assert "D3PO: mean of seeds 0,1,2 (t interval)" in tags
    assert "reward-model-seed*/model: mean of seeds 0,1 (t interval)" in tags
    assert tags.count("d3po0/checkpoint") == 0 and "grpo0/checkpoint" in tags  # GRPO true reward: one seed
    table = leaderboard.tables(leaderboard.load_board(results), replicates=100)[0]
    d3po = next(s for s in render.tag_series(table) if s[0].startswith("D3PO"))
    overall = [json.loads((seeds[s] / "result.json").read_text())["scores"]["overall"] for s in (0, 1, 2)]
    assert d3po[1][table.keys.index("overall")] == pytest.approx(sum(overall) / 3)
    assert len(render.tag_series(table)) == 4  # base, GRPO (one seed), D3PO (3 seeds), GRPO on learned rewards
    assert leaderboard.check(results) == []


def test_records_of_different_judges_get_their_own_tables(tmp_path: Path) -> None:
    verdicts = base_verdicts(n_prompts=30)
    old, new = {"detector": "oracle@10", "color": "oracle@10"}, {"detector": "oracle@18", "color": "oracle@18"}
    runs = [make_run(tmp_path / "base-old", verdicts, perception=old),
            make_run(tmp_path / "base-new", improved(verdicts, 2), perception=new),
            make_run(tmp_path / "d3po-old", improved(verdicts, 8), method="d3po", model="old/checkpoint",
                     training=TRAINING, perception=old),
            make_run(tmp_path / "d3po-new", improved(verdicts, 12), method="d3po", model="new/checkpoint",
                     training=TRAINING, perception=new)]
    results = tmp_path / "results"
    for run in runs:
        leaderboard.publish(run, results, replicates=100)
    built = leaderboard.tables(leaderboard.load_board(results), replicates=100)
    assert [(t.judge, t.slug) for t in built] == [("oracle@10", "geneval-builtin-oracle-10"),
                                                  ("oracle@18", "geneval-builtin-oracle-18")]
    for table in built:  # each trained row is compared with the base its own judge scored
        base, trained = table.rows
        assert trained.base is base and trained.comparison is not None
    leaderboard.build(results)
    text = (results / "LEADERBOARD.md").read_text()
    assert "## geneval v1.0 · builtin world · judged by oracle@10" in text and "judged by oracle@18" in text
    assert {p.name for p in (results / "plots").glob("*.svg")} == {
        f"geneval-builtin-oracle-{v}-{kind}.svg" for v in (10, 18) for kind in ("tags", "cost")}
    assert leaderboard.check(results) == []
