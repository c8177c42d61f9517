"""What every perf script shares: timing, the matmul peak, the results file, the printed table.

Each script appends one JSON line per measurement to ``results/perf/<script>.jsonl``; every line carries the
machine, package versions, date and git commit (:func:`harness.records.environment_info`), so lines from different
machines or commits can sit in one file and still be told apart. Absolute times on shared machines are noisy: the
scripts report ratios measured within one run (fraction of peak, overhead share, ours / peer) beside them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from harness.records import environment_info

RESULTS = Path("results/perf")


def timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Best wall time of ``repeats`` calls, in seconds (the minimum is the least disturbed by other processes)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def matmul_peak_flops(size: int = 1024, repeats: int = 3) -> float:
    """The machine's achievable matmul rate in FLOP/s: ``2 n^3 / t`` for an ``n x n`` float32 ``torch.matmul``.

    Measured, not read from a spec sheet, with the same thread count as the model runs with, so "fraction of peak"
    means what this process could have got from the hardware at that moment.
    """
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)  # warm-up: thread pool, page faults
    return 2 * size**3 / timed(lambda: torch.matmul(a, b), repeats)


class ResultsFile:
    """JSON lines under ``results/perf/<name>.jsonl``; each line = the environment + one measurement."""

    def __init__(self, name: str, folder: Path = RESULTS) -> None:
        self.path = Path(folder) / f"{name}.jsonl"
        self.environment = environment_info()
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
