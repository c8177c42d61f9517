"""The suite passes on a fresh clone: no ``../shared`` beside it, no network, no user cache.

Tests of the official data files skip there with a one-line reason (and fail under CI, which has the files); no
test may reach the network or read a download cache, so a machine that once downloaded a file cannot pass a test
that a fresh clone fails.
"""

from __future__ import annotations

import os
import re
import time
import urllib.request
from pathlib import Path

import pytest

import tests.conftest as conftest
from harness.data import DataFile, cache_dir, fetch
from harness.errors import DataError

TESTS = Path(__file__).resolve().parent


def test_missing_official_files_skip_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "OFFICIAL_DATA", tmp_path / "absent")
    monkeypatch.delenv(conftest.REQUIRE_OFFICIAL_DATA, raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        conftest.official_data("geneval/evaluation_metadata.jsonl")
    missing = tmp_path / "absent" / "geneval" / "evaluation_metadata.jsonl"
    assert str(skipped.value) == f"needs the official benchmark files: {missing} not found"
    (tmp_path / "absent" / "geneval").mkdir(parents=True)
    (tmp_path / "absent" / "geneval" / "evaluation_metadata.jsonl").touch()
    assert conftest.official_data("geneval/evaluation_metadata.jsonl") == tmp_path / "absent"


def test_ci_turns_those_skips_into_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "OFFICIAL_DATA", tmp_path / "absent")
    monkeypatch.setenv(conftest.REQUIRE_OFFICIAL_DATA, "1")
    with pytest.raises(pytest.fail.Exception, match="HARNESS_REQUIRE_OFFICIAL_DATA=1 says they must be there"):
        conftest.official_data("dpg-bench/prompts")


def test_ci_script_requires_the_files_when_they_are_beside_the_checkout() -> None:
    """``.ci/run`` sets the variable exactly when ``../shared/benchmarks`` exists, the folder conftest reads."""
    script = (TESTS.parent / ".ci" / "run").read_text()
    guard = re.search(r"if \[ -d (\S+) \]; then\s+export (\w+)=1\s+fi\s+\.venv/bin/python -m pytest\s*$", script)
    assert guard, "the requirement must be set right before the test command"
    assert guard.group(2) == conftest.REQUIRE_OFFICIAL_DATA
    assert (TESTS.parent / guard.group(1)).resolve() == conftest.OFFICIAL_DATA.resolve()


def test_tests_read_official_files_only_through_official_data() -> None:
    """A test that opens ``../shared`` directly would fail on a fresh clone instead of skipping."""
    offenders = [path.name for path in TESTS.glob("test_*.py")
                 if re.search(r"\bSHARED\b|\bOFFICIAL_DATA\b|/work/shared|[\"']shared[\"']", path.read_text())
                 and path.name != Path(__file__).name]
    assert offenders == []


def test_downloads_fail_fast_and_no_test_reaches_the_network() -> None:
    started = time.monotonic()
    with pytest.raises(OSError, match="tests do not use the network"):
        urllib.request.urlopen("http://93.184.215.14/", timeout=30)  # an address: no DNS needed to try it
    url = "https://raw.githubusercontent.com/nobody/none/0/x.jsonl"
    with pytest.raises(DataError, match=re.escape(f"downloading {url} failed")):
        fetch(DataFile("geneval", "never-there.jsonl", url))
    assert time.monotonic() - started < 10


def test_no_user_cache_or_data_dir() -> None:
    assert "HARNESS_DATA_DIR" not in os.environ
    assert not any(cache_dir().rglob("*"))  # a fresh, empty cache for the session
    assert cache_dir().parent != Path.home() / ".cache" / "harness"
