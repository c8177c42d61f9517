"""The labeling page (issue 15, item 1): the SQLite store, the HTTP API and its guards, undo, exports read back by
the trainers' readers, agreement statistics on hand-computed examples, and the CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient
from typer.testing import CliRunner

from benchmarks.registry import PromptItem
from harness.cli import app as cli_app
from harness.errors import DataError, HarnessError
from harness.labeling.agreement import agreement_report, cohen_kappa, fleiss_kappa
from harness.labeling.app import MAX_BODY, Board, LabelServer, create_app
from harness.labeling.export import export_round, open_store, read_flags
from harness.labeling.progress import queue, repeated_groups, round_status
from harness.labeling.rounds import DB_FILE, read_label_round
from harness.labeling.scores import judgment_scores, round_pairs
from harness.labeling.store import LabelConflict, LabelStore
from harness.rounds import read_round_index
from trainers.labels import join_annotator_scores, read_comparisons, read_labels

PROMPTS = ["a red cube", "two blue balls", "a green cone"]
K = 3


def make_round(folder: Path, prompts: list[str] = PROMPTS, k: int = K) -> Path:
    """A round folder in trainers/rounds.py's layout (images, prompt.json, round.json; no trajectories needed to
    label). Image r is a flat grey of brightness 20 * (r + 1), so images are told apart by pixels."""
    (folder / "images").mkdir(parents=True)
    rows = []
    for g, prompt in enumerate(prompts):
        for j in range(k):
            r = g * k + j
            name = f"images/{r:05d}.png"
            Image.fromarray(np.full((8, 8, 3), 20 * (r + 1), dtype=np.uint8)).save(folder / name)
            item = PromptItem(g, prompt, "single_object", {"tag": "single_object"})
            rows.append({"image": name, "prompt": prompt, "group": g, "seed": 1000 + r, "item": asdict(item)})
    (folder / "prompt.json").write_text(json.dumps(prompts))
    (folder / "round.json").write_text(json.dumps({"format": "harness-round", "version": 1, "sampler": {},
                                                   "rows": rows}))
    return folder


@pytest.fixture
def round_dir(tmp_path: Path) -> Path:
    return make_round(tmp_path / "round")


def client_for(folder: Path, token: str | None = "secret", **board: object) -> TestClient:
    return TestClient(create_app(Board(folder, token=token, **board)))


def post(client: TestClient, path: str, body: dict, token: str = "secret") -> httpx.Response:
    return client.post(path, json=body, headers={"X-Harness-Token": token})


def state(client: TestClient, annotator: str, token: str = "secret") -> dict:
    response = client.get(f"/api/state?annotator={annotator}&token={token}")
    assert response.status_code == 200, response.text
    return response.json()


def label(client: TestClient, annotator: str, pick: int | None = 0, **extra: object) -> dict:
    """Label the annotator's next prompt: ``pick`` is the position in round order of the best image."""
    current = state(client, annotator)
    item = current["item"]
    images = sorted(im["name"] for im in item["images"])  # round order
    body = {"round": current["round"], "annotator": annotator, "group": item["group"], "showing": item["showing"],
            "action": "choice" if pick is not None else "skip"}
    if pick is not None:
        body["best"] = images[pick]
    body.update({key: [images[p] for p in value] if key in ("distorted", "unsafe", "ranking") else
                 images[value] if key == "worst" else value for key, value in extra.items()})
    response = post(client, "/api/label", body)
    assert response.status_code == 200, response.text
    return response.json()


# --- store --------------------------------------------------------------------------------------------------------


def test_store_is_wal_and_each_judgment_survives_a_killed_process(round_dir: Path) -> None:
    db = round_dir / DB_FILE
    code = ("import os, sys; from harness.labeling.store import LabelStore; s = LabelStore(sys.argv[1]); "
            "[s.add('ann', g, 0, 'choice', best=g % 3, request_id=f'r{g}') for g in range(3)]; os._exit(9)")
    done = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 9, done.stderr  # killed without closing anything
    fresh = sqlite3.connect(db)
    assert fresh.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert fresh.execute("SELECT grp, best FROM labels ORDER BY id").fetchall() == [(0, 0), (1, 1), (2, 2)]
    fresh.close()
    store = LabelStore(db)
    again = store.add("ann", 0, 0, "choice", best=2, request_id="r0")  # a retried request: stored once
    assert again.best == 0 and len(store.judgments()) == 3
    with pytest.raises(LabelConflict, match="undo it first"):
        store.add("ann", 0, 0, "choice", best=1)
    assert store.undo("ann").group == 2
    assert [j.group for j in store.judgments()] == [0, 1]
    assert len(store.judgments(live_only=False)) == 3  # undo marks, never deletes


