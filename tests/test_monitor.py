"""The reward-hacking monitor: fixed held-out subset, benchmark scoring, image statistics, the warning rule."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.registry import get_benchmark
from harness.builtin.render import render
from harness.builtin.world import BACKGROUND, CANVAS, ObjectRequest, SceneRequest, sample_scene
from harness.errors import HarnessError
from trainers.monitor import (
    Monitor,
    distortion_and_colours,
    hacking_warning,
    held_out_subset,
    in_reward,
    pixel_colour_entropy,
    seed_diversity,
)


@pytest.fixture(scope="module")
def random_policy(builtin_random_ckpt: Path):
    from harness.checkpoints import resolve_checkpoint

    return resolve_checkpoint(str(builtin_random_ckpt))


def test_measure_on_a_random_policy(random_policy, tmp_path: Path):
    monitor = Monitor("builtin", n_prompts=6, seed=0, out_dir=tmp_path, every_rounds=2)
    subset = monitor.subsets["geneval"]
    assert len(subset) == 6 and all(len(seeds) == 2 for _, seeds in subset)
    assert sorted({item.tag for item, _ in subset}) == sorted(
        {"single_object", "two_object", "counting", "colors", "position", "color_attr"})
    random_policy.unet.train()
    first = monitor.measure(random_policy, 0, proxy_reward=0.1)
    assert random_policy.unet.training  # the policy's mode is restored
    assert set(first) >= {"round", "proxy_reward", "held_out", "geneval/overall", "geneval/counting",
                          "distortion_rate", "colour_entropy", "seed_diversity", "hacking_warning"}
    assert 0.0 <= first["held_out"] <= 1.0 and first["held_out"] == first["geneval/overall"]
    # untrained weights draw noise: the oracle finds almost no objects, and seeds differ
    assert first["distortion_rate"] >= 0.5 and first["seed_diversity"] > 0.01
    second = monitor.measure(random_policy, 2, proxy_reward=0.2)
    # same prompts, same seeds, same weights: the same numbers
    assert {k: v for k, v in second.items() if k not in ("round", "proxy_reward", "wall_s")} == {
        k: v for k, v in first.items() if k not in ("round", "proxy_reward", "wall_s")}
    assert monitor.curves["round"] == [0, 2] and monitor.curves["proxy_reward"] == [0.1, 0.2]
    assert monitor.due(4) and not monitor.due(3)
    saved = json.loads((tmp_path / "monitor.json").read_text())
    assert saved["curves"]["round"] == [0, 2] and saved["settings"]["held_out"]["geneval"][0][1] == subset[0][1]
    # a resumed run continues the curves and re-measures from where it resumes
    resumed = Monitor("builtin", n_prompts=6, seed=0, out_dir=tmp_path)
    assert [e["round"] for e in resumed.history] == [0, 2]
    with pytest.raises(HarnessError, match="other monitor settings"):
        Monitor("builtin", n_prompts=5, seed=0, out_dir=tmp_path)


def test_warning_fires_and_is_recorded(random_policy, tmp_path: Path, monkeypatch, caplog):
    """Proxy up, held-out down by >= min_drop over the window: a logged warning and a flag in the curves."""
    monitor = Monitor("builtin", n_prompts=3, seed=1, out_dir=tmp_path, window=3)
    bench = monitor.benches["geneval"]
    held_out = iter([0.50, 0.49, 0.45, 0.44])
    monkeypatch.setattr(bench, "aggregate", lambda results: {"overall": next(held_out)})
    with caplog.at_level(logging.WARNING, logger="trainers.monitor"):
        flags = [monitor.measure(random_policy, r, proxy_reward=p)["hacking_warning"]
                 for r, p in enumerate([0.1, 0.2, 0.3, 0.35])]
    assert flags == [False, False, True, True]
    assert monitor.warnings == [2, 3]
    assert "possible reward hacking at round 2" in caplog.text
    assert json.loads((tmp_path / "monitor.json").read_text())["warnings"] == [2, 3]


@pytest.mark.parametrize(("proxy", "held_out", "expected"), [
    ([0.1, 0.2, 0.3], [0.5, 0.48, 0.46], True),  # proxy up, held-out down 0.04
    ([0.1, 0.2, 0.3], [0.5, 0.49, 0.48], False),  # drop 0.02 < min_drop
    ([0.3, 0.2, 0.1], [0.5, 0.4, 0.3], False),  # proxy falling too
    ([0.1, 0.2, 0.3], [0.4, 0.5, 0.6], False),  # both rising: learning, not hacking
    ([0.1, 0.3], [0.5, 0.3], False),  # fewer measurements than the window
    ([0.0, 0.9, 0.1, 0.2, 0.3], [0.9, 0.1, 0.5, 0.5, 0.45], True),  # only the last window counts
    ([0.1, None, 0.2, 0.3], [0.5, 0.1, 0.5, 0.4], True),  # measurements without a proxy are skipped
])
def test_warning_rule(proxy, held_out, expected):
    assert hacking_warning(proxy, held_out, window=3, min_drop=0.03) is expected


def test_in_reward():
    assert in_reward("objective:geneval", "geneval")
    assert in_reward({"feedback": "simulated:geneval-partial?noise=0.1"}, "GenEval")
    assert in_reward({"feedback": "objective:counting-error"}, "geneval")
    assert in_reward({"feedback": "x", "benchmark": "t2i_compbench"}, "t2i-compbench")
    assert in_reward({"feedback": "objective:distorted", "objective": "distorted", "benchmark": "geneval"}, "geneval")
    assert not in_reward("objective:geneval", "t2i-compbench")
    assert not in_reward("objective:jpeg-compressibility", "geneval")
    assert not in_reward("reward:/runs/rm", "geneval")
    assert not in_reward({"feedback": "labels:/data/round1"}, "geneval")


def test_image_statistics():
    rng = random.Random(0)
    red = render(sample_scene(SceneRequest((ObjectRequest("circle", color="red"),)), rng))
    blue = render(sample_scene(SceneRequest((ObjectRequest("star", color="blue"),)), rng))
    blank = Image.new("RGB", (CANVAS, CANVAS), BACKGROUND)
    rate, entropy = distortion_and_colours([red, blue, blank, blank])
    assert rate == 0.5 and entropy == pytest.approx(1.0)
    assert distortion_and_colours([red, red]) == (0.0, 0.0)
    assert pixel_colour_entropy([blank]) == 0.0 and pixel_colour_entropy([red, blue]) > 0.0
    a, b = np.asarray(red), np.asarray(blue)
    assert seed_diversity([[a, a, a]]) == 0.0
    expected = np.abs(a.astype(float) - b.astype(float)).mean() / 255
    assert seed_diversity([[a, b], [a, a]]) == pytest.approx(expected / 2)


def test_held_out_subset_is_fixed_and_spread_over_tags():
    items = get_benchmark("geneval").prompts("builtin")
    subset = held_out_subset(items, 64, seed=0)
    assert [i.index for i in subset] == [i.index for i in held_out_subset(items, 64, seed=0)]
    assert [i.index for i in subset] != [i.index for i in held_out_subset(items, 64, seed=1)]
    counts = {tag: sum(i.tag == tag for i in subset) for tag in {i.tag for i in items}}
    assert sorted(counts.values()) == [10, 10, 11, 11, 11, 11]
    assert len({i.index for i in subset}) == 64


def test_bad_settings():
    with pytest.raises(HarnessError, match="out of range"):
        Monitor("builtin", n_prompts=0)
    with pytest.raises(HarnessError, match="does not support the 'nowhere' world"):
        Monitor("nowhere")
