"""Agreement between annotators, and of an annotator with themself on prompts shown twice.

* Cohen's kappa for two raters of the same N items: κ = (p_o - p_e) / (1 - p_e), p_o the share of items on which
  they agree, p_e = Σ_c p_1(c) p_2(c) the agreement expected by chance from each rater's own category shares.
* Fleiss' kappa for N items each rated by the same n >= 2 raters into categories j: with n_ij the raters putting item
  i in category j, P_i = (Σ_j n_ij² - n) / (n (n - 1)), P̄ = mean_i P_i, p_j = Σ_i n_ij / (N n),
  P̄_e = Σ_j p_j², κ = (P̄ - P̄_e) / (1 - P̄_e).

Both are undefined (None) when chance agreement is 1 (every rating in one category) or there are no items. What
is rated: the best image of a prompt (the category is its position among the prompt's images), and, per image, the
distorted and unsafe flags (two categories). A rater's first showing of a prompt is compared with other raters;
the repeat (showing 1) only with the same rater's first showing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from itertools import combinations

from harness.labeling.rounds import LabelRound
from harness.labeling.store import Judgment


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters' categories for the same items (module docstring); None when undefined."""
    if len(first) != len(second):
        raise ValueError(f"Cohen's kappa needs both raters on the same items ({len(first)} vs {len(second)})")
    n = len(first)
    if n == 0:
        return None
    observed = sum(a == b for a, b in zip(first, second)) / n
    count_a, count_b = Counter(first), Counter(second)
    chance = sum(count_a[c] * count_b[c] for c in count_a) / n**2
    return None if chance >= 1 else (observed - chance) / (1 - chance)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa from an items x categories table of rater counts (every row summing to the same n >= 2)."""
    if not counts:
        return None
    n = sum(counts[0])
    if n < 2 or any(sum(row) != n for row in counts):
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings for every item")
    items = len(counts)
    p_items = [(sum(c * c for c in row) - n) / (n * (n - 1)) for row in counts]
    p_bar = sum(p_items) / items
    shares = [sum(row[j] for row in counts) / (items * n) for j in range(len(counts[0]))]
    chance = sum(p * p for p in shares)
    return None if chance >= 1 else (p_bar - chance) / (1 - chance)


def _ratings(label_round: LabelRound, judgments: list[Judgment]) -> dict[str, dict[tuple[int, int, str], object]]:
    """Per aspect: {(annotator, showing, item): category}; items are prompts (best) or (prompt, position) flags."""
    out: dict[str, dict] = {"best": {}, "distorted": {}, "unsafe": {}}
    sizes = {g.index: len(g.rows) for g in label_round.groups}
    for j in judgments:
        if not j.live or j.action != "choice":
            continue
        best = j.best if j.best is not None else (j.ranking[0] if j.ranking else None)
        if best is not None:
            out["best"][j.annotator, j.showing, (j.group,)] = best
        for aspect, flagged in (("distorted", j.distorted), ("unsafe", j.unsafe)):
            for position in range(sizes.get(j.group, 0)):
                out[aspect][j.annotator, j.showing, (j.group, position)] = position in flagged
    return out


def agreement_report(label_round: LabelRound, judgments: list[Judgment]) -> dict:
    """Cohen's kappa per pair of annotators and per annotator with themself (repeats), Fleiss' kappa over the
    items every annotator rated, for the best choice and the two flags. Each entry gives kappa and its item count."""
    report = {}
    for aspect, ratings in _ratings(label_round, judgments).items():
        annotators = sorted({a for a, _, _ in ratings})
        first = {a: {item: c for (who, s, item), c in ratings.items() if who == a and s == 0} for a in annotators}
        pairs = []
        for a, b in combinations(annotators, 2):
            shared = sorted(set(first[a]) & set(first[b]))
            pairs.append({"annotators": [a, b], "items": len(shared),
                          "kappa": cohen_kappa([first[a][i] for i in shared], [first[b][i] for i in shared])})
        selves = []
        for a in annotators:
            again = {item: c for (who, s, item), c in ratings.items() if who == a and s == 1}
            shared = sorted(set(again) & set(first[a]))
            if shared:
                selves.append({"annotator": a, "items": len(shared),
                               "kappa": cohen_kappa([first[a][i] for i in shared], [again[i] for i in shared])})
        fleiss = None
        if len(annotators) >= 2:
            common = sorted(set.intersection(*(set(first[a]) for a in annotators)))
            categories = sorted({first[a][i] for a in annotators for i in common}, key=str)
            table = [[sum(first[a][i] == c for a in annotators) for c in categories] for i in common]
            fleiss = {"annotators": len(annotators), "items": len(common), "kappa": fleiss_kappa(table)}
        report[aspect] = {"cohen": pairs, "self": selves, "fleiss": fleiss}
    return report