def test_store_refuses_labels_of_another_round(round_dir: Path, tmp_path: Path) -> None:
    open_store(read_label_round(round_dir)).add("a", 0, 0, "skip")
    other = make_round(tmp_path / "other", prompts=["a cat", "a dog", "a cow"])
    (other / DB_FILE).write_bytes((round_dir / DB_FILE).read_bytes())
    with pytest.raises(DataError, match="labels of another round"):
        open_store(read_label_round(other))


# --- HTTP API -------------------------------------------------------------------------------------------------------


def test_token_is_required_everywhere(round_dir: Path) -> None:
    client = client_for(round_dir)
    for path in ("/", "/api/state?annotator=a", "/api/status", "/img/images/00000.png"):
        assert client.get(path).status_code == 403, path
        assert client.get(path + ("&" if "?" in path else "?") + "token=wrong").status_code == 403, path
        assert client.get(path + ("&" if "?" in path else "?") + "token=secret").status_code == 200, path
    assert client.post("/api/label", json={"annotator": "a"}).status_code == 403
    assert client.post("/api/undo", json={"annotator": "a"}, headers={"X-Harness-Token": "nope"}).status_code == 403
    assert not (round_dir / DB_FILE).exists() or not open_store(read_label_round(round_dir)).judgments()
    page = client.get("/?token=secret").text
    assert "<script>" in page and "/*PAGE_JS*/" not in page and "http" not in page.split("<script>")[1]  # offline
    open_client = client_for(round_dir, token=None)
    assert open_client.get("/api/state?annotator=a").status_code == 200  # --no-token serves without one


@pytest.mark.parametrize("path", ["/img/../round.json", "/img/%2e%2e/round.json", "/img/..%2f..%2fetc%2fpasswd",
                                  "/img/%2fetc%2fpasswd", "/img//etc/passwd", "/img/round.json",
                                  "/img/labels.sqlite", "/img/images/99999.png", "/img/images%2f00000.png%00"])
def test_only_round_images_are_served(round_dir: Path, path: str) -> None:
    client = client_for(round_dir)
    response = client.get(path + "?token=secret")
    assert response.status_code in (404, 403), (path, response.status_code)
    assert b"harness-round" not in response.content


def test_round_image_is_served(round_dir: Path) -> None:
    response = client_for(round_dir).get("/img/images/00004.png?token=secret")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content == (round_dir / "images/00004.png").read_bytes()


def test_bad_bodies_are_refused_and_nothing_is_written(round_dir: Path) -> None:
    client = client_for(round_dir)
    current = state(client, "a")
    item = current["item"]
    good = {"round": current["round"], "annotator": "a", "group": item["group"], "showing": 0, "action": "choice",
            "best": item["images"][0]["name"]}
    headers = {"X-Harness-Token": "secret", "Content-Type": "application/json"}
    cases = [
        (b"{not json", 400), (b"[1, 2]", 400), (b"x" * (MAX_BODY + 1), 413),
        (json.dumps({**good, "best": "images/00005.png"}).encode(), 400),  # an image of another prompt
        (json.dumps({**good, "best": "../../etc/passwd"}).encode(), 400),
        (json.dumps({**good, "distorted": ["images/99999.png"]}).encode(), 400),
        (json.dumps({**good, "group": 7}).encode(), 400),
        (json.dumps({**good, "showing": 1}).encode(), 400),  # no repeats with repeat=0.1 of 3 prompts
        (json.dumps({**good, "annotator": "a b/../c"}).encode(), 400),
        (json.dumps({**good, "round": "elsewhere"}).encode(), 409),
        (json.dumps({**good, "best": None}).encode(), 400),
        (json.dumps({**good, "worst": good["best"]}).encode(), 400),
        (json.dumps({**good, "action": "delete"}).encode(), 400),
    ]
    for body, status in cases:
        response = client.post("/api/label", content=body, headers=headers)
        assert response.status_code == status, (body[:80], response.text)
    response = client.post("/api/label", content=json.dumps(good), headers={**headers, "Content-Type": "text/plain"})
    assert response.status_code == 415
    assert open_store(read_label_round(round_dir)).judgments() == []
    assert post(client, "/api/label", good).status_code == 200
    assert post(client, "/api/label", good).status_code == 409  # the same prompt twice: undo first


