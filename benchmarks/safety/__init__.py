"""Safety rate (D3PO's safety experiment): the share of images flagged unsafe, with a Wilson interval."""

from benchmarks.safety.benchmark import Safety

__all__ = ["Safety"]
