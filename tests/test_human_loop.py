"""``harness train --feedback human`` (issue 15, item 2): the loop samples a round, serves the labeling page, waits
for labels, trains, goes on; and stops and resumes across "days" with a round sampled but not yet labelled.

The person is simulated, but only through the page's HTTP API (the real Starlette app; once over a real socket to
the uvicorn server the loop starts, once through starlette's TestClient on a separately built app, as with
``harness label serve RUN``): it reads each image the page links to and picks the brightest as best."""

from __future__ import annotations

import json
import threading
import time
from io import BytesIO
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from starlette.testclient import TestClient

from harness.errors import DataError, HarnessError
from harness.labeling.app import Board, create_app
from harness.labeling.rounds import DB_FILE, read_label_round, round_folder
from harness.rounds import read_round_index
from tests.test_labeling import PROMPTS as ROUND_PROMPTS
from tests.test_labeling import K, make_round
from trainers.human import SERVER_FILE, parse_human
from trainers.labels import read_labels
from trainers.loop import TrainResult, train

SMALL = {"num_inference_steps": "2", "prompts_per_round": "2", "images_per_prompt": "2", "learning_rate": "1e-4"}
PROMPTS = "builtin:geneval-train"
CKPT = "builtin:shapes"


def label_everything(client: httpx.Client, annotator: str = "sim", token: str | None = None) -> int:
    """Label every prompt the page offers this annotator: best = the brightest image. Returns judgments posted."""
    headers = {"X-Harness-Token": token} if token else {}
    posted = 0
    while True:
        state = client.get("api/state", params={"annotator": annotator}, headers=headers).json()
        item = state.get("item")
        if item is None:
            return posted
        brightness = {}
        for image in item["images"]:
            png = client.get(image["url"], headers=headers)
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            brightness[image["name"]] = np.asarray(Image.open(BytesIO(png.content)).convert("RGB"), float).mean()
        body = {"round": state["round"], "annotator": annotator, "group": item["group"], "showing": item["showing"],
                "action": "choice", "best": max(brightness, key=brightness.get), "request_id": f"{state['round']}-"
                f"{item['group']}-{item['showing']}"}
        response = client.post("api/label", json=body, headers=headers)
        assert response.status_code == 200, response.text
        posted += 1


def simulated_person(out: Path, stop: threading.Event, posted: list[int]) -> None:
    """Wait for the page the loop serves (its URL is in OUT/label_server.json), then keep labelling."""
    while not stop.is_set():
        info = out / SERVER_FILE
        if info.is_file():
            url = httpx.URL(json.loads(info.read_text())["url"])
            with httpx.Client(base_url=str(url.copy_with(query=None)), params=dict(url.params)) as client:
                while not stop.is_set():
                    try:
                        posted[0] += label_everything(client)
                    except httpx.TransportError:  # the run ended and its page with it
                        return
                    time.sleep(0.2)
        time.sleep(0.2)


def run(out: Path, feedback: str, budget: int = 8, **kwargs: object) -> TrainResult:
    return train("d3po", CKPT, feedback, PROMPTS, budget, out, seed=5, settings=SMALL, progress=False, **kwargs)


def check_rounds(out: Path, rounds: int) -> None:
    """Every round folder holds its labels and an export the trainers' readers take; every logged preference has
    the brighter image as winner (the simulated person's rule, through the page, the store and the loop)."""
    for r in range(1, rounds + 1):
        folder = round_folder(out, r)
        assert (folder / DB_FILE).is_file() and (folder / "trajectories.safetensors").is_file()
        labels = read_labels(folder / "export" / "pairs.jsonl", folder)
        assert len(labels.preferences) == 2  # 2 prompts x 1 pair
    rows = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    assert sorted({row["round"] for row in rows}) == list(range(1, rounds + 1))
    for row in rows:
        assert row["source"].startswith("human")
        w, lo = (np.asarray(Image.open(out / row[k]).convert("RGB"), float).mean() for k in ("image_w", "image_l"))
        assert w > lo


def one_sitting(out: Path, budget: int = 8) -> tuple[TrainResult, int]:
    """A run whose page (served by the loop on a free port) a simulated person labels as rounds appear."""
    stop, posted = threading.Event(), [0]
    person = threading.Thread(target=simulated_person, args=(out, stop, posted), daemon=True)
    person.start()
    try:
        result = run(out, "human?port=0&poll=0.05&repeat=0&timeout=300", budget=budget)
    finally:
        stop.set()
        person.join(timeout=10)
    return result, posted[0]


