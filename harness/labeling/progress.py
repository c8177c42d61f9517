"""What each annotator sees next, and when a round counts as labelled.

Queue of an annotator: every prompt of the round once (showing 0), in round order, then the repeats (showing 1): a
fixed share of the prompts, the same for every annotator (chosen by a hash of the round's fingerprint), shown again at
the end so that the first answer is not fresh in mind; their answers measure self-agreement. Within a prompt the
images are displayed in an order drawn from a hash of (round, annotator, prompt, showing), so a position on the
screen carries no information about the sampling order and each showing of a repeat looks different.

A round is labelled when every prompt has a live first-showing judgment (a skip counts: the person saw it) from at
least ``annotators`` distinct annotators, or when someone closed it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.hashing import stable_hash
from harness.labeling.rounds import LabelRound
from harness.labeling.store import Judgment


def repeated_groups(label_round: LabelRound, repeat: float) -> list[int]:
    """The prompts shown a second time: round(repeat * N) of them, by hash order (the same for every annotator)."""
    if not 0 <= repeat <= 1:
        raise ValueError(f"repeat must be a share in [0, 1], got {repeat}")
    count = round(repeat * len(label_round.groups))
    fingerprint = label_round.fingerprint()
    order = sorted(range(len(label_round.groups)), key=lambda g: stable_hash([fingerprint, "repeat", g]))
    return sorted(order[:count])


def queue(label_round: LabelRound, repeat: float) -> list[tuple[int, int]]:
    """(prompt index, showing) in the order an annotator sees them."""
    return [(g.index, 0) for g in label_round.groups] + [(g, 1) for g in repeated_groups(label_round, repeat)]


def display_order(label_round: LabelRound, annotator: str, group: int, showing: int) -> list[int]:
    """The positions of the prompt's images in the order the page shows them (see the module docstring)."""
    k = len(label_round.groups[group].rows)
    order = list(range(k))
    random.Random(stable_hash([label_round.fingerprint(), annotator, group, showing])).shuffle(order)
    return order


@dataclass(frozen=True)
class RoundStatus:
    prompts: int
    labelled: int  # prompts with enough annotators
    annotators_needed: int
    judgments: int
    closed: bool

    @property
    def complete(self) -> bool:
        return self.closed or self.labelled == self.prompts

    def to_dict(self) -> dict:
        return {"prompts": self.prompts, "labelled": self.labelled, "annotators_needed": self.annotators_needed,
                "judgments": self.judgments, "closed": self.closed, "complete": self.complete}


def round_status(label_round: LabelRound, judgments: list[Judgment], annotators: int = 1,
                 closed: bool = False) -> RoundStatus:
    """How far the round is (see the module docstring)."""
    seen: dict[int, set[str]] = {}
    for j in judgments:
        if j.live and j.showing == 0:
            seen.setdefault(j.group, set()).add(j.annotator)
    labelled = sum(len(seen.get(g.index, ())) >= annotators for g in label_round.groups)
    return RoundStatus(len(label_round.groups), labelled, annotators, sum(j.live for j in judgments), closed)
