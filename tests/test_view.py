"""``harness view`` (issue 16, item 6): galleries built from run folders and published records, images found by
their listed path or their store content key, the leaderboard's links into the viewer, and the server's guards (the
labeling page's: token, only the evaluations' images served, loopback and Host check). The page itself is driven in
a browser in tests/test_browser.py."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from harness import leaderboard
from harness.errors import HarnessError
from harness.records import ResultRecord, attach_statistics
from harness.store import image_key
from harness.view import load_gallery, serve
from harness.view.app import cookie_name, create_app
from harness.view.gallery import verdict
from tests.test_compare import base_verdicts, improved, make_run

ROOT = Path(__file__).resolve().parents[1]
TRAINING = {"method": "d3po", "feedback": "objective:geneval", "seed": 0, "in_reward": True, "ckpt": "builtin:shapes",
            "cost": {"wall_s": 60.0, "images_sampled": 64, "labels_used": 0}}


def store_run(store: Path, name: str, verdicts: list[list[float]], shade: int, listed: bool = True,
              **run: object) -> Path:
    """A run folder ``STORE/runs/NAME`` (tests.test_compare's format) whose images exist: each a flat colour
    (``shade`` per run, brightness per prompt and image) under its content key in STORE/images, the key
    ``harness eval`` stores it under; with ``listed`` the samples also name that file, as ``harness eval`` does."""
    folder = make_run(store / "runs" / name, verdicts, replicates=20, **run)
    record = ResultRecord.load(folder / "result.json")
    rows = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    for row in rows:
        key = image_key(record.checkpoint_fingerprint, row["prompt"], row["seed"], record.sampler)
        path = store / "images" / key[:2] / f"{key}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixel = (shade, 8 * row["prompt_index"] % 256, 40 * row["image_index"])
        Image.fromarray(np.full((8, 8, 3), pixel, dtype=np.uint8)).save(path)
        row["image"] = str(path) if listed else "/nowhere/moved.png"
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    attach_statistics(record, folder / "samples.jsonl", _aggregate(record), replicates=20)
    record.save(folder / "result.json")
    return folder


def _aggregate(record: ResultRecord) -> object:
    from harness.compare import record_bench

    return record_bench(record).aggregate


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A store with a base run and a better D3PO run on the same prompts and seeds, and a results folder where both
    are published (records without images) and the leaderboard is built."""
    tmp = tmp_path_factory.mktemp("view")
    store = tmp / "store"
    verdicts = base_verdicts(n_prompts=12)
    base = store_run(store, "base", verdicts, shade=60)
    better = store_run(store, "d3po", improved(verdicts, 8), shade=200, listed=False, method="d3po",
                       model="runs/d3po/checkpoint", training=TRAINING)
    results = tmp / "results"
    for run in (base, better):
        leaderboard.publish(run, results, replicates=50)
    leaderboard.build(results)
    return {"store": store, "base": base, "better": better, "results": results}


def client(world: dict[str, Path], token: str | None = "tok", **gallery: object) -> TestClient:
    g = load_gallery(**gallery) if gallery else load_gallery([world["base"], world["better"]], results=world["results"])
    return TestClient(create_app(g, token))


def test_verdict_rule() -> None:
    assert [verdict(s) for s in (1.0, 0.0, 0.5, None, float("nan"))] == ["pass", "fail", "fail", "excluded",
                                                                          "excluded"]


def test_runs_side_by_side_by_prompt_and_seed(world: dict[str, Path]) -> None:
    data = load_gallery([world["store"]]).to_json()  # an image store: all its runs
    assert [s["id"] for s in data["sources"]] == ["base", "d3po"]
    assert [(s["with_images"], s["n_images"]) for s in data["sources"]] == [(48, 48), (48, 48)]
    assert len(data["prompts"]) == 12
    first = data["prompts"][0]
    assert first["prompt"] == "a photo of thing 0" and first["tag"] == "single_object"
    base, d3po = first["cells"]["base"], first["cells"]["d3po"]
    assert [c["seed"] for c in base] == [c["seed"] for c in d3po] == [42, 43, 44, 45]
    for cell in base + d3po:
        assert cell["verdict"] == ("pass" if cell["score"] == 1.0 else "fail")
        assert cell["reason"] == ("" if cell["score"] == 1.0 else "missing object")
    failing = sum(c["verdict"] == "fail" for p in data["prompts"] for c in p["cells"]["base"])
    better = sum(c["verdict"] == "fail" for p in data["prompts"] for c in p["cells"]["d3po"])
    assert failing - better == 8  # the eight failures improved() turned into passes


def test_published_records_find_their_images_by_content_key(world: dict[str, Path]) -> None:
    records = sorted((world["results"] / "records").glob("*.json"))
    alone = load_gallery(records).to_json()
    assert all(s["with_images"] == 0 for s in alone["sources"])  # published records carry no images
    assert all(c["url"] is None for p in alone["prompts"] for cells in p["cells"].values() for c in cells)
    found = load_gallery(records, stores=[world["store"]])
    assert [s.summary()["with_images"] for s in found.sources] == [48, 48]
    source = next(s for s in found.sources if s.evaluated.record.method == "d3po")
    path = found.image(source.id, 3, 2)
    pixels = np.asarray(Image.open(path))
    assert tuple(pixels[0, 0]) == (200, 24, 80)  # the d3po run's image of prompt 3, image 2 (see store_run)


def test_token_is_required_and_the_cookie_carries_it(world: dict[str, Path]) -> None:
    c = client(world)
    paths = ("/", "/view", "/api/gallery", "/img/base/0/0", "/leaderboard.html", "/plots/geneval-builtin-tags.svg")
    for path in paths:
        assert c.get(path).status_code == 403, path
        assert c.get(path + "?token=wrong").status_code == 403, path
        assert c.get(path, headers={"X-Harness-Token": "tok"}).status_code == 200, path
    assert c.get("/?token=tok").headers["set-cookie"].startswith(f"{cookie_name('tok')}=tok; HttpOnly")
    assert c.get("/view?record=x").status_code == 200  # the cookie just set: a leaderboard link needs no token
    c.cookies.clear()
    c.cookies.set(cookie_name("other"), "tok")
    assert c.get("/api/gallery").status_code == 403  # another viewer's cookie name is not this one's
    page = c.get("/?token=tok").text
    assert "/*PAGE_JS*/" not in page and "http" not in page.split("<script>")[1]  # offline, no CDN
    assert client(world, token=None).get("/api/gallery").status_code == 200  # --no-token


@pytest.mark.parametrize("path", ["/img/base/0/99", "/img/nobody/0/0", "/img/../result.json", "/img/%2e%2e/base/0/0",
                                  "/img/base/0/0/../../../../etc/passwd", "/img/..%2f..%2fetc%2fpasswd",
                                  "/img/%2fetc%2fpasswd", "/img//etc/passwd", "/img/base/samples.jsonl",
                                  "/img/base/0/0%00", "/plots/../records", "/plots/..%2fLEADERBOARD.md",
                                  "/plots/%2fetc%2fpasswd", "/leaderboard.html/../records/x.json",
                                  "/results/LEADERBOARD.md", "/records/x.json"])
def test_only_the_evaluations_images_are_served(world: dict[str, Path], path: str) -> None:
    response = client(world).get(path, headers={"X-Harness-Token": "tok"})
    assert response.status_code in (403, 404, 405), (path, response.status_code)
    assert b"prompt_index" not in response.content and b"root:" not in response.content


def test_images_and_leaderboard_are_served(world: dict[str, Path]) -> None:
    c = client(world)
    auth = {"X-Harness-Token": "tok"}
    data = c.get("/api/gallery", headers=auth).json()
    cell = data["prompts"][5]["cells"]["base"][1]
    response = c.get("/" + cell["url"], headers=auth)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert tuple(np.asarray(Image.open(io.BytesIO(response.content)))[0, 0]) == (60, 40, 40)
    board = c.get("/leaderboard.html", headers=auth)
    assert board.status_code == 200 and board.text == (world["results"] / "leaderboard.html").read_text()
    assert c.get("/plots/geneval-builtin-cost.svg", headers=auth).headers["content-type"].startswith("image/svg")
    assert data["leaderboard"] is True and len(data["sources"]) == 4  # two runs and their two published records


def test_leaderboard_cells_link_to_their_images(world: dict[str, Path]) -> None:
    html = (world["results"] / "leaderboard.html").read_text()
    ids = sorted(p.stem for p in (world["results"] / "records").glob("*.json"))
    base_id = next(i for i in ids if "pretrained" in i)
    d3po_id = next(i for i in ids if "d3po" in i)
    links = re.findall(r'<a href="([^"]+)">', html)
    assert f"view?record={base_id}" in links and f"view?record={d3po_id}&amp;tag=counting" in links
    assert f"view?record={base_id}&amp;record={d3po_id}" in links  # the delta: the row beside its base
    assert "harness view --results" in html
    data = client(world).get("/api/gallery", headers={"X-Harness-Token": "tok"}).json()
    assert {base_id, d3po_id} <= {s["id"] for s in data["sources"]}  # every link target is a source of the page


def test_server_binds_loopback_and_checks_host(world: dict[str, Path]) -> None:
    server = serve([world["base"]], port=0, token="tok")
    try:
        assert server.url == f"http://127.0.0.1:{server.port}/?token=tok"
        assert server._server.config.host == "127.0.0.1"
        base = f"http://127.0.0.1:{server.port}"
        assert httpx.get(f"{base}/api/gallery").status_code == 403
        assert httpx.get(f"{base}/api/gallery?token=tok").json()["sources"][0]["id"] == "base"
        assert httpx.get(f"{base}/api/gallery?token=tok", headers={"Host": "evil.example"}).status_code == 400
    finally:
        server.stop()


def test_bad_inputs_are_one_line_errors(world: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="nothing to view"):
        load_gallery([])
    with pytest.raises(HarnessError, match="neither a run folder"):
        load_gallery([tmp_path])
    with pytest.raises(HarnessError, match="no records/ folder"):
        load_gallery(results=tmp_path)
    with pytest.raises(HarnessError, match="not an image store"):
        load_gallery([world["base"]], stores=[tmp_path])


def test_cli_serves_until_stopped(world: dict[str, Path]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "harness", "view", str(world["base"]), str(world["better"]),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        match = re.search(r"open (http://127\.0\.0\.1:\d+/\?token=\S+)", line)
        assert match, line + proc.stderr.read()  # type: ignore[union-attr]
        assert "viewing 2 evaluation(s)" in line
        url = match[1]
        deadline = time.monotonic() + 10
        while True:
            try:
                data = httpx.get(url.replace("/?", "/api/gallery?")).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert [s["id"] for s in data["sources"]] == ["base", "d3po"]
        assert httpx.get(url.split("?")[0] + "api/gallery").status_code == 403
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    bad = subprocess.run([sys.executable, "-m", "harness", "view", "/nonexistent"], capture_output=True, text=True,
                         cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "error: /nonexistent is neither" in bad.stderr
