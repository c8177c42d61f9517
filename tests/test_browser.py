"""The pages in a real browser (issues 15 and 16): headless Chromium (Debian's ``chromium`` at /usr/bin/chromium)
driven by Playwright through ``executable_path``; no browser is ever downloaded.

* the labeling page (``harness label serve``): a round labelled end to end with the keyboard only, whose export is
  what the trainers read;
* the viewer (``harness view``): filters by tag and by failing only, several evaluations side by side;
* the HTML leaderboard, served by the viewer: it renders, and a score cell's link opens its images in the viewer.

Each test saves a screenshot under ``test-artifacts/`` (or ``$HARNESS_ARTIFACTS``). Without Chromium or Playwright
the tests skip with the reason, except under ``HARNESS_REQUIRE_BROWSER=1`` (CI), where they fail.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import leaderboard
from harness.labeling.export import export_round, read_flags
from harness.view import serve
from tests.test_compare import base_verdicts, improved
from tests.test_labeling import make_round
from tests.test_view import TRAINING, store_run
from trainers.labels import read_comparisons, read_labels

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REQUIRED = os.environ.get("HARNESS_REQUIRE_BROWSER") == "1"
ARTIFACTS = Path(os.environ.get("HARNESS_ARTIFACTS", ROOT / "test-artifacts"))
TIMEOUT_MS = 20_000


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (HARNESS_REQUIRE_BROWSER=1: browser tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One Chromium for the module, with a fresh profile (``--user-data-dir``) and no network but loopback."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install -e '.[dev]'")
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as playwright:
        try:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
                args=FLAGS, viewport={"width": 1280, "height": 900})
        except Error as err:
            _unavailable(f"chromium did not start: {str(err).splitlines()[0]}")
        context.set_default_timeout(TIMEOUT_MS)
        yield context
        context.close()


def screenshot(page: object, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    assert path.stat().st_size > 1000
    return path


def images_loaded(images: object, count: int | None = None, seconds: float = 20) -> None:
    """Wait until ``images`` (a locator; ``count`` of them, if given) have all loaded, 8 px wide like the test
    images. Polled from here: ``wait_for_function`` evaluates its predicate with ``eval``, which the viewer's CSP
    forbids. The gallery loads images lazily, so only those on screen are asked for."""
    deadline = time.monotonic() + seconds
    while True:
        sizes = images.evaluate_all("imgs => imgs.map(i => i.complete ? i.naturalWidth : -1)")  # type: ignore[attr-defined]
        if sizes and all(w == 8 for w in sizes) and (count is None or len(sizes) == count):
            return
        assert time.monotonic() < deadline, f"images not loaded: widths {sizes}"
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_label_a_round_with_the_keyboard(browser: object, tmp_path: Path) -> None:
    round_dir = make_round(tmp_path / "round")
    proc = subprocess.Popen([sys.executable, "-m", "harness", "label", "serve", str(round_dir), "--port",
                             str(free_port()), "--repeat", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        match = re.search(r"open (http://127\.0\.0\.1:\d+/\?token=\S+)", line)
        assert match, line + proc.stderr.read()  # type: ignore[union-attr]
        page = browser.new_page()  # type: ignore[attr-defined]
        for _ in range(100):  # the server prints its URL just before it listens
            try:
                page.goto(match[1])
                break
            except Exception:
                time.sleep(0.1)
        page.locator("#annotator").focus()
        page.keyboard.type("kb")
        page.keyboard.press("Enter")
        chosen: list[tuple[str, str | None]] = []  # per prompt: (best image, distorted image)

        def shown() -> list[str]:
            page.wait_for_selector("#grid .card img")
            return [re.search(r"img/(images/\d+\.png)", src)[1]  # type: ignore[index]
                    for src in page.locator("#grid .card img").evaluate_all("els => els.map(e => e.src)")]

        page.wait_for_function("document.querySelector('#progress-text').textContent === '1 of 3'")
        first = shown()
        page.keyboard.press("ArrowRight")  # cursor on the 2nd image
        page.keyboard.press("d")  # flag it distorted
        assert page.locator("#grid .card").nth(1).locator("button.on").inner_text() == "distorted"
        page.keyboard.press("3")  # best: the 3rd image (saves)
        chosen.append((first[2], first[1]))
        page.wait_for_function("document.querySelector('#progress-text').textContent === '2 of 3'")
        page.keyboard.press("s")  # skip the 2nd prompt ...
        page.wait_for_function("document.querySelector('#progress-text').textContent === '3 of 3'")
        page.keyboard.press("z")  # ... undo the skip: it is back
        page.wait_for_function("document.querySelector('#progress-text').textContent === '2 of 3'")
        second = shown()
        page.keyboard.press("1")
        chosen.append((second[0], None))
        page.wait_for_function("document.querySelector('#progress-text').textContent === '3 of 3'")
        third = shown()
        page.keyboard.press("2")
        chosen.append((third[1], None))
        page.wait_for_function("document.querySelector('#prompt').textContent.startsWith('All done')")
        screenshot(page, "labeling-keyboard")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    summary = export_round(round_dir)
    assert summary["judgments"] == 3 and summary["annotators"] == ["kb"] and summary["distorted_flags"] == 1
    best = read_comparisons(round_dir / "export" / "best_of_k.jsonl")
    names = [[f"images/{g * 3 + j:05d}.png" for j in range(3)] for g in range(3)]
    assert [b.scores for b in best] == [tuple(float(n == c[0]) for n in names[g]) for g, c in enumerate(chosen)]
    labels = read_labels(round_dir / "export" / "pairs.jsonl", round_dir)
    wins = {(p.i, p.j) if p.winner == 1 else (p.j, p.i) for p in labels.preferences if p.winner != 0}
    # Image scores s = 2 [best] - [distorted] (harness.labeling.scores); a pair's winner has the higher score.
    score = {int(c[0][7:12]): 2 for c in chosen} | {int(c[1][7:12]): -1 for c in chosen if c[1]}
    assert wins == {(a, b) for g in range(3) for a in range(3 * g, 3 * g + 3) for b in range(3 * g, 3 * g + 3)
                    if score.get(a, 0) > score.get(b, 0)}
    flags = read_flags(round_dir / "export" / "flags.jsonl")
    assert [f["image"] for f in flags if f["distorted"]] == [chosen[0][1]]


@pytest.fixture(scope="module")
def viewer_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("browser-view")
    store = tmp / "store"
    verdicts = base_verdicts(n_prompts=12)
    base = store_run(store, "base", verdicts, shade=60)
    better = store_run(store, "d3po", improved(verdicts, 8), shade=200, method="d3po", model="runs/d3po/checkpoint",
                       training=TRAINING)
    results = tmp / "results"
    for run in (base, better):
        leaderboard.publish(run, results, replicates=50)
    leaderboard.build(results)
    server = serve([base, better], results=results, stores=[store], port=0)
    try:
        yield {"server": server, "results": results}
    finally:
        server.stop()


def test_viewer_filters_and_side_by_side(browser: object, viewer_world: dict) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(viewer_world["server"].url)
    page.wait_for_selector("section.prompt")
    assert page.locator("section.prompt").count() == 12
    checked = page.locator("#sources input:checked").evaluate_all("bs => bs.map(b => b.value)")
    assert checked == ["base", "d3po"]  # by default the run folders side by side; not their published records
    sections = page.locator("section.prompt")
    for section in sections.all():
        assert section.locator("tr[data-source]").evaluate_all("rows => rows.map(r => r.dataset.source)") == \
            ["base", "d3po"]
    images_loaded(sections.first.locator("img"), count=8)  # 4 seeds x 2 evaluations
    page.select_option("#tag", "counting")
    assert set(sections.evaluate_all("s => s.map(e => e.dataset.tag)")) == {"counting"}
    assert sections.count() == 2  # prompts 2 and 8 of 12 (tags cycle through GenEval's six)
    page.select_option("#tag", "")
    page.locator("#failing").check()
    assert 0 < page.locator("td.cell").count() < 12 * 8  # columns where both images pass are gone
    for section in sections.all():  # every column left has a failing image, in one row or the other
        for column in range(4):
            cells = section.locator(f"tr[data-source] td:nth-child({column + 2})")
            if cells.count():
                verdicts = cells.evaluate_all("cs => cs.map(c => c.dataset.verdict)")
                assert "fail" in verdicts, verdicts
    assert "failing=1" in page.url and "source=base" in page.url
    reasons = page.locator("td.cell[data-verdict=fail] .reason")
    assert reasons.count() > 0 and reasons.first.inner_text() == "missing object"
    screenshot(page, "viewer-failing-side-by-side")


def test_leaderboard_renders_and_links_reach_the_viewer(browser: object, viewer_world: dict) -> None:
    server = viewer_world["server"]
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(server.url.replace("/?", "/leaderboard.html?"))
    assert page.locator("table").count() == 3  # the measured table and the two cited ones
    assert page.locator("img[alt='per-tag scores']").evaluate("i => i.naturalWidth") > 0
    screenshot(page, "leaderboard")
    d3po = page.locator("tr", has_text="D3PO").first
    d3po.locator("a[href*='tag=counting']").click()
    page.wait_for_url(re.compile(r"/view\?"))
    page.wait_for_selector("section.prompt")
    assert "token=" not in page.url  # the cookie set by the first page carried the token
    assert page.locator("#tag").input_value() == "counting"
    rows = page.locator("tr[data-source]").evaluate_all("rows => [...new Set(rows.map(r => r.dataset.source))]")
    assert len(rows) == 1 and "d3po" in rows[0] and rows[0] != "d3po"  # the published record, not the run folder
    images_loaded(page.locator("img"), count=8)  # 2 counting prompts x 4 images, found in the store
    screenshot(page, "leaderboard-link-to-viewer")
