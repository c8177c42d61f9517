"""``EvalSettings.sample`` (a seeded evaluation subsample spread over the tags) and ``harness.api.method_config``,
the two pieces of ``harness.api`` the online-methods table relies on."""

from __future__ import annotations

from collections import Counter

import pytest

from benchmarks.registry import get_benchmark
from harness.api import EvalSettings, method_config, select_prompts
from harness.errors import HarnessError


def test_subsample_is_seeded_and_spread_over_the_tags():
    bench = get_benchmark("t2i-compbench")
    items = bench.prompts("builtin")
    chosen = select_prompts(items, bench, EvalSettings(sample=300))
    assert len(chosen) == 300 and Counter(i.tag for i in chosen) == {t: 50 for t in Counter(i.tag for i in items)}
    assert [i.index for i in chosen] == sorted(i.index for i in chosen)  # benchmark order kept
    assert chosen == select_prompts(items, bench, EvalSettings(sample=300))
    assert chosen != select_prompts(items, bench, EvalSettings(sample=300, sample_seed=1))
    # after --tags and --limit; a sample larger than what is left keeps all of it
    assert len(select_prompts(items, bench, EvalSettings(sample=5000, tags=("color",)))) == 300
    with pytest.raises(HarnessError, match="sample must be a whole number >= 1"):
        EvalSettings(sample=0)


def test_method_config_is_the_defaults_with_the_settings():
    config = method_config("grpo", "builtin:shapes", {"learning_rate": "3e-5"})
    assert config["learning_rate"] == 3e-5 and config["adam_betas"] == [0.9, 0.999]  # JSON form, as summary.json
    assert method_config("grpo")["learning_rate"] != 3e-5
    with pytest.raises(HarnessError, match="--set no_such: unknown setting"):
        method_config("d3po", "builtin:shapes", {"no_such": "1"})
