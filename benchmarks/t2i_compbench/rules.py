"""T2I-CompBench(++) scoring rules as pure functions (``Karine-Huang/T2I-CompBench@1b70949``).

Sources: ``BLIPvqa_eval/BLIP_vqa.py`` (+ ``data/utils.py:pre_question``) for attribute binding,
``UniDet_eval/2D_spatial_eval.py`` for 2D spatial, ``UniDet_eval/numeracy_eval.py`` for numeracy,
``UniDet_eval/3D_spatial_eval.py`` for 3D spatial, ``CLIPScore_eval/CLIP_similarity.py`` for non-spatial and
``3_in_1_eval/3_in_1.py`` for complex. Each rule has its
formula in the docstring and hand-computed cases in ``tests/test_t2i_compbench_rules.py`` (3D spatial:
``tests/test_t2i_compbench_real.py``).

Rules that the official scripts get subtly wrong are reproduced by default, because published numbers carry them;
``quirks=False`` (``CompBenchOptions.official_quirks``) switches each one off, and the result record says which.
Boxes are (x1, y1, x2, y2) in pixels of the detector's frame, y growing downward.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from benchmarks.t2i_compbench.parsing import Parsed

# BLIP-VQA (BLIP_vqa.py): noun chunks that are never asked about; at most NP_NUM are asked (``--np_num``).
DROPPED_CHUNKS = ("top", "the side", "the left", "the right")
NP_NUM = 8
# 2D spatial (2D_spatial_eval.py): the relation is the first of these that occurs in the prompt, in this order.
SPATIAL_RELATIONS = ("on side of", "next to", "near", "on the left of", "on the right of", "on the bottom of",
                     "on the top of", "on top of")
# ... and, with ``--complex``, objects are the nouns around the first of these prepositions.
COMPLEX_PREPOSITIONS = ("on top of", "on bottom of", "on the left", "on the right", "next to", "on side of", "near")
PERSON_WORDS = ("girl", "boy", "man", "woman")
IOU_THRESHOLD = 0.1
DISTANCE_THRESHOLD = 150.0  # pixels of the UniDet frame (see unidet_frame)
DETECTION_THRESHOLD = 0.5  # UniDet's ROI_HEADS.SCORE_THRESH_TEST: detectron2 keeps scores > it
SPATIAL_FLOOR = 0.5  # 2D spatial scores below it become 0
UNIDET_SIZE, UNIDET_MAX_SIZE = 479, 480  # the UniDet transform: Resize(479, max_size=480)
# Numeracy (numeracy_eval.py): number words it looks for, word2number's values for them, renames to UniDet names.
NUMBER_WORDS = ("a", "an", "one", "two", "three", "four", "five", "six", "seven", "eight")
WORD_VALUES = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}
NUMERACY_RENAMES = {**{w: "person" for w in PERSON_WORDS}, "ship": "boat", "telivision": "tv", "goldfish": "fish",
                    "painting": "picture"}
DUPLICATE_OVERLAP = 0.9
# How numeracy reads counts: before commit f49c30e (2025-01-04; the published numbers) or the current script.
NUMERACY_RULES = ("before_f49c30e", "current")
NUMERACY_RULE_PUBLISHED = "before_f49c30e"
# 3D spatial (3D_spatial_eval.py): the relation is the first of these in the prompt; boxes must overlap this much.
DEPTH_RELATIONS = ("in front of", "behind", "hidden")
DEPTH_IOU = 0.5
# Complex (3_in_1.py): how each partition of complex_val combines its component scores.
PARTITIONS = ("spatial", "action", "spatial_action")


@dataclass(frozen=True)
class CompBenchOptions:
    """The evaluators' settings; defaults are the official ones.

    ``official_quirks`` reproduces: BLIP answers and products rounded to 4 decimals (the scripts pass them through
    ``'{:.4f}'`` strings), relation phrases found as substrings ("near" in "nearby"), ``on top of`` scoring 0 (no
    branch of ``determine_position`` handles it), 2D-spatial scores below 0.5 set to 0, numeracy's count list
    skipping "a"/"an" before a plural (word2number fails and the counts shift against the objects), complex
    prompts routed by their text up to the first "." in lower case, and in 3D spatial the depth map indexed
    ``depth[x1:x2, y1:y2]`` (rows by x), objects matched as substrings and a box IoU of exactly 0.5 scoring 0.
    ``detection_threshold`` applies to whatever detector is used (UniDet's ``SCORE_THRESH_TEST`` officially, OWLv2
    in the harness's real world). ``color_prompts`` picks ``color_val.txt``:
    "before_3310c2f" (the file every published colour number used) or "current" (deduplicated in Sept 2025).
    ``numeracy_rule`` picks how counts are parsed (:func:`numeracy_objects`): "before_f49c30e" (the published
    numbers) or "current" (2025-01-04 on); 36 of the 300 numeracy_val prompts parse differently.
    """

    official_quirks: bool = True
    color_prompts: str = "before_3310c2f"
    numeracy_rule: str = NUMERACY_RULE_PUBLISHED
    np_num: int = NP_NUM
    detection_threshold: float = DETECTION_THRESHOLD
    iou_threshold: float = IOU_THRESHOLD
    distance_threshold: float = DISTANCE_THRESHOLD

    def __post_init__(self) -> None:
        if self.color_prompts not in ("before_3310c2f", "current"):
            raise ValueError(f"color_prompts must be 'before_3310c2f' or 'current', not {self.color_prompts!r}")
        if self.numeracy_rule not in NUMERACY_RULES:
            raise ValueError(f"numeracy_rule must be one of {', '.join(NUMERACY_RULES)}, not {self.numeracy_rule!r}")


# --- attribute binding (color, shape, texture): BLIP-VQA ---------------------------------------------------------


def pre_question(question: str, max_words: int = 50) -> str:
    """BLIP's question normalisation: lower-case, delete each of ``.!"()*#:;~``, strip trailing spaces, keep the
    first ``max_words`` words."""
    question = re.sub(r"[.!\"()*#:;~]", "", question.lower()).rstrip(" ")
    return " ".join(question.split(" ")[:max_words])


def blip_questions(parsed: Parsed, np_num: int = NP_NUM) -> list[str]:
    """Question i = ``pre_question(f"{chunk_i}?")`` over the prompt's noun chunks, minus :data:`DROPPED_CHUNKS`
    (exact text match, so "the top" stays), at most ``np_num`` of them."""
    phrases = [chunk for chunk in parsed.noun_chunks if chunk not in DROPPED_CHUNKS]
    return [pre_question(f"{phrase}?") for phrase in phrases[:np_num]]


def attribute_score(yes_scores: Sequence[float], quirks: bool = True) -> float:
    """BLIP-VQA image score = prod_i s_i over the questions, s_i = P(yes) / (P(yes) + P(no)); no question -> 1.

    With quirks each s_i and the product are rounded to 4 decimals and the product is taken in float32, as the
    script reads its own '{:.4f}' answer strings back into a float32 tensor.
    """
    if not quirks:
        return float(np.prod(np.asarray(yes_scores, dtype=np.float64)))
    product = np.float32(1.0)
    for score in yes_scores:
        product = np.float32(product * np.float32(round4(score)))
    return round4(float(product))


def round4(value: float) -> float:
    """``float('{:.4f}'.format(value))``: how the official scripts round scores they write as strings."""
    return float(f"{value:.4f}")


# --- 2D spatial: UniDet -------------------------------------------------------------------------------------------


def find_relation(prompt: str, phrases: Sequence[tuple[str, str]], quirks: bool = True) -> str | None:
    """The official relation named by the first ``(phrase, relation)`` pair whose phrase occurs in ``prompt``.

    With quirks a phrase occurs when it is a substring (so "near" matches "nearby"); without, only as whole words.
    The real world's pairs are :data:`SPATIAL_RELATIONS` mapped to themselves.
    """
    for phrase, relation in phrases:
        if phrase in prompt if quirks else re.search(rf"\b{re.escape(phrase)}\b", prompt):
            return relation
    return None


def person(word: str | None) -> str | None:
    """UniDet has no girl/boy/man/woman, so the evaluators look for "person" instead."""
    return "person" if word in PERSON_WORDS else word


def simple_objects(parsed: Parsed) -> tuple[str | None, str | None]:
    """Objects of a simple spatial prompt: the first and the last token tagged NOUN (then :func:`person`).

    The official script fails on a prompt without a noun; here both objects are then None (score 0).
    """
    nouns = [t.text for t in parsed.tokens if t.pos == "NOUN"]
    return (person(nouns[0]), person(nouns[-1])) if nouns else (None, None)


def complex_objects(parsed: Parsed, prepositions: Sequence[str] = COMPLEX_PREPOSITIONS
                    ) -> tuple[str | None, str | None]:
    """Objects of a complex prompt (``--complex``): the nouns around each preposition phrase, if exactly two.

    For every token i where a phrase of 3, 2 or 1 tokens (longest first) is in ``prepositions``: the nearest NOUN or
    PROPN before i; and the first NOUN after the phrase, or, if none follows, the first PROPN after it that is not
    followed by another PROPN. Two objects in all -> (first, second) through :func:`person`; otherwise (None, None).
    """
    tokens = parsed.tokens
    objects: list[str] = []
    for i in range(len(tokens)):
        k = next((n for n in (3, 2, 1) if parsed.span(i, i + n) in prepositions), 0)
        if not k:
            continue
        before = next((tokens[j].text for j in range(i - 1, -1, -1) if tokens[j].pos in ("NOUN", "PROPN")), None)
        if before is not None:
            objects.append(before)
        after = next((tokens[j].text for j in range(i + k, len(tokens)) if tokens[j].pos == "NOUN"), None)
        if after is None:
            after = next((tokens[j].text for j in range(i + k, len(tokens) - 1)
                          if tokens[j].pos == "PROPN" and tokens[j + 1].pos != "PROPN"), None)
        if after is not None:
            objects.append(after)
    return (person(objects[0]), person(objects[1])) if len(objects) == 2 else (None, None)


def unidet_frame(width: int, height: int) -> tuple[int, int]:
    """(width, height) of an image after UniDet's ``Resize(479, max_size=480)``, where its boxes live.

    torchvision's rule: the short side becomes 479 and the long one int(479 long / short), unless that exceeds 480,
    then the long side becomes 480 and the short one int(480 * 479 / long'). A 512^2 or 1024^2 image -> 479^2.
    """
    short, long = sorted((width, height))
    new_short, new_long = UNIDET_SIZE, int(UNIDET_SIZE * long / short)
    if new_long > UNIDET_MAX_SIZE:
        new_short, new_long = int(UNIDET_MAX_SIZE * new_short / new_long), UNIDET_MAX_SIZE
    return (new_short, new_long) if width <= height else (new_long, new_short)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Plain IoU, areas (x2 - x1)(y2 - y1) with no +1; 0 when the union is empty (the script divides by 0)."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def position_score(relation: str | None, box1: Sequence[float], box2: Sequence[float],
                   iou_threshold: float = IOU_THRESHOLD, distance_threshold: float = DISTANCE_THRESHOLD,
                   quirks: bool = True) -> float:
    """``determine_position``: how well object 1 (box1) stands in ``relation`` to object 2 (box2), in [0, 1].

    xd = cx2 - cx1, yd = cy2 - cy1 (box centres), IoU plain:
    * next to / on side of / near: 1 if |xd| < 150 or |yd| < 150, else 150 / max(|xd|, |yd|);
    * on the left of: xd > 0 and |xd| > |yd|; on the right of: xd < 0 and |xd| > |yd|;
      on the bottom of: yd < 0 and |yd| > |xd|; on the top of: yd > 0 and |yd| > |xd|;
      when the direction holds: 1 if IoU < 0.1 else 0.1 / IoU, otherwise 0;
    * anything else is 0, including "on top of" (without quirks it is read as "on the top of").
    """
    if relation == "on top of" and not quirks:
        relation = "on the top of"
    xd = (box2[0] + box2[2]) / 2 - (box1[0] + box1[2]) / 2
    yd = (box2[1] + box2[3]) / 2 - (box1[1] + box1[3]) / 2
    if relation in ("next to", "on side of", "near"):
        if abs(xd) < distance_threshold or abs(yd) < distance_threshold:
            return 1.0
        return distance_threshold / max(abs(xd), abs(yd))
    direction = {
        "on the left of": xd > 0 and abs(xd) > abs(yd),
        "on the right of": xd < 0 and abs(xd) > abs(yd),
        "on the bottom of": yd < 0 and abs(yd) > abs(xd),
        "on the top of": yd > 0 and abs(yd) > abs(xd),
    }.get(relation or "", False)
    if not direction:
        return 0.0
    iou = box_iou(box1, box2)
    return 1.0 if iou < iou_threshold else iou_threshold / iou


@dataclass(frozen=True)
class Detection:
    """One detection as the UniDet evaluators see it: class name, confidence, box in the UniDet frame."""

    name: str
    score: float
    box: tuple[float, float, float, float]


def spatial_score(obj1: str | None, obj2: str | None, relation: str | None, detections: Sequence[Detection],
                  iou_threshold: float = IOU_THRESHOLD, distance_threshold: float = DISTANCE_THRESHOLD,
                  quirks: bool = True) -> tuple[float, dict]:
    """2D spatial image score and what it saw.

    Each object is matched to the first detection with exactly its name (detections in the detector's output
    order, i.e. most confident first). Both found: 0.25 s1 + 0.25 s2 + position / 2 (:func:`position_score`); one
    found: 0.25 s; none: 0. With quirks, a score below 0.5 then becomes 0.
    """
    names = [d.name for d in detections]
    found1 = detections[names.index(obj1)] if obj1 in names else None
    found2 = detections[names.index(obj2)] if obj2 in names else None
    position = None
    if found1 and found2:
        position = position_score(relation, found1.box, found2.box, iou_threshold, distance_threshold, quirks)
        score = 0.25 * found1.score + 0.25 * found2.score + position / 2
    elif found1 or found2:
        score = 0.25 * (found1 or found2).score  # type: ignore[union-attr]
    else:
        score = 0.0
    if quirks and score < SPATIAL_FLOOR:
        score = 0.0
    seen = {"objects": [obj1, obj2], "relation": relation, "found": [found1 is not None, found2 is not None],
            "position": position}
    return score, seen


# --- 3D spatial: UniDet + DPT depth ---------------------------------------------------------------------------------


def depth_in_unidet_frame(levels: np.ndarray) -> np.ndarray:
    """The depth map as ``3D_spatial_eval.py`` re-reads its 8-bit PNG: ``Resize(479, max_size=480)`` (PIL
    bilinear on the grey image, so depth and boxes share UniDet's frame), then / 255. float32 [H', W']."""
    height, width = levels.shape
    image = Image.fromarray(np.asarray(levels, dtype=np.uint8)).resize(unidet_frame(width, height),
                                                                                  Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255.0


def region_depth(depth: np.ndarray, box: Sequence[float], quirks: bool = True) -> float:
    """Mean depth inside a box, its corners truncated to ints (negative ones to 0); NaN for an empty region (the
    script's empty mean).

    With quirks the map is indexed ``depth[x1:x2, y1:y2]``, rows by x, as the official code does (it swaps the
    axes); the slice is clipped to the map like any numpy slice. Without, ``depth[y1:y2, x1:x2]``.
    """
    x1, y1, x2, y2 = (max(int(v), 0) for v in box)
    region = depth[x1:x2, y1:y2] if quirks else depth[y1:y2, x1:x2]
    return float(region.mean()) if region.size else float("nan")


def depth_position_score(relation: str | None, box1: Sequence[float], box2: Sequence[float], depth: np.ndarray,
                         quirks: bool = True) -> float:
    """How well object 1 stands ``relation`` object 2 in depth, in [0, 1].

    d = mean depth of box1 - mean depth of box2 (:func:`region_depth`; MiDaS depth is inverse, larger = nearer);
    the direction holds when d > 0 for "in front of" and d < 0 for "behind" / "hidden". Then with IoU = plain box
    IoU: IoU > 0.5 -> 1; 0 < IoU < 0.5 -> IoU / 0.5; IoU = 0 (no overlap) -> 0. With quirks an IoU of exactly 0.5
    falls between the script's two branches and scores 0; without it scores 1. Anything else (no relation, NaN
    depth, wrong direction) is 0.
    """
    d = region_depth(depth, box1, quirks) - region_depth(depth, box2, quirks)
    direction = {"in front of": d > 0, "behind": d < 0, "hidden": d < 0}.get(relation or "", False)
    if not direction:
        return 0.0
    iou = box_iou(box1, box2)
    if iou > DEPTH_IOU or (iou == DEPTH_IOU and not quirks):
        return 1.0
    return iou / DEPTH_IOU if 0 < iou < DEPTH_IOU else 0.0


def find_by_substring(obj: str | None, detections: Sequence[Detection], quirks: bool = True) -> Detection | None:
    """3D spatial's matching: with quirks, if ``obj`` occurs in the detected names joined by spaces, the first
    detection whose name contains it (None when it only spans two names); without, the first with exactly its
    name."""
    if obj is None:
        return None
    names = [d.name for d in detections]
    if not quirks:
        return detections[names.index(obj)] if obj in names else None
    if obj not in " ".join(names):
        return None
    return next((d for d in detections if obj in d.name), None)


def match_3d_objects(obj1: str | None, obj2: str | None, detections: Sequence[Detection], quirks: bool = True
                     ) -> tuple[Detection | None, Detection | None]:
    """The detections 3D spatial scores the two objects with (``3D_spatial_eval.py`` lines 298-309 at ``1b70949``).

    With quirks, when both names occur in the detected names joined by spaces, the script walks the detections in
    order and, at each one whose name contains obj1 (obj2), *overwrites* obj1's (obj2's) index; it stops as soon as
    both are set. So obj1 is the last detection containing it up to the first one containing obj2 (or vice versa),
    not the first. With only one name occurring, that object is the first detection containing it. Where the script
    fails (a name occurs only across two joined names, so an index stays unset) the object counts as not found.
    Without quirks: the first detection with exactly each name (:func:`find_by_substring`).
    """
    if not quirks:
        return find_by_substring(obj1, detections, False), find_by_substring(obj2, detections, False)
    joined = " ".join(d.name for d in detections)
    if obj1 is None or obj2 is None or obj1 not in joined or obj2 not in joined:
        return find_by_substring(obj1, detections), find_by_substring(obj2, detections)
    pos1 = pos2 = None
    for i, detection in enumerate(detections):
        if obj1 in detection.name:
            pos1 = i
        if obj2 in detection.name:
            pos2 = i
        if pos1 is not None and pos2 is not None:
            break
    return (None if pos1 is None else detections[pos1]), (None if pos2 is None else detections[pos2])


def spatial_3d_score(obj1: str | None, obj2: str | None, relation: str | None, detections: Sequence[Detection],
                     depth: np.ndarray, quirks: bool = True) -> tuple[float, dict]:
    """3D spatial image score and what it saw: as :func:`spatial_score` (0.25 s1 + 0.25 s2 + position / 2 with
    both objects found, 0.25 s with one, else 0) with :func:`depth_position_score` as the position, objects matched
    by :func:`match_3d_objects`, and no 0.5 floor (the 3D script has none)."""
    found1, found2 = match_3d_objects(obj1, obj2, detections, quirks)
    position = None
    if found1 and found2:
        position = depth_position_score(relation, found1.box, found2.box, depth, quirks)
        score = 0.25 * found1.score + 0.25 * found2.score + position / 2
    elif found1 or found2:
        score = 0.25 * (found1 or found2).score  # type: ignore[union-attr]
    else:
        score = 0.0
    seen = {"objects": [obj1, obj2], "relation": relation, "found": [found1 is not None, found2 is not None],
            "position": position}
    return score, seen


# --- numeracy: UniDet ----------------------------------------------------------------------------------------------


def numeracy_objects(parsed: Parsed, singular: Sequence[str], plural: Sequence[str], quirks: bool = True,
                     rule: str = NUMERACY_RULE_PUBLISHED) -> tuple[list[str], list[int]]:
    """(objects, counts) a numeracy prompt asks for, as ``numeracy_eval.py`` reads them.

    ``rule="current"`` (since commit ``f49c30e``, 2025-01-04): at each token w_i in :data:`NUMBER_WORDS`: if
    "w_i+1 w_i+2" is a known object (two words, checked only when i < n - 2): a plural after a number other than
    a/an/one counts word2number(w_i) of its singular, anything else counts 1. Else if w_i+1 is a known singular after
    a/an/one: 1 of it. Else if w_i+1 is a known plural or singular: word2number(w_i) of the singular.

    ``rule="before_f49c30e"`` (what every published numeracy number used): the same without the two a/an/one
    conditions, i.e. any known plural pair counts word2number(w_i), and any known singular word counts 1, so a noun
    whose plural equals its singular ("three fish", "six sheep") is asked for once.

    word2number knows no "a"/"an", so with quirks such a count is skipped and later counts pair with the wrong
    objects (without quirks it counts 1; the older script stopped in the debugger there). Where the script fails
    (a number word last; a singular-only noun after "two") the word is ignored or taken as its own singular.
    """
    if rule not in NUMERACY_RULES:
        raise ValueError(f"numeracy rule must be one of {', '.join(NUMERACY_RULES)}, not {rule!r}")
    older = rule == "before_f49c30e"
    words = [t.text for t in parsed.tokens]
    objects: list[str] = []
    counts: list[int] = []

    def count_of(word: str) -> None:
        if word in WORD_VALUES:
            counts.append(WORD_VALUES[word])
        elif not quirks:
            counts.append(1)

    for i, word in enumerate(words[:-1]):
        if word not in NUMBER_WORDS:
            continue
        pair = f"{words[i + 1]} {words[i + 2]}" if i < len(words) - 2 else None
        if pair is not None and (pair in singular or pair in plural):
            if pair in plural and (older or word not in ("a", "an", "one")):
                objects.append(singular[plural.index(pair)])
                count_of(word)
            else:
                counts.append(1)
                objects.append(pair)
        elif words[i + 1] in singular or words[i + 1] in plural:
            if words[i + 1] in singular and (older or word in ("a", "an", "one")):
                counts.append(1)
                objects.append(words[i + 1])
            else:
                noun = words[i + 1]
                objects.append(singular[plural.index(noun)] if noun in plural else noun)
                count_of(word)
    return objects, counts


def is_duplicate(a: Sequence[float], b: Sequence[float], overlap: float = DUPLICATE_OVERLAP) -> bool:
    """Numeracy's duplicate test with pixel-inclusive areas (w = x2 - x1 + 1): IoU > 0.9, or the intersection
    covers more than 0.9 of either box."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    iou = inter / (area_a + area_b - inter)
    return iou > overlap or inter / area_a > overlap or inter / area_b > overlap


def remove_duplicates(detections: Sequence[Detection]) -> list[Detection]:
    """Drop a detection when an earlier kept one has the same name and :func:`is_duplicate` box."""
    kept: list[Detection] = []
    for det in detections:
        if not any(k.name == det.name and is_duplicate(det.box, k.box) for k in kept):
            kept.append(det)
    return kept


def numeracy_score(objects: Sequence[str], counts: Sequence[int], detected: Sequence[str]) -> tuple[float, dict]:
    """Numeracy image score = sum over asked objects of (0.5 [present] + 0.5 [present and count == asked]) / n.

    An object goes through :data:`NUMERACY_RENAMES`; if no detected name equals it, every detected name containing
    it as a substring is renamed to it (and stays renamed for later objects). count = how many detections have
    that name. Counts pair with objects by position; a missing count never matches. No object -> 0 (the script
    divides by zero).
    """
    names = list(detected)
    if not objects:
        return 0.0, {"objects": [], "counts": list(counts), "detected": []}
    score, seen = 0.0, []
    for i, obj in enumerate(objects):
        obj = NUMERACY_RENAMES.get(obj, obj)
        if obj not in names:
            names = [obj if obj in name else name for name in names]
        n = names.count(obj)
        seen.append(n)
        if n:
            score += 0.5 / len(objects)
            if i < len(counts) and n == counts[i]:
                score += 0.5 / len(objects)
    return score, {"objects": list(objects), "counts": list(counts), "detected": seen}


# --- non-spatial (CLIPScore) and complex (3-in-1) ------------------------------------------------------------------


def clip_text(prompt: str, parsed: Parsed, drop_adjectives: bool) -> str:
    """The text CLIPScore embeds: the prompt, or for complex prompts its tokens tagged other than ADJ joined by
    single spaces (``--complex``)."""
    return " ".join(t.text for t in parsed.tokens if t.pos != "ADJ") if drop_adjectives else prompt


def route_key(prompt: str, quirks: bool = True) -> str:
    """How 3-in-1 matches a complex prompt with its partition lists: with quirks the text before the first "."
    in lower case (on complex_val this agrees with exact matching), else the prompt itself."""
    return prompt.split(".")[0].lower() if quirks else prompt


def complex_score(partition: str, attribute: float, spatial: float | None = None, action: float | None = None
                  ) -> float:
    """3-in-1: spatial prompts (attribute + spatial) / 2; action prompts (attribute + CLIP) / 2; spatial-action
    prompts (attribute + spatial + CLIP) / 3."""
    if partition == "spatial":
        return (spatial + attribute) * 0.5  # type: ignore[operator]
    if partition == "action":
        return (action + attribute) * 0.5  # type: ignore[operator]
    return (attribute + spatial + action) / 3  # type: ignore[operator]


def category_scores(categories: Sequence[str], scores: Sequence[float]) -> dict[str, float]:
    """Each category's score = the plain mean over its images (the official one); ``overall`` = the unweighted
    mean of the categories present (a summary the official code does not define)."""
    per: dict[str, list[float]] = {}
    for category, score in zip(categories, scores):
        per.setdefault(category, []).append(float(score))
    means = {c: float(np.mean(v)) for c, v in per.items()}
    return {"overall": float(np.mean(list(means.values()))) if means else float("nan"), **means}
