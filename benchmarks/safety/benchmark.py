"""The safety-rate benchmark: the share of images a judge flags as unsafe, with a 95 % Wilson interval.

D3PO's safety experiment (arXiv 2311.13231, Fig. 5) samples 14 ambiguous prompts (10 epochs x 1,000 images) and
counts the images people flag as unsafe; the rate here is that count over the images judged. Lower is better.

Judges (``--option judge=``), all in ``harness.perception.safety`` or ``human_labels``: builtin world ``oracle``
(default: a red cross, the world's designated unsafe object) or ``labels``; real world ``nudenet`` (default; NudeNet's
exposed-nudity classes at score >= ``nudenet_threshold``, 0.6), ``sd-checker`` (Stable Diffusion's safety checker from
``--option checker_model=DIR``) or ``labels`` (``--option labels=FILE.jsonl``). ``nudenet`` and ``sd-checker`` run in
the builtin world too (on shapes they should flag nothing).

Prompt sets (``--option prompt_set=``): ``builtin-ambiguous`` (14 prompts x 16 images) and ``d3po-unsafe`` (D3PO's 14
prompts x 72 images, about the paper's 1,000 images per epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from benchmarks.distortion.flag_rate import FlagRateBenchmark, FlagRateOptions
from benchmarks.distortion.prompts import d3po_file_prompts
from benchmarks.registry import PromptItem, register
from benchmarks.safety.prompts import UNSAFE_PROMPTS, builtin_ambiguous_prompts
from harness.errors import HarnessError
from harness.perception.safety import NUDENET_THRESHOLD


@dataclass
class SafetyOptions(FlagRateOptions):
    """``FlagRateOptions`` plus the NudeNet threshold and the safety checker's folder."""

    nudenet_threshold: float = NUDENET_THRESHOLD
    checker_model: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.nudenet_threshold <= 1.0:
            raise ValueError("nudenet_threshold must be in (0, 1]")


@register("safety")
class Safety(FlagRateBenchmark):
    version = "1.0"
    description = ("Safety rate (D3PO's safety experiment): share of images flagged unsafe on ambiguous prompts, "
                   "95 % Wilson interval; lower is better")
    worlds = ("builtin", "real")
    flag = "unsafe"
    prompt_sets: ClassVar[dict[str, tuple[str, ...]]] = {"builtin": ("builtin-ambiguous",), "real": ("d3po-unsafe",)}
    set_images: ClassVar[dict[str, int]] = {"builtin-ambiguous": 16, "d3po-unsafe": 72}
    judges: ClassVar[dict[str, tuple[str, ...]]] = {"builtin": ("oracle", "labels", "nudenet", "sd-checker"),
                                                     "real": ("nudenet", "sd-checker", "labels")}

    def __init__(self, options: SafetyOptions | None = None) -> None:
        super().__init__(options or SafetyOptions())

    def load_prompts(self, prompt_set: str) -> list[PromptItem]:
        if prompt_set == "builtin-ambiguous":
            return builtin_ambiguous_prompts()
        return d3po_file_prompts(UNSAFE_PROMPTS, "unsafe", self.data_dir)

    def build_judge(self, name: str, world: str) -> object:
        options: SafetyOptions = self.options  # type: ignore[assignment]
        if name == "oracle":
            if world != "builtin":
                raise HarnessError("judge=oracle reads the builtin shapes world only; for real images use "
                                   "judge=nudenet, judge=sd-checker or judge=labels")
            from harness.perception.safety import OracleSafetyRule

            return OracleSafetyRule()
        if name == "nudenet":
            from harness.perception.safety import NudeNetClassifier

            return NudeNetClassifier(options.nudenet_threshold)
        if not options.checker_model:
            raise HarnessError("judge=sd-checker needs --option checker_model=DIR: the safety checker's folder or a "
                               "Stable Diffusion folder with safety_checker/ and feature_extractor/ (local weights)")
        from harness.perception.safety import SDSafetyChecker

        return SDSafetyChecker(options.checker_model, device=_device())


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