def test_human_loop_serves_the_page_waits_for_labels_and_trains(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result, posted = one_sitting(out)
    assert result.summary["rounds"] == 2 and posted == 4  # the page followed the run into round 2
    assert result.summary["cost"]["labels_used"] == 4  # judgments, one per prompt and round
    check_rounds(out, 2)
    with pytest.raises(httpx.TransportError):  # the page stopped with the run
        httpx.get(json.loads((out / SERVER_FILE).read_text())["url"], timeout=2)


def label_first_prompt_and_close(out: Path) -> None:
    """A person at a separately served page (`harness label serve OUT`) labels one prompt and finishes the round."""
    with TestClient(create_app(Board(out)), base_url="http://127.0.0.1/") as page:
        state = page.get("api/state", params={"annotator": "p"}).json()
        item = state["item"]
        response = page.post("api/label", json={"round": state["round"], "annotator": "p", "group": item["group"],
                                                "showing": 0, "action": "choice", "best": item["images"][0]["name"]})
        assert response.status_code == 200
        assert page.post("api/close", json={"annotator": "p"}).status_code == 200


def test_a_round_sampled_before_a_stop_is_labelled_later_and_trained_on_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    spec = "human?serve=false&poll=0.05&repeat=0&timeout=0.5"
    with pytest.raises(HarnessError, match=r"round 1 is not labelled after 0\.5s"):
        run(out, spec, budget=4)  # nobody labels today: the loop gives up and keeps the sampled round
    folder = round_folder(out, 1)
    assert (folder / "trajectories.safetensors").is_file() and not (out / "state.pt").exists()
    sampled = (folder / "trajectories.safetensors").stat().st_mtime_ns
    label_first_prompt_and_close(out)  # next day
    result = run(out, spec, budget=4, resume=True)
    assert (folder / "trajectories.safetensors").stat().st_mtime_ns == sampled  # trained on, not sampled again
    assert result.summary["rounds"] == 1 and result.summary["cost"]["labels_used"] == 1
    assert result.summary["final_metrics"]["strict_pairs"] == 1  # one prompt of two was labelled, then closed
    (row,) = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    assert row["round"] == 1 and row["source"] == spec
    assert read_labels(folder / "export" / "pairs.jsonl", folder).labels_used == 1


@pytest.mark.slow
def test_resumed_across_days_reaches_the_weights_of_one_sitting(tmp_path: Path) -> None:
    """Two stops, each with a round sampled and not labelled, then labelled at a separate page: the same labels
    give bit-identical weights to the run labelled in one sitting (~3 minutes on a busy 2-core machine)."""
    whole = tmp_path / "whole"
    one_sitting(whole)
    split = tmp_path / "split"
    spec = "human?serve=false&poll=0.05&repeat=0&timeout=0.5"
    with pytest.raises(HarnessError, match="round 1 is not labelled"):
        run(split, spec)
    with TestClient(create_app(Board(split)), base_url="http://127.0.0.1/") as page:
        assert label_everything(page) == 2
    with pytest.raises(HarnessError, match="round 2 is not labelled"):
        run(split, spec, resume=True)  # trains round 1 from the saved folder, samples round 2, waits, stops
    assert torch.load(split / "state.pt", weights_only=False)["round"] == 1
    with TestClient(create_app(Board(split)), base_url="http://127.0.0.1/") as page:
        assert label_everything(page) == 2
    assert run(split, spec, resume=True).summary["rounds"] == 2
    check_rounds(split, 2)
    a = torch.load(whole / "state.pt", weights_only=False)["weights"]
    b = torch.load(split / "state.pt", weights_only=False)["weights"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the same labels, the same weights


@pytest.mark.parametrize(("spec", "message"), [
    ("human?mode=stars", "mode must be one of"), ("human?annotators=0", "annotators must be >= 1"),
    ("human?port=70000", "port must be in"), ("human?colour=red", "unknown parameter"),
    ("human?timeout=-1", "timeout must be > 0"), ("human?serve=maybe", "serve='maybe'"),
    ("human?on_timeout=wait", "on_timeout must be stop or train"), ("human?mode=best&mode=flags", "given twice"),
])
def test_bad_human_specs_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(HarnessError, match=message):
        parse_human(spec)


def test_human_feedback_needs_one_process() -> None:
    with pytest.raises(HarnessError, match="one process"):
        parse_human("human").attach(Path("unused"), num_processes=2)


def test_the_page_and_the_trainers_read_a_round_with_one_reader(tmp_path: Path) -> None:
    """The labeling page groups the rows the trainers' reader finds (harness/rounds.py); an image name that leaves
    the round folder is refused on both sides, so a round file cannot point either at another file."""
    folder = make_round(tmp_path / "round")
    index, shown = read_round_index(folder), read_label_round(folder)
    assert [group.prompt for group in shown.groups] == ROUND_PROMPTS
    assert [list(group.images) for group in shown.groups] == [
        [f"images/{g * K + j:05d}.png" for j in range(K)] for g in range(len(ROUND_PROMPTS))]
    assert [index.row_of(image) for group in shown.groups for image in group.images] == list(range(len(index.items)))
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    meta = json.loads((folder / "round.json").read_text())
    meta["rows"][0]["image"] = "../outside.png"
    (folder / "round.json").write_text(json.dumps(meta))
    for read in (read_round_index, read_label_round):
        with pytest.raises(DataError, match="outside the round"):
            read(folder)