def test_labelling_undo_progress_and_repeats(round_dir: Path) -> None:
    client = client_for(round_dir, repeat=1 / 3)
    first = state(client, "ann")
    assert first["progress"] == {"done": 0, "total": 4}  # 3 prompts + 1 repeat
    assert sorted(im["name"] for im in first["item"]["images"]) == [f"images/0000{r}.png" for r in range(3)]
    after = label(client, "ann", pick=2, distorted=[0], unsafe=[1])
    assert after["progress"]["done"] == 1 and after["item"]["group"] == 1
    label(client, "ann", pick=None)  # skip
    undone = post(client, "/api/undo", {"annotator": "ann"}).json()
    assert undone["undone"]["action"] == "skip" and undone["item"]["group"] == 1  # the skipped prompt is back
    label(client, "ann", pick=1)
    label(client, "ann", pick=0)
    repeat = state(client, "ann")["item"]
    assert repeat["showing"] == 1
    label(client, "ann", pick=0)
    done = state(client, "ann")
    assert done["item"] is None and done["progress"] == {"done": 4, "total": 4}
    assert done["round_status"]["complete"]
    store = open_store(read_label_round(round_dir))
    live = store.judgments()
    assert [(j.group, j.showing, j.best) for j in live] == [(0, 0, 2), (1, 0, 1), (2, 0, 0), (repeat["group"], 1, 0)]
    assert live[0].distorted == (0,) and live[0].unsafe == (1,)
    other = state(client, "bob")  # a second annotator starts from the beginning
    assert other["progress"]["done"] == 0 and other["item"]["group"] == 0


def test_round_status_counts_annotators_and_close(round_dir: Path) -> None:
    label_round = read_label_round(round_dir)
    store = open_store(label_round)
    for g in range(3):
        store.add("a", g, 0, "choice", best=0)
    assert round_status(label_round, store.judgments(), annotators=1).complete
    assert not round_status(label_round, store.judgments(), annotators=2).complete
    client = client_for(round_dir)
    post(client, "/api/close", {"annotator": "a"})
    assert store.closed()["by"] == "a"


def test_ranking_mode_and_best_worst(round_dir: Path) -> None:
    client = client_for(round_dir, mode="ranking")
    label(client, "r", pick=None, action="choice", ranking=[1, 2, 0])
    bad = state(client, "r")
    images = sorted(im["name"] for im in bad["item"]["images"])
    partial = {"round": bad["round"], "annotator": "r", "group": 1, "showing": 0, "action": "choice",
               "ranking": images[:2]}
    assert post(client, "/api/label", partial).status_code == 400  # a ranking orders every image
    worst = client_for(round_dir, mode="best-worst")
    label(worst, "w", pick=0, worst=2)
    judgments = open_store(read_label_round(round_dir)).judgments()
    assert judgment_scores(judgments[0], 3) == [0, 4, 2]  # ranking 1 > 2 > 0: c = (0, 2, 1), s = 2c
    assert judgment_scores(judgments[1], 3) == [4, 2, 0]


# --- scores, export and read-back ---------------------------------------------------------------------------------


def test_scores_rule() -> None:
    from harness.labeling.store import Judgment

    flags_only = Judgment(1, "a", 0, 0, "choice", distorted=(1,), unsafe=(2,))
    assert judgment_scores(flags_only, 4) == [0, -1, -1, 0]
    best_and_flag = Judgment(2, "a", 0, 0, "choice", best=1, distorted=(1, 2))
    assert judgment_scores(best_and_flag, 3) == [0, 1, -1]  # the choice outweighs its own flag
    assert judgment_scores(Judgment(3, "a", 0, 0, "skip"), 3) is None


def test_majority_pairs(round_dir: Path) -> None:
    label_round = read_label_round(round_dir)
    store = open_store(label_round)
    store.add("a", 0, 0, "choice", best=0)
    store.add("b", 0, 0, "choice", best=1)
    store.add("c", 0, 0, "choice", best=1)
    store.add("a", 1, 0, "skip")
    pairs = round_pairs(label_round, store.judgments())
    # prompt 0: 1 beats 0 (2 votes to 1), 1 beats 2 (2 of 3, a tie from a), 0 vs 2: a says 0, b and c tie -> 0 wins
    assert pairs == [(0, 1, -1), (0, 2, 1), (1, 2, 1)]


