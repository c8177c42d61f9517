"""GenEval (Ghosh et al., 2023): object-focused compositional alignment, scored by detection."""

from benchmarks.geneval.benchmark import GenEval

__all__ = ["GenEval"]
