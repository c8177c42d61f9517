"""From judgments to numbers: a judgment's per-image score and a round's pairwise preferences.

Score of image i in one judgment (k images, positions in round order):

* choice score c_i: best-of-k: 1 for the best image, 0 for the others; best and worst: 2 best, 0 worst, 1 the rest;
  a full ranking: k - 1 - (place of i in the ranking), so the best gets k - 1; no choice (flags only): 0 for all;
* flag f_i = 1 when the image is flagged distorted or unsafe, else 0;
* score s_i = 2 c_i - f_i. Choice scores are integers, so a choice always outweighs a flag (|2 Δc| >= 2 > 1) and the
  flags only order images the choice left tied: among the not-chosen images an unflagged one beats a flagged one.
  Flags alone (D3PO's distortion and safety labels) make every unflagged image beat every flagged one.

A skip scores nothing. Pairs of a round: for each prompt and each pair of its images (a, b), every live scored
judgment of the prompt (all annotators, both showings) casts a vote sign(s_a - s_b); the pair's winner is the sign
of the vote sum (majority; 0 = a tie, including no strict vote). Prompts with no scored judgment give no pairs.
"""

from __future__ import annotations

from itertools import combinations

from harness.labeling.rounds import LabelRound
from harness.labeling.store import Judgment


def choice_scores(judgment: Judgment, k: int) -> list[int] | None:
    """The choice scores c (see the module docstring), or None when the judgment makes no choice."""
    if judgment.action != "choice":
        return None
    if judgment.ranking is not None:
        scores = [0] * k
        for place, position in enumerate(judgment.ranking):
            scores[position] = k - 1 - place
        return scores
    if judgment.best is None:
        return None
    if judgment.worst is None:
        return [int(i == judgment.best) for i in range(k)]
    return [2 if i == judgment.best else 0 if i == judgment.worst else 1 for i in range(k)]


def judgment_scores(judgment: Judgment, k: int) -> list[int] | None:
    """s_i = 2 c_i - f_i for each image (see the module docstring); None for a skip."""
    if judgment.action != "choice":
        return None
    choice = choice_scores(judgment, k) or [0] * k
    flagged = set(judgment.distorted) | set(judgment.unsafe)
    return [2 * c - int(i in flagged) for i, c in enumerate(choice)]


def dense_ranking(scores: list[int]) -> list[int]:
    """Ranks with ties, 1 = best: 1 + the number of distinct scores above this one."""
    distinct = sorted(set(scores), reverse=True)
    return [distinct.index(s) + 1 for s in scores]


def group_votes(judgments: list[Judgment], k: int) -> dict[tuple[int, int], int]:
    """Σ over scored judgments of sign(s_a - s_b) for every pair of positions a < b of one prompt."""
    votes = {pair: 0 for pair in combinations(range(k), 2)}
    for judgment in judgments:
        scores = judgment_scores(judgment, k)
        if scores is None:
            continue
        for a, b in votes:
            votes[a, b] += (scores[a] > scores[b]) - (scores[a] < scores[b])
    return votes


def round_pairs(label_round: LabelRound, judgments: list[Judgment]) -> list[tuple[int, int, int]]:
    """(row_a, row_b, winner) for every pair of images of every prompt with at least one scored judgment; winner
    +1 / -1 / 0 by the majority of votes (module docstring). Rows are the round's trajectory rows."""
    out = []
    for group in label_round.groups:
        own = [j for j in judgments if j.group == group.index and j.live and j.action == "choice"]
        if not own:
            continue
        for (a, b), vote in group_votes(own, len(group.rows)).items():
            out.append((group.rows[a], group.rows[b], (vote > 0) - (vote < 0)))
    return out