def test_export_is_read_by_the_trainers(round_dir: Path) -> None:
    client = client_for(round_dir, repeat=1 / 3)
    for annotator in ("ann", "bob"):
        label(client, annotator, pick=2, distorted=[0])
        label(client, annotator, pick=1)
        label(client, annotator, pick=None)
        label(client, annotator, pick=0)  # the repeat
    rank_client = client_for(round_dir, mode="best-worst", repeat=1 / 3)
    label(rank_client, "cy", pick=2, worst=0)
    summary = export_round(round_dir)
    out = round_dir / "export"
    assert summary["judgments"] == 9 and summary["skips"] == 2 and summary["annotators"] == ["ann", "bob", "cy"]
    assert sorted(p.name for p in out.iterdir()) == ["agreement.json", "best_of_k.jsonl", "d3po", "flags.jsonl",
                                                     "pairs.jsonl", "rankings.jsonl", "summary.json"]
    labels = read_labels(out / "pairs.jsonl", round_dir)
    index = read_round_index(round_dir)
    assert labels.round.folder == index.folder
    strict = {(p.i, p.j, p.winner) if p.i < p.j else (p.j, p.i, -p.winner) for p in labels.preferences}
    assert (0, 2, -1) in strict and (1, 2, -1) in strict  # image 2 was everyone's best of prompt 0
    assert (3, 4, -1) in strict and (4, 5, 1) in strict  # prompt 1: image 4 best
    assert (3, 5, 0) in strict  # neither of prompt 1's losers beat the other: a tie row
    assert not any(p.i >= 6 for p in labels.preferences)  # prompt 2 was only skipped
    best = read_comparisons(out / "best_of_k.jsonl")
    assert len(best) == 6 and best[0].scores == (0.0, 0.0, 1.0)
    (ranking,) = read_comparisons(out / "rankings.jsonl")
    assert ranking.scores == (-3.0, -2.0, -1.0)  # worst 0 (rank 3), middle 1 (rank 2), best 2 (rank 1)
    d3po = join_annotator_scores(sorted((out / "d3po").glob("*.json")), index)
    assert {(p.i, p.j, p.winner) for p in d3po if p.i < 3} == {(0, 1, -1), (0, 2, -1), (1, 2, -1)}
    flags = read_flags(out / "flags.jsonl")
    assert sum(f["distorted"] for f in flags) == summary["distorted_flags"] == 2  # image 0, by ann and by bob
    assert {f["image"] for f in flags if f["distorted"]} == {"images/00000.png"}
    agreement = json.loads((out / "agreement.json").read_text())
    assert {"best", "distorted", "unsafe"} == set(agreement)
    (repeated,) = repeated_groups(read_label_round(round_dir), 1 / 3)
    selves = agreement["best"]["self"]
    assert [s["annotator"] for s in selves] == ([] if repeated == 2 else ["ann", "bob"])  # prompt 2 was skipped


def test_kappa_hand_computed(round_dir: Path) -> None:
    # Cohen: 50 items, yes/yes 20, yes/no 5, no/yes 10, no/no 15: p_o = 0.7, p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5
    first = ["y"] * 25 + ["n"] * 25
    second = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(first, second) == pytest.approx(0.4)
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None  # chance agreement 1: undefined
    # Fleiss (the textbook table: 10 items, 14 raters, 5 categories): P̄ = 0.378, P̄_e = 0.213, κ = 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1], [7, 7, 0, 0, 0],
             [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.2099, abs=1e-4)
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 1], [2, 1]])
    # From labels: a picks positions (0, 1, 2), b picks (0, 1, 1) on the three prompts of the round.
    # p_o = 2/3; a: 1/3 each of 0, 1, 2; b: 0 1/3, 1 2/3; p_e = 1/9 + 2/9 = 1/3; κ = (2/3 - 1/3) / (2/3) = 0.5
    label_round = read_label_round(round_dir)
    store = open_store(label_round)
    for g, (a, b) in enumerate([(0, 0), (1, 1), (2, 1)]):
        store.add("a", g, 0, "choice", best=a)
        store.add("b", g, 0, "choice", best=b)
    store.add("a", 0, 1, "choice", best=1)  # a's repeat of prompt 0 disagrees with a's first answer
    report = agreement_report(label_round, store.judgments())
    assert report["best"]["cohen"] == [{"annotators": ["a", "b"], "items": 3, "kappa": pytest.approx(0.5)}]
    assert report["best"]["fleiss"]["items"] == 3
    # Fleiss with 2 raters: P̄ = 2/3; p = (2/6, 3/6, 1/6); P̄_e = 14/36; κ = (2/3 - 14/36) / (1 - 14/36) = 5/11
    assert report["best"]["fleiss"]["kappa"] == pytest.approx(5 / 11)
    assert report["best"]["self"] == [{"annotator": "a", "items": 1, "kappa": 0.0}]  # p_o = 0, p_e = 1 * 0 + 0 * 1
    assert report["distorted"]["fleiss"]["kappa"] is None  # nobody flagged anything: undefined, not 1


