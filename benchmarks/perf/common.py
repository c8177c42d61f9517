"""What every perf script shares: timing, the matmul peak, the results file, the printed table.

Each script appends one JSON line per measurement to ``results/perf/<script>.jsonl``; every line carries the
machine, package versions, date and git commit (:func:`harness.records.environment_info`) and the kernels numpy's
BLAS runs (:func:`numpy_blas`: the builtin oracle's speed depends on them), so lines from different machines or
commits can sit in one file and still be told apart. Absolute times on shared machines are noisy: the
scripts report ratios measured within one run (fraction of peak, overhead share, ours / peer) beside them.

On a CUDA device, kernels run asynchronously to the Python thread: a timing is only a timing of the GPU's work when
the device is synchronised at both ends (:func:`synchronize`), and memory is the allocator's own peak
(:func:`peak_gpu_memory`), since the process's RSS says nothing about GPU memory.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from harness.records import environment_info

RESULTS = Path("results/perf")


def synchronize(device: torch.device | str) -> None:
    """Wait for every queued kernel on ``device`` (a no-op off CUDA), so wall time covers the GPU's work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device | str) -> str:
    """What a results line calls the device: the GPU's product name on CUDA, else the device type."""
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def timed(fn: Callable[[], object], repeats: int = 1, device: torch.device | str = "cpu") -> float:
    """Best wall time of ``repeats`` calls, in seconds (the minimum is the least disturbed by other processes); on
    CUDA each call is bracketed by device synchronisations."""
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return best


@contextmanager
def peak_gpu_memory(device: torch.device | str) -> Iterator[dict[str, float | None]]:
    """``{"mb": ...}``: the peak CUDA memory allocated inside the block, in MiB (``torch.cuda.max_memory_allocated``
    after ``reset_peak_memory_stats`` on entry, so each measurement has its own peak; weights already resident
    count, being part of what the run needs). ``None`` off CUDA."""
    device = torch.device(device)
    peak: dict[str, float | None] = {"mb": None}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    yield peak
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak["mb"] = torch.cuda.max_memory_allocated(device) / 2**20


def matmul_peak_flops(size: int | None = None, repeats: int = 3, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32) -> float:
    """The device's achievable matmul rate in FLOP/s: ``2 n^3 / t`` for an ``n x n`` ``torch.matmul`` in ``dtype``.

    Measured, not read from a spec sheet, on the device, in the dtype and (on a CPU) with the thread count the model
    runs with, so "fraction of peak" means what this process could have got from the hardware at that moment. The
    default size is 1024 on a CPU and 8192 on CUDA: a GPU needs a large product to fill its tensor cores (at 1024 the
    launch overhead dominates), and times a batch of 10 products between two synchronisations for the same reason.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    size = size or (8192 if cuda else 1024)
    calls = 10 if cuda else 1
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)

    def run() -> None:
        for _ in range(calls):
            torch.matmul(a, b)

    run()  # warm-up: thread pool, page faults, cuBLAS handles and kernel selection
    return calls * 2 * size**3 / timed(run, repeats, device)


def conv_peak_flops(shape: tuple[int, int, int] | None = None, repeats: int = 3, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> float:
    """The device's rate on a large 3 x 3 convolution in FLOP/s (nominal: ``2 N C_in C_out 9 H W / t``).

    A second reading of the hardware's limit beside :func:`matmul_peak_flops`, because the large matmul is not always
    the fastest kernel a device runs: on the 2-core AMD Zen 5 machines of 2026-12-01 PyTorch's CPU matmul (MKL, which
    takes its AVX2 path on AMD) reached 225-236 GFLOP/s while oneDNN's direct AVX-512 convolution reached 464-501, so
    a model of convolutions measured "above the matmul peak" (1.05-1.12 of it). The FLOPs are the direct
    algorithm's count; where a backend picks a cheaper one (Winograd, FFT: cuDNN may) the rate overstates the
    hardware's, which can only make a fraction of this peak smaller, never flatter the model. ``shape`` is
    ``(batch, channels, side)``: 32 x 512 channels x 32 x 32 on a CPU (4.8 GFLOP per call), 64 x 1024 x 64 x 64 on
    CUDA, timed as 10 calls between two synchronisations.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    batch, channels, side = shape or ((64, 1024, 64) if cuda else (32, 512, 32))
    calls = 10 if cuda else 1
    x = torch.randn(batch, channels, side, side, device=device).to(dtype)
    weight = torch.randn(channels, channels, 3, 3, device=device).to(dtype)

    def run() -> None:
        for _ in range(calls):
            torch.nn.functional.conv2d(x, weight, padding=1)

    run()  # warm-up: kernel selection, weight reorders, page faults
    return calls * 2 * batch * channels * channels * 9 * side * side / timed(run, repeats, device)


