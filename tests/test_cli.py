"""The CLI end to end on a random-init builtin model, and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def harness(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or ROOT, timeout=600)


def test_version_and_bench_list() -> None:
    assert "harness 0.1.0" in harness("--version").stdout
    listing = harness("bench", "list")
    assert listing.returncode == 0 and "geneval" in listing.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "--bench", "nosuchbench"], "unknown benchmark 'nosuchbench'"),
        (["eval", "--ckpt", "/nonexistent/model"], "/nonexistent/model"),
        (["eval", "--ckpt", "builtin:nosuchmodel"], "nosuchmodel"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args: list[str], message: str) -> None:
    result = harness(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_eval_writes_record_and_official_results(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = ["eval", "--ckpt", str(builtin_random_ckpt), "--bench", "geneval", "--limit", "6", "--out", str(out),
            "--tags", "single_object,counting"]
    first = harness(*args)
    assert first.returncode == 0, first.stderr
    assert "overall" in first.stdout and "comparable to published tables: NO" in first.stdout
    (run_dir,) = (out / "runs").iterdir()
    record = json.loads((run_dir / "result.json").read_text())
    assert record["schema_version"] == 3 and record["n_images"] == 24 and record["n_prompts"] == 6
    assert set(record["scores"]) == {"overall", "single_object"}  # the first 6 prompts are all single-object
    assert record["sampler"]["num_inference_steps"] == 2 and record["checkpoint_fingerprint"]
    assert record["environment"]["packages"]["torch"]
    lines = (run_dir / "geneval_results.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    assert set(row) == {"filename", "tag", "prompt", "correct", "reason", "metadata", "details"}
    assert json.loads(row["metadata"])["tag"] == "single_object"
    images = sorted((out / "images").rglob("*.png"))
    assert len(images) == 24
    stamps = [p.stat().st_mtime_ns for p in images]
    again = harness(*args)
    assert again.returncode == 0 and "24/24 cached" in again.stderr + again.stdout
    assert [p.stat().st_mtime_ns for p in images] == stamps


def test_unknown_tag_is_an_error(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    result = harness("eval", "--ckpt", str(builtin_random_ckpt), "--tags", "nosuchtag", "--out", str(tmp_path))
    assert result.returncode == 2 and "unknown tag(s) nosuchtag" in result.stderr


def test_unwritable_out_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = harness("eval", "--out", str(blocker / "x"))
    assert result.returncode == 2 and "not writable" in result.stderr


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                         tmp_path: Path) -> None:
    """typer turns Ctrl-C into a silent exit 130; the entry point adds one line saying how to go on."""
    import harness.api
    from harness.cli import run

    def interrupted(results: Path) -> list[str]:
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.api, "leaderboard_check", interrupted)
    monkeypatch.setattr(sys, "argv", ["harness", "leaderboard", "check", "--results", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        run()
    assert exit_info.value.code == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted: ") and "run the same command again" in lines[0]
