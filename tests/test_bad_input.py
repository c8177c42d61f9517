"""Bad input, tried as a new user would: bad flags, and mutated copies of a run folder the harness wrote.

Every case ends in one ``error: ...`` line and exit code 2 with nothing written, or in a score where every image
that was not scored is counted and named in the record's ``skipped`` list; never a traceback, never NaN in a
result file, never an image silently dropped or scored as wrong.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.api import EvalSettings, evaluate, score
from harness.cli import run
from harness.errors import HarnessError
from harness.images import image_problem, read_rgb
from harness.records import ResultRecord


def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """The real entry point in this process (a subprocess per case would cost a torch import each)."""
    monkeypatch.setattr(sys, "argv", ["harness", *args])
    with pytest.raises(SystemExit) as exited:
        run()
    out = capsys.readouterr()
    return int(exited.value.code or 0), out.out, out.err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# --- flags -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["--guidance", "nan"], "--guidance nan: guidance_scale must be a finite number"),
    (["--guidance", "inf"], "--guidance inf: guidance_scale must be a finite number"),
    (["--guidance", "-inf"], "--guidance -inf: guidance_scale must be a finite number"),
    (["--eta", "nan"], "--eta nan: eta must be a finite number"),
    (["--eta", "-0.5"], "--eta -0.5: eta must be >= 0"),
    (["--steps", "0"], "--steps 0: num_inference_steps must be a whole number >= 1"),
    (["--batch-size", "0"], "--batch-size 0: batch_size must be a whole number >= 1"),
    (["--batch-size", "-1"], "--batch-size -1: batch_size must be a whole number >= 1"),
    (["--limit", "-1"], "--limit -1: limit must be a whole number >= 1"),
    (["--limit", "0"], "--limit 0: limit must be a whole number >= 1"),
    (["--bench", ""], "no benchmark named"),
    (["--bench", " , "], "no benchmark named"),
])
def test_bad_flags_are_one_line_and_write_nothing(args: list[str], message: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = cli(capsys, monkeypatch, "eval", "--out", str(tmp_path / "out"), *args)
    assert code == 2 and message in one_error_line(err)
    assert not (tmp_path / "out").exists()  # refused before the store, the model or any image


@pytest.mark.parametrize(("args", "message"), [
    (["--steps", "0"], "--steps 0: must be at least 1"),
    (["--batch-size", "-1"], "--batch-size -1: must be at least 1"),
    (["--max-minutes", "nan"], "--max-minutes nan: must be a finite number of minutes >= 0"),
    (["--max-minutes", "-1"], "--max-minutes -1.0: must be a finite number of minutes >= 0"),
    (["--sampler-guidance", "inf"], "--sampler-guidance a finite number"),
])
def test_bad_pretrain_flags_are_one_line(args: list[str], message: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = cli(capsys, monkeypatch, "builtin", "pretrain", "--out", str(tmp_path / "pretrain"), *args)
    assert code == 2 and message in one_error_line(err)
    assert not (tmp_path / "pretrain").exists()


def test_settings_are_checked_in_the_api_too(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="guidance_scale must be a finite number"):
        EvalSettings(guidance_scale=math.nan)
    with pytest.raises(HarnessError, match="limit must be a whole number"):
        EvalSettings(limit=True)  # a bool is not a count
    settings = EvalSettings()
    settings.num_inference_steps = 0  # set after construction: evaluate checks again
    with pytest.raises(HarnessError, match="num_inference_steps must be a whole number >= 1"):
        evaluate("builtin:shapes", ["geneval"], out=tmp_path / "out", settings=settings, progress=False)
    with pytest.raises(HarnessError, match="no benchmark named"):
        evaluate("builtin:shapes", [], out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_result_files_are_strict_json(tmp_path: Path) -> None:
    """A score over nothing is NaN in memory; on disk it is null, as strict JSON has no NaN or Infinity."""
    record = ResultRecord("dpg-bench", "1.0", "builtin", "m", "f", {"overall": math.nan, "count": math.inf}, 0, 0,
                          {}, {"guidance_scale": 2.0}, {})
    record.save(tmp_path / "result.json")

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in a result file")

    data = json.loads((tmp_path / "result.json").read_text(), parse_constant=refuse)
    assert data["scores"] == {"overall": None, "count": None} and data["sampler"] == {"guidance_scale": 2.0}


# --- a run folder the harness wrote, then mutated ------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_images(builtin_random_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The official GenEval layout of a real run: two position prompts x 4 images (random-init model, 2 steps)."""
    out = tmp_path_factory.mktemp("run")
    evaluate(str(builtin_random_ckpt), ["geneval"], out=out,
             settings=EvalSettings(limit=2, tags=("position",)), progress=False)
    (run_dir,) = (out / "runs").iterdir()
    return run_dir / "images"