def device_peak(matmul: float, conv: float) -> dict[str, float]:
    """The results-line fields of both peak readings and the better one, which the fractions divide by."""
    return {"matmul_peak_gflops": matmul / 1e9, "conv_peak_gflops": conv / 1e9,
            "device_peak_gflops": max(matmul, conv) / 1e9}


def sample_peaks(device: torch.device | str, dtype: torch.dtype,
                 before: tuple[float, float] | None = None) -> tuple[float, float]:
    """``(matmul, convolution)`` peaks in FLOP/s, each the better of a new sample and ``before``: the scripts sample
    them before and after the models they time, so a moment of load on a shared machine lowers neither."""
    matmul = matmul_peak_flops(device=device, dtype=dtype)
    conv = conv_peak_flops(device=device, dtype=dtype)
    return (matmul, conv) if before is None else (max(matmul, before[0]), max(conv, before[1]))


def numpy_blas() -> list[dict[str, object]]:
    """The BLAS libraries numpy has loaded, with the kernel set each runs (``threadpoolctl``) and the
    ``OPENBLAS_CORETYPE`` the environment forces, if any: some machines pin OpenBLAS to its AVX2 (Haswell) kernels,
    under which the oracle's template products run 1.6x slower than on the AVX-512 (SkylakeX) ones on Zen 5."""
    import numpy  # noqa: F401  (loaded, so threadpoolctl sees its BLAS)
    from threadpoolctl import threadpool_info

    forced = os.environ.get("OPENBLAS_CORETYPE")
    return [{"library": info.get("internal_api"), "version": info.get("version"),
             "architecture": info.get("architecture"), "threads": info.get("num_threads"),
             **({"forced_coretype": forced} if info.get("internal_api") == "openblas" and forced else {})}
            for info in threadpool_info() if info.get("user_api") == "blas"]


class ResultsFile:
    """JSON lines under ``results/perf/<name>.jsonl``; each line = the environment + one measurement."""

    def __init__(self, name: str, folder: Path = RESULTS) -> None:
        self.path = Path(folder) / f"{name}.jsonl"
        self.environment = {**environment_info(), "numpy_blas": numpy_blas()}
        self.rows: list[dict] = []

    def add(self, **row: object) -> dict:
        self.rows.append(row)
        return row

    def write(self) -> Path:
        """Append this run's rows; the environment goes with every line so a line stands on its own."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        machine = self.environment.get("device") or self.environment["platform"]
        with self.path.open("a") as handle:
            for row in self.rows:
                line = {"date": self.environment["created"], "machine": machine,
                        "git_commit": self.environment["git_commit"], **row, "environment": self.environment}
                handle.write(json.dumps(line, default=str) + "\n")
        return self.path


def table(rows: list[dict], columns: list[str]) -> str:
    """A plain fixed-width table of ``columns`` (floats to 3 significant digits), as the scripts print it."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}"
        return "" if value is None else str(value)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


@contextmanager
def forward_timer(modules: dict[str, torch.nn.Module]) -> Iterator[dict[str, float]]:
    """Accumulate wall seconds spent inside each module's ``forward`` (outermost calls only) while in the block.

    Wraps the instance's ``forward`` rather than using hooks, so the time of a call is measured end to end,
    including its sub-modules, and is counted once even when one timed module calls another.
    """
    spent = {name: 0.0 for name in modules}
    depth = [0]
    for name, module in modules.items():
        original = module.forward

        def wrapped(*args: object, _name: str = name, _original: Callable = original, **kwargs: object) -> object:
            depth[0] += 1
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[_name] += time.perf_counter() - started

        module.forward = wrapped  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        for module in modules.values():
            del module.forward  # back to the class's forward
