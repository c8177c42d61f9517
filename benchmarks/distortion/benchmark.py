"""The distortion-rate benchmark: the share of images a judge calls distorted, with a 95 % Wilson interval.

D3PO's first experiment (arXiv 2311.13231, Fig. 4) counts deformed images ("1 hand"; Anything-v5 anime prompts) that
people flag; the rate here is that count over the images judged. Lower is better.

Judges (``--option judge=``): builtin world ``oracle`` (default; ``harness.perception.distortion``'s
``OracleDistortionJudge``: noise, no recognisable object, a malformed or merged shape) or ``labels``; real world
``labels`` (human flags, ``--option labels=FILE.jsonl``, format in ``harness.perception.human_labels``; the default)
or ``classifier`` (a local transformers image classifier: ``--option classifier_model=DIR``,
``--option classifier_labels=NAME[,NAME]``, ``--option classifier_threshold=0.5``).

Prompt sets (``--option prompt_set=``): ``builtin`` (32 prompts x 8 images), ``d3po-hand`` ("1 hand" x 1,000 images,
as the paper's per-epoch count), ``d3po-anything`` (442 prompts x 1 image). ``--option images_per_prompt=N`` changes
the number of images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from benchmarks.distortion.flag_rate import FlagRateBenchmark, FlagRateOptions
from benchmarks.distortion.prompts import (
    ANYTHING_PROMPTS,
    builtin_distortion_prompts,
    d3po_file_prompts,
    d3po_hand_prompts,
)
from benchmarks.registry import PromptItem, register
from harness.errors import HarnessError


@dataclass
class DistortionOptions(FlagRateOptions):
    """``FlagRateOptions`` plus the pluggable classifier: its folder, the class names that mean "distorted" (comma
    separated) and the probability above which an image is flagged."""

    classifier_model: str = ""
    classifier_labels: str = ""
    classifier_threshold: float = 0.5


@register("distortion")
class Distortion(FlagRateBenchmark):
    version = "1.0"
    description = ("Distortion rate (D3PO's deformity experiment): share of images judged distorted, 95 % Wilson "
                   "interval; lower is better")
    worlds = ("builtin", "real")
    flag = "distorted"
    prompt_sets: ClassVar[dict[str, tuple[str, ...]]] = {"builtin": ("builtin",),
                                                          "real": ("d3po-hand", "d3po-anything")}
    set_images: ClassVar[dict[str, int]] = {"builtin": 8, "d3po-hand": 1000, "d3po-anything": 1}
    judges: ClassVar[dict[str, tuple[str, ...]]] = {"builtin": ("oracle", "labels", "classifier"),
                                                     "real": ("labels", "classifier")}

    def __init__(self, options: DistortionOptions | None = None) -> None:
        super().__init__(options or DistortionOptions())

    def load_prompts(self, prompt_set: str) -> list[PromptItem]:
        if prompt_set == "builtin":
            return builtin_distortion_prompts()
        if prompt_set == "d3po-hand":
            return d3po_hand_prompts()
        return d3po_file_prompts(ANYTHING_PROMPTS, "anything", self.data_dir)

    def build_judge(self, name: str, world: str) -> object:
        if name == "oracle":
            if world != "builtin":
                raise HarnessError("judge=oracle reads the builtin shapes world only; for real images use "
                                   "judge=labels or judge=classifier")
            from harness.perception.distortion import OracleDistortionJudge

            return OracleDistortionJudge()
        options: DistortionOptions = self.options  # type: ignore[assignment]
        if not options.classifier_model:
            raise HarnessError("judge=classifier needs --option classifier_model=DIR (a local transformers image "
                               "classifier) and --option classifier_labels=NAME[,NAME] (its distorted classes)")
        from harness.perception.distortion import ImageClassifierJudge

        labels = tuple(label.strip() for label in options.classifier_labels.split(",") if label.strip())
        return ImageClassifierJudge(options.classifier_model, labels, options.classifier_threshold,
                                    device=_device())


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