@pytest.fixture
def folder(run_images: Path, tmp_path: Path) -> Path:
    """A private copy of the run's image folder to mutate (copies, not the run's hard links)."""
    return Path(shutil.copytree(run_images, tmp_path / "images"))


def prompt_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def edit_metadata(prompt_dir: Path, change: dict) -> None:
    path = prompt_dir / "metadata.jsonl"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))


def score_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, folder: Path, out: Path
              ) -> tuple[int, str, str]:
    return cli(capsys, monkeypatch, "score", "--bench", "geneval", "--images", str(folder), "--out", str(out))


def test_the_unmutated_copy_scores_with_nothing_skipped(folder: Path, tmp_path: Path) -> None:
    record = score("geneval", folder, out=tmp_path / "store", progress=False)
    assert record.n_prompts == 2 and record.n_images == 8 and "skipped" not in record.options


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: (d / "metadata.jsonl").write_bytes("{\"prompt\": \"caf\xe9\"}".encode("latin-1")),
     "metadata.jsonl: not UTF-8 text (byte 15: invalid continuation byte); save it as UTF-8"),
    (lambda d: edit_metadata(d, {"include": [{"class": "star", "count": 1},
                                             {"class": "ring", "count": 1, "position": ["above", 5]}]}),
     "names clause 5, which is not an earlier include clause"),
    (lambda d: edit_metadata(d, {"include": [{"class": "star", "count": 1, "position": ["above", 0]}]}),
     "names clause 0, which is not an earlier include clause"),
    (lambda d: edit_metadata(d, {"include": [{"class": "star", "count": 1},
                                             {"class": "ring", "count": 1, "position": ["behind", 0]}]}),
     "unknown relation 'behind'; GenEval relations are left of, right of, above, below"),
    (lambda d: edit_metadata(d, {"include": [{"class": "star", "count": 1, "color": "teal"}]}),
     "unknown colour 'teal'; GenEval colours are red, orange"),
    (lambda d: edit_metadata(d, {"include": [{"class": "star", "count": 0}]}), "malformed clause"),
    (lambda d: edit_metadata(d, {"include": []}), "include must be a non-empty list"),
])
def test_bad_metadata_is_one_line_and_writes_nothing(mutate, message: str, folder: Path,  # type: ignore[no-untyped-def]
                                                     tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    mutate(prompt_dirs(folder)[1])
    code, _, err = score_cli(capsys, monkeypatch, folder, tmp_path / "store")
    assert code == 2 and message in one_error_line(err)
    assert not (tmp_path / "store" / "runs").exists()


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header declaring ``width`` x ``height`` RGB pixels, and no pixel data: a few dozen bytes that a
    decoder would try to turn into width x height x 3 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def png_with_exif(image_path: Path, exif: bytes) -> bytes:
    target = image_path.with_suffix(".tmp")
    Image.open(image_path).save(target, format="PNG", exif=exif)
    data = target.read_bytes()
    target.unlink()
    return data


def test_damaged_images_are_counted_skips(folder: Path, tmp_path: Path) -> None:
    first, second = prompt_dirs(folder)
    (first / "samples" / "0001.png").write_bytes(png_declaring(20000, 10000))
    (first / "samples" / "0002.png").write_bytes(png_declaring(9000, 9000))  # under Pillow's limit, over ours
    (second / "samples" / "0003.png").write_bytes(png_with_exif(second / "samples" / "0003.png", b"MM\x00*"))
    record = score("geneval", folder, out=tmp_path / "store", progress=False)
    skipped = record.options["skipped"]
    assert len(skipped) == 3 and record.n_images == 5
    assert skipped[0].startswith(f"{first.name}/samples/0001.png: too many pixels, not decoded (Image size "
                                 "(200000000 pixels) exceeds limit")
    assert skipped[1] == (f"{first.name}/samples/0002.png: declares 9000x9000 pixels, over the limit of 67,108,864 "
                          "(a decompression bomb?): not decoded")
    assert skipped[2].startswith(f"{second.name}/samples/0003.png: unreadable image (error: unpack requires")


def test_dropped_images_and_folders_are_counted(folder: Path, tmp_path: Path) -> None:
    first, second = prompt_dirs(folder)
    (first / "samples" / "0002.png").unlink()  # a deleted sample: 3 of 4
    (second / "samples" / "0001.png").rename(second / "samples" / "0001.PNG")
    shutil.copytree(second, folder / "\u0663")  # ARABIC-INDIC DIGIT THREE: isdigit() and int() accept it
    shutil.copytree(second, folder / "extra")
    shutil.copytree(second, folder / str(int(second.name)))  # "353/" beside "00353/": the same prompt index
    record = score("geneval", folder, out=tmp_path / "store", progress=False)
    assert record.n_prompts == 2 and record.n_images == 6
    assert sorted(record.options["skipped"]) == sorted([
        "\u0663/: not a prompt folder (not named by the digits 0-9)",
        "extra/: not a prompt folder (not named by the digits 0-9)",
        f"{int(second.name)}/: the same prompt index as {second.name}/, not read twice",
        f"{first.name}/samples/0002.png: missing (3 of 4 images)",
        f"{second.name}/samples/0001.PNG: not named NNNN.png, which is all the official evaluator reads",
        f"{second.name}/samples/0001.png: missing (3 of 4 images)",
    ])


def test_identical_samples_keep_their_own_labels(folder: Path, tmp_path: Path) -> None:
    """A copied prompt folder and a repeated image are byte-identical to another sample, so the score cache hands
    back one verdict for both; each row must still name its own file and prompt."""
    first, second = prompt_dirs(folder)
    shutil.copy(first / "samples" / "0000.png", first / "samples" / "0001.png")
    shutil.copytree(second, folder / "99999")
    record = score("geneval", folder, out=tmp_path / "store", progress=False)
    assert record.n_images == 12
    (run_dir,) = (tmp_path / "store" / "runs").iterdir()
    rows = [json.loads(line) for line in (run_dir / "geneval_results.jsonl").read_text().splitlines()]
    files = sorted(str(p) for p in folder.glob("*/samples/*.png"))
    assert sorted(row["filename"] for row in rows) == files  # each image once, none twice
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert [(s["prompt_index"], s["image_index"]) for s in samples] == [
        (int(d.name), k) for d in (first, second, folder / "99999") for k in range(4)]
    by_file = {row["filename"]: row for row in rows}
    for sample in samples:
        assert by_file[sample["image"]]["prompt"] == sample["prompt"]


def test_sixteen_bit_grey_is_read_as_grey(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    rgb = np.asarray(read_rgb(tmp_path / "grey16.png"))
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    assert rgb.shape == (64, 64, 3) and (rgb == expected[..., None]).all()  # not clipped to white
    assert image_problem(tmp_path / "grey16.png") is None