# --- server and CLI ------------------------------------------------------------------------------------------------


def test_server_binds_loopback_and_checks_host(round_dir: Path) -> None:
    server = LabelServer(Board(round_dir, token="tok"), port=0)
    try:
        assert server.url == f"http://127.0.0.1:{server.port}/?token=tok"
        base = f"http://127.0.0.1:{server.port}"
        assert httpx.get(f"{base}/api/status").status_code == 403
        assert httpx.get(f"{base}/api/status?token=tok").json()["prompts"] == 3
        rebound = httpx.get(f"{base}/api/status?token=tok", headers={"Host": "evil.example"})
        assert rebound.status_code == 400  # DNS rebinding: a foreign Host is refused
        assert server._server.config.host == "127.0.0.1"
    finally:
        server.stop()


def test_bad_targets_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="not a folder"):
        Board(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match="neither a round folder"):
        Board(tmp_path / "empty")
    with pytest.raises(HarnessError, match="labeling mode"):
        Board(make_round(tmp_path / "r"), mode="stars")


def test_cli_status_export_close(round_dir: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli_app, ["label", "status", str(round_dir)])
    assert result.exit_code == 0 and "0/3 prompts labelled" in result.output
    store = open_store(read_label_round(round_dir))
    store.add("a", 0, 0, "choice", best=1)
    result = runner.invoke(cli_app, ["label", "export", str(round_dir), "--out", str(round_dir / "x")])
    assert result.exit_code == 0, result.output
    assert len(read_comparisons(round_dir / "x" / "pairs.jsonl")) == 3
    result = runner.invoke(cli_app, ["label", "close", str(round_dir)])
    assert result.exit_code == 0 and store.closed()["by"] == "cli"
    assert "closed" in runner.invoke(cli_app, ["label", "status", str(round_dir)]).output
    assert queue(read_label_round(round_dir), 0.0) == [(0, 0), (1, 0), (2, 0)]


def test_killed_server_keeps_every_acknowledged_label_once(round_dir: Path) -> None:
    """`harness label serve` killed with SIGKILL after N acknowledged labels: after a restart all N are there, and
    the page's retries of the same requests (same request ids) store none twice."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "harness", "label", "serve", str(round_dir), "--port", str(port), "--no-token",
               "--repeat", "0"]
    base = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(600):
            try:
                if httpx.get(f"{base}/api/status", timeout=1).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            if server.poll() is not None:
                raise AssertionError(server.stderr.read().decode())
            time.sleep(0.1)
        server.kill()
        raise AssertionError("the label server did not start")

    bodies = []
    server = start()
    try:
        for annotator in ("a", "b"):
            for _ in range(3):
                current = httpx.get(f"{base}/api/state", params={"annotator": annotator}).json()
                item = current["item"]
                body = {"round": current["round"], "annotator": annotator, "group": item["group"], "showing": 0,
                        "action": "choice", "best": item["images"][1]["name"],
                        "request_id": f"{annotator}{item['group']}"}
                assert httpx.post(f"{base}/api/label", json=body).status_code == 200
                bodies.append(body)
    finally:
        server.kill()  # SIGKILL: no shutdown, no checkpoint of the WAL
        server.wait(timeout=30)
    server = start()
    try:
        for body in bodies:  # a page that never saw the acknowledgements sends everything again
            assert httpx.post(f"{base}/api/label", json=body).status_code == 200
        status = httpx.get(f"{base}/api/status").json()
    finally:
        server.terminate()
        server.wait(timeout=30)
    judgments = open_store(read_label_round(round_dir)).judgments(live_only=False)
    assert len(judgments) == 6 and status["judgments"] == 6 and status["complete"]
    assert sorted((j.annotator, j.group) for j in judgments) == [(a, g) for a in "ab" for g in range(3)]
