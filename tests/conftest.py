"""Shared fixtures. Tests run offline (HF_HUB_OFFLINE=1, and no socket may leave the machine) and single-threaded so
the suite is steady on 2 cores.

Tests of logic use small data files they write in the official formats (``tests/fixtures_data.py``). Tests of the
official data files themselves read ``../shared/benchmarks`` beside the checkout through :func:`official_data`:
where it is absent (a fresh clone, a laptop) they skip with a one-line reason; where CI has it (``.ci/run`` sets
``HARNESS_REQUIRE_OFFICIAL_DATA=1`` then) a missing file fails instead, so they can never be skipped silently.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[2] / "shared"
OFFICIAL_DATA = SHARED / "benchmarks"
REQUIRE_OFFICIAL_DATA = "HARNESS_REQUIRE_OFFICIAL_DATA"


def official_data(*files: str) -> Path:
    """The official data folder (``<dir>/<benchmark>/<path>``, as ``--data-dir``) if it holds ``files``.

    Otherwise skip the test with a one-line reason, or fail it when ``$HARNESS_REQUIRE_OFFICIAL_DATA`` is 1 (CI).
    """
    missing = [f for f in files or ("",) if not (OFFICIAL_DATA / f).exists()]
    if missing:
        reason = f"needs the official benchmark files: {OFFICIAL_DATA / missing[0]} not found"
        if os.environ.get(REQUIRE_OFFICIAL_DATA) == "1":
            pytest.fail(f"{reason}, and {REQUIRE_OFFICIAL_DATA}=1 says they must be there", pytrace=False)
        pytest.skip(reason)
    return OFFICIAL_DATA


@pytest.fixture
def unpinned_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Accept data files whatever their hash, for tests of logic on files written in the official formats
    (``tests/fixtures_data.py``): those cannot match the official files' pinned hashes. The pin check itself is
    tested with the check on (``tests/test_protocol.py``)."""
    import harness.data

    monkeypatch.setattr(harness.data, "hash_mismatch", lambda file, data: None)


@pytest.fixture(autouse=True, scope="session")
def _hermetic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reads the user's data dir or download cache, and none reaches the network.

    The cache is a fresh folder, so a file downloaded once on some machine cannot make a test pass there and fail
    on a fresh clone; connections other than to this machine raise at once, so a download attempt fails fast and
    the same way online and offline (file:// URLs, used to test downloads, still work).
    """
    patch = pytest.MonkeyPatch()
    patch.setenv("HARNESS_CACHE", str(tmp_path_factory.mktemp("harness-cache")))
    patch.delenv("HARNESS_DATA_DIR", raising=False)
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(method):  # type: ignore[no-untyped-def]
        def call(self: socket.socket, address: object) -> object:
            if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address):
                raise OSError(f"tests do not use the network (tried to connect to {address})")
            return method(self, address)

        return call

    patch.setattr(socket.socket, "connect", guarded(connect))
    patch.setattr(socket.socket, "connect_ex", guarded(connect_ex))
    yield
    patch.undo()


def _is_local(address: object) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="session")
def builtin_random_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init builtin model folder: the real architecture and loading path, untrained weights."""
    from harness.builtin.model import BuiltinPolicy

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "builtin-random"
    policy = BuiltinPolicy.new()
    policy.sampler_defaults = {"num_inference_steps": 2, "guidance_scale": 2.0, "eta": 0.0}
    policy.save(path)
    return path


@pytest.fixture(scope="module")
def policy(builtin_random_ckpt: Path):  # type: ignore[no-untyped-def]
    """The random-init builtin model loaded once per test module (a module may move or train its own copy)."""
    from harness.builtin.model import BuiltinPolicy

    return BuiltinPolicy.load(builtin_random_ckpt)


@pytest.fixture
def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, for torchrun's rendezvous: a fixed port collides when two test runs
    (or a leftover process) share the machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
