"""GenEval's reading rule for the builtin oracle's held-out report (``harness builtin perception-report``).

The report itself (``harness/builtin/perception_report.py``) takes the rule as an argument, since the builtin world
knows no benchmark; this module supplies GenEval's: a detection scores above ``threshold`` (0.3), a counted one
above ``counting_threshold`` (0.9), and positions follow :func:`benchmarks.geneval.rules.relative_position` with the
official margin (0.1 x the summed box sizes).
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.geneval.rules import GenEvalOptions, relative_position
from harness.builtin.perception_report import PerceptionReport, ReadingRule
from harness.builtin.perception_report import perception_report as report_under

_OPTIONS = GenEvalOptions()


def _position(a: Sequence[float], b: Sequence[float]) -> set[str]:
    return relative_position(a, b, _OPTIONS.position_threshold)


GENEVAL_READING = ReadingRule(threshold=_OPTIONS.threshold, counting_threshold=_OPTIONS.counting_threshold,
                              position=_position)


def perception_report(n: int = 2000, seed: int = 12345) -> PerceptionReport:
    """The oracle's accuracy on ``n`` held-out renders, under GenEval's reading rule."""
    return report_under(GENEVAL_READING, n=n, seed=seed)
