"""T2I-CompBench's rules against hand-computed cases (each comment gives the arithmetic), with hand-written parses
so no spaCy is needed, and golden per-image verdicts of the benchmark on fake detections and VQA answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.registry import PromptItem
from benchmarks.t2i_compbench import T2ICompBench
from benchmarks.t2i_compbench.export import export_samples, sample_name
from benchmarks.t2i_compbench.parsing import Parsed, Token
from benchmarks.t2i_compbench.rules import (
    Detection,
    attribute_score,
    blip_questions,
    box_iou,
    category_scores,
    clip_text,
    complex_objects,
    complex_score,
    find_relation,
    is_duplicate,
    numeracy_objects,
    numeracy_score,
    position_score,
    pre_question,
    remove_duplicates,
    route_key,
    simple_objects,
    spatial_score,
    unidet_frame,
)
from harness.errors import DataError, HarnessError
from harness.perception.base import Detections
from harness.perception.clip_score import clip_cosine
from harness.perception.vqa import yes_score

SPATIAL = [(r, r) for r in ("on side of", "next to", "near", "on the left of", "on the right of", "on the bottom of",
                            "on the top of", "on top of")]


def parsed(tagged: str, chunks: tuple[str, ...] = ()) -> Parsed:
    """'a/DET girl/NOUN ./PUNCT' -> tokens; a token written 'x/TAG/' has no space after it."""
    tokens = []
    for word in tagged.split():
        text, pos, *glued = word.split("/")
        tokens.append(Token(text, pos, "" if glued else " "))
    return Parsed(tuple(tokens), chunks)


# --- attribute binding ---------------------------------------------------------------------------------------------


def test_pre_question() -> None:
    # lower-cased; . ! " ( ) * # : ; ~ deleted (the "?" stays); trailing spaces stripped; 50 words at most
    assert pre_question('A "Red" (Bench)!?') == "a red bench?"
    assert pre_question("a bench .") == "a bench"
    assert pre_question(" ".join(["w"] * 60)) == " ".join(["w"] * 50)


def test_questions_drop_exact_chunks_and_keep_np_num() -> None:
    chunks = ("A girl", "the top", "top", "the left", "the side", "the right", "a frog")
    # "the top" is not in the drop list; "top", "the left", "the side", "the right" are
    assert blip_questions(parsed("", chunks)) == ["a girl?", "the top?", "a frog?"]
    assert blip_questions(parsed("", chunks), np_num=2) == ["a girl?", "the top?"]


def test_attribute_score_product_and_rounding() -> None:
    # official: 0.91234 -> "0.9123"; float32(0.9123) * 0.5 = 0.45614999... -> "0.4561"
    assert attribute_score([0.91234, 0.5]) == 0.4561
    assert attribute_score([0.91234, 0.5], quirks=False) == pytest.approx(0.45617)
    assert attribute_score([]) == 1.0  # no noun phrase: every pass answers 1
    assert attribute_score([0.99996, 0.99996]) == 1.0  # each rounds to 1.0000


def test_blip_yes_score_is_a_ratio_of_first_token_probabilities() -> None:
    # p = softmax([0, ln 3, 0, 5]): p1 / (p1 + p2) = 3 / (3 + 1), whatever the other logits
    logits = torch.tensor([[0.0, math.log(3), 0.0, 5.0], [9.0, 0.0, 0.0, -3.0]])
    assert yes_score(logits, yes=1, no=2).tolist() == pytest.approx([0.75, 0.5])


# --- 2D spatial ------------------------------------------------------------------------------------------------------


def test_relation_is_the_first_listed_phrase_found() -> None:
    prompt = "a bird on the left of a nearby tree"
    assert find_relation(prompt, SPATIAL) == "near"  # substring: "near" is listed before "on the left of"
    assert find_relation(prompt, SPATIAL, quirks=False) == "on the left of"
    assert find_relation("a cat on top of a dog", SPATIAL) == "on top of"
    assert find_relation("a cat and a dog", SPATIAL) is None


def test_simple_objects_are_first_and_last_nouns_with_person() -> None:
    tokens = parsed("a/DET girl/NOUN on/ADP the/DET top/NOUN of/ADP a/DET frog/NOUN")
    assert simple_objects(tokens) == ("person", "frog")
    assert simple_objects(parsed("hello/INTJ")) == (None, None)


def test_complex_objects_around_prepositions() -> None:
    hat = parsed("The/DET red/ADJ hat/NOUN was/AUX on/ADP top/NOUN of/ADP the/DET brown/ADJ coat/NOUN "
                 "rack/NOUN/ ./PUNCT")
    assert complex_objects(hat) == ("hat", "coat")  # the first noun after "on top of", not "rack"
    paris = parsed("a/DET cat/NOUN near/ADP Paris/PROPN/ ./PUNCT")
    assert complex_objects(paris) == ("cat", "Paris")  # no noun after: a PROPN not followed by a PROPN
    fuji = parsed("a/DET cat/NOUN next/ADV to/ADP Mount/PROPN Fuji/PROPN")
    assert complex_objects(fuji) == (None, None)  # "Mount" is followed by a PROPN, "Fuji" is last: one object
    two = parsed("a/DET man/NOUN near/ADP a/DET cat/NOUN next/ADV to/ADP a/DET dog/NOUN")
    assert complex_objects(two) == (None, None)  # four objects, not two


@pytest.mark.parametrize(
    ("size", "frame"),
    [((512, 512), (479, 479)), ((1024, 1024), (479, 479)), ((48, 48), (479, 479)),
     # short 480 -> 479, long int(479 * 640 / 480) = 638 > 480 -> long 480, short int(480 * 479 / 638) = 360
     ((640, 480), (480, 360)), ((480, 640), (360, 480))],
)
def test_unidet_frame(size: tuple[int, int], frame: tuple[int, int]) -> None:
    assert unidet_frame(*size) == frame


def test_box_iou_has_no_plus_one() -> None:
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


@pytest.mark.parametrize(
    ("relation", "box2", "quirks", "expected"),
    [
        ("on the left of", (100, 0, 110, 10), True, 1.0),  # xd = 100 > 0, |xd| > |yd| = 0, IoU 0
        ("on the left of", (5, 0, 15, 10), True, 0.3),  # xd = 5, IoU 1/3 >= 0.1 -> 0.1 / (1/3)
        ("on the right of", (100, 0, 110, 10), True, 0.0),  # xd > 0
        ("on the right of", (-100, 0, -90, 10), True, 1.0),
        ("on the top of", (0, 100, 10, 110), True, 1.0),  # yd = 100 > 0: object 1 is above
        ("on the bottom of", (0, 100, 10, 110), True, 0.0),
        ("on the left of", (60, 80, 70, 90), True, 0.0),  # xd = 60 < |yd| = 80
        ("next to", (200, 160, 210, 170), True, 0.75),  # |xd| = 200, |yd| = 160 >= 150 -> 150 / 200
        ("near", (200, 100, 210, 110), True, 1.0),  # |yd| = 100 < 150
        ("on top of", (0, 100, 10, 110), True, 0.0),  # no branch handles it
        ("on top of", (0, 100, 10, 110), False, 1.0),  # read as "on the top of"
        (None, (100, 0, 110, 10), True, 0.0),
    ],
)
def test_position_score(relation: str | None, box2: tuple, quirks: bool, expected: float) -> None:
    assert position_score(relation, (0, 0, 10, 10), box2, quirks=quirks) == pytest.approx(expected)


def test_spatial_score_combination_and_floor() -> None:
    dog_left, cat_right = Detection("dog", 0.9, (0, 0, 10, 10)), Detection("cat", 0.8, (100, 0, 110, 10))
    # 0.25 * 0.9 + 0.25 * 0.8 + 1 / 2
    assert spatial_score("dog", "cat", "on the left of", [dog_left, cat_right])[0] == pytest.approx(0.925)
    # wrong side: 0.425 < 0.5 -> 0, unless quirks are off
    assert spatial_score("dog", "cat", "on the right of", [dog_left, cat_right])[0] == 0.0
    unfloored = spatial_score("dog", "cat", "on the right of", [dog_left, cat_right], quirks=False)[0]
    assert unfloored == pytest.approx(0.425)
    # one object: 0.25 * 0.9 = 0.225 -> 0 (0.225 without quirks); none: 0
    assert spatial_score("dog", "horse", "on the left of", [dog_left, cat_right])[0] == 0.0
    assert spatial_score("dog", "horse", "on the left of", [dog_left], quirks=False)[0] == pytest.approx(0.225)
    assert spatial_score("cow", "horse", "on the left of", [dog_left, cat_right])[0] == 0.0
    # the first detection of a name counts: the confident dog on the right, not the weak one on the left
    dogs = [Detection("dog", 0.95, (200, 0, 210, 10)), dog_left, cat_right]
    score, seen = spatial_score("dog", "cat", "on the left of", dogs)
    assert score == 0.0 and seen["position"] == 0.0 and seen["found"] == [True, True]
    # exactly 0.5 stays: both found at 1.0, wrong position
    perfect = [Detection("dog", 1.0, (0, 0, 10, 10)), Detection("cat", 1.0, (100, 0, 110, 10))]
    assert spatial_score("dog", "cat", "on the right of", perfect)[0] == 0.5


# --- numeracy -------------------------------------------------------------------------------------------------------

SINGULAR = ("boy", "girl", "cat", "dog", "teddy bear", "turtle")
PLURAL = ("boys", "girls", "cats", "dogs", "teddy bears", "turtles")


def words(text: str) -> Parsed:
    return parsed(" ".join(f"{w}/X" for w in text.split()))


@pytest.mark.parametrize(
    ("text", "quirks", "objects", "counts"),
    [
        ("two boys and a girl", True, ["boy", "girl"], [2, 1]),
        ("three teddy bears", True, ["teddy bear"], [3]),  # two-word plural after a number
        ("a teddy bear", True, ["teddy bear"], [1]),
        ("a cats and two dogs", True, ["cat", "dog"], [2]),  # word2number fails on "a": counts shift
        ("a cats and two dogs", False, ["cat", "dog"], [1, 2]),
        ("I saw two", True, [], []),  # a number word last is ignored
        ("two turtle", True, ["turtle"], [1]),  # a singular counts once under the published (pre-f49c30e) rule
        ("Two cats", True, [], []),  # number words are matched case-sensitively
    ],
)
def test_numeracy_objects(text: str, quirks: bool, objects: list[str], counts: list[int]) -> None:
    assert numeracy_objects(words(text), SINGULAR, PLURAL, quirks) == (objects, counts)


@pytest.mark.parametrize(
    ("objects", "counts", "detected", "expected"),
    [
        # dog: present (0.25) and 2 == 2 (0.25); cat: present (0.25), 2 != 1
        (["dog", "cat"], [2, 1], ["dog", "dog", "cat", "cat"], 0.75),
        (["boy"], [2], ["person", "person"], 1.0),  # boy -> person
        (["bird"], [1], ["wild bird"], 1.0),  # "wild bird" contains "bird": renamed to it
        (["cat", "dog"], [2], ["cat", "dog", "dog"], 0.5),  # cat present, 1 != 2; dog present, no count left
        (["cat"], [1], ["dog"], 0.0),
        ([], [], ["dog"], 0.0),
    ],
)
def test_numeracy_score(objects: list[str], counts: list[int], detected: list[str], expected: float) -> None:
    assert numeracy_score(objects, counts, detected)[0] == pytest.approx(expected)


def test_duplicates_use_pixel_inclusive_overlap() -> None:
    a = (0, 0, 9, 9)  # area 10 x 10 = 100
    assert is_duplicate(a, (0, 0, 9, 10))  # inter 100, union 110: IoU 0.909 > 0.9
    assert is_duplicate(a, (0, 0, 9, 19))  # IoU 0.5 but a lies inside it: 100 / 100 > 0.9
    assert not is_duplicate(a, (5, 0, 14, 9))  # inter 50: IoU 1/3, 0.5 of each
    kept = remove_duplicates([Detection("dog", 0.9, a), Detection("dog", 0.8, (0, 0, 9, 10)),
                              Detection("cat", 0.7, a)])
    assert [d.name for d in kept] == ["dog", "cat"]


# --- CLIPScore, complex, aggregation --------------------------------------------------------------------------------


def test_clip_cosine_is_unscaled() -> None:
    # (3, 4) . (4, 3) / (5 * 5) = 24 / 25, whatever the norms
    assert clip_cosine(torch.tensor([[3.0, 4.0]]), torch.tensor([[40.0, 30.0]])).tolist() == pytest.approx([0.96])
    assert clip_cosine(torch.tensor([[1.0, 0.0]]), torch.tensor([[-2.0, 0.0]])).tolist() == pytest.approx([-1.0])


def test_complex_text_and_routing() -> None:
    tokens = parsed("The/DET red/ADJ hat/NOUN/ ./PUNCT")
    assert clip_text("The red hat.", tokens, drop_adjectives=True) == "The hat ."
    assert clip_text("The red hat.", tokens, drop_adjectives=False) == "The red hat."
    assert route_key("The red hat was on top of the rack. It fell.") == "the red hat was on top of the rack"
    assert route_key("The red hat.", quirks=False) == "The red hat."


def test_complex_score_by_partition() -> None:
    assert complex_score("spatial", 0.8, spatial=0.6) == pytest.approx(0.7)
    assert complex_score("action", 0.8, action=0.3) == pytest.approx(0.55)
    assert complex_score("spatial_action", 0.8, spatial=0.6, action=0.3) == pytest.approx(1.7 / 3)


def test_category_score_is_the_plain_mean_over_images() -> None:
    scores = category_scores(["color", "color", "color", "spatial"], [1.0, 0.5, 0.0, 0.0])
    assert scores == {"overall": pytest.approx(0.25), "color": pytest.approx(0.5), "spatial": 0.0}


# --- golden per-image verdicts of the benchmark on fake perception --------------------------------------------------


class FakeVQA:
    name, version = "fake-vqa", "1"

    def __init__(self, answers: dict[tuple[str, str], float]) -> None:
        self.answers = answers

    def yes_probability(self, images: list[Image.Image], questions: list[str]) -> list[float]:
        return [self.answers[(img.info["name"], q)] for img, q in zip(images, questions)]


class FakeDetector:
    name, version, classes = "fake-detector", "1", ()

    def __init__(self, found: dict[str, list[tuple[str, float, tuple]]]) -> None:
        self.found = found

    def detect(self, images: list[Image.Image]) -> list[Detections]:
        out = []
        for img in images:
            rows = self.found[img.info["name"]]
            out.append(Detections(np.array([r[2] for r in rows], np.float32).reshape(-1, 4),
                                  np.array([r[1] for r in rows], np.float32), [r[0] for r in rows],
                                  np.zeros((len(rows), 1, 1), bool)))
        return out


class FakeClip:
    name, version = "fake-clip", "1"

    def similarity(self, images: list[Image.Image], texts: list[str]) -> list[float]:
        return [{"a": 0.31, "b": 0.25}[img.info["name"]] for img in images]


def image(name: str, size: int = 479) -> Image.Image:
    """An image whose UniDet frame is itself (479 x 479), so fake boxes are taken as they are."""
    img = Image.new("RGB", (size, size))
    img.info["name"] = name
    return img


def item(index: int, tag: str, **spec: object) -> PromptItem:
    return PromptItem(index, f"prompt {index}", tag, {"category": tag, **spec})


GOLDEN_ITEMS = [
    item(0, "color", questions=["a red circle?", "a blue star?"]),
    item(1, "spatial", objects=["circle", "star"], relation="on the left of"),
    item(2, "numeracy", objects=["circle", "star"], counts=[2, 1]),
    item(3, "non_spatial", clip_text="a person is reading"),
    item(4, "complex", partition="spatial", questions=["a red circle?"], objects=["circle", "star"],
         relation="on the left of", clip_text="x"),
    item(5, "complex", partition="action", questions=["a red circle?"], objects=[None, None], relation=None,
         clip_text="x"),
    item(6, "complex", partition="spatial_action", questions=["a red circle?"], objects=["circle", "star"],
         relation="on top of", clip_text="x"),
]
LEFT, RIGHT = (10, 10, 60, 60), (300, 10, 350, 60)
PERCEPTION = {
    "vqa": FakeVQA({("a", "a red circle?"): 0.9, ("a", "a blue star?"): 0.5, ("b", "a red circle?"): 0.2,
                    ("b", "a blue star?"): 0.99996}),
    "detector": FakeDetector({
        "a": [("circle", 0.9, LEFT), ("star", 0.8, RIGHT), ("circle", 0.6, (100, 100, 150, 150))],
        "b": [("star", 0.95, LEFT), ("circle", 0.4, RIGHT), ("circle", 0.9, RIGHT)],
    }),
    "clip": FakeClip(),
}
# (item, image) -> score, hand-computed
GOLDEN = {
    (0, "a"): 0.45,  # 0.9 * 0.5
    (0, "b"): 0.2,  # 0.2 * round4(0.99996) = 0.2 * 1.0
    (1, "a"): 0.925,  # 0.25 * 0.9 + 0.25 * 0.8 + 1/2 (circle left of star)
    (1, "b"): 0.0,  # the 0.4 circle is under the 0.5 threshold, the kept one is right of the star: 0.4625 -> 0
    (2, "a"): 1.0,  # circle: 2 found = 2 asked -> 1/2; star: 1 = 1 -> 1/2
    (2, "b"): 0.75,  # circle: present (1/4) but 1 != 2; star: 1/2
    (3, "a"): 0.31,
    (3, "b"): 0.25,
    (4, "a"): (0.9 + 0.925) / 2,  # attribute 0.9, spatial as item 1
    (4, "b"): (0.2 + 0.0) / 2,
    (5, "a"): (0.9 + 0.31) / 2,  # attribute + CLIP
    (5, "b"): (0.2 + 0.25) / 2,
    (6, "a"): (0.9 + 0.0 + 0.31) / 3,  # "on top of": position 0 -> 0.425 -> 0
    (6, "b"): (0.2 + 0.0 + 0.25) / 3,
}


def test_golden_verdicts_on_fake_perception() -> None:
    samples = [(it, k, image(name)) for it in GOLDEN_ITEMS for k, name in enumerate("ab")]
    results = T2ICompBench().score(samples, PERCEPTION)
    got = {(r.prompt_index, "ab"[r.image_index]): r.score for r in results}
    assert got == pytest.approx(GOLDEN)
    assert [r.tag for r in results] == [it.tag for it in GOLDEN_ITEMS for _ in "ab"]
    complex_b = next(r for r in results if r.prompt_index == 4 and r.image_index == 1)
    assert complex_b.details["partition"] == "spatial" and complex_b.details["attribute"] == pytest.approx(0.2)


def test_scoring_order_is_kept_across_categories() -> None:
    samples = [(it, 0, image("a")) for it in reversed(GOLDEN_ITEMS)]
    results = T2ICompBench().score(samples, PERCEPTION)
    assert [r.prompt_index for r in results] == [it.index for it in reversed(GOLDEN_ITEMS)]


def test_categories_without_a_backend_say_so() -> None:
    real = {"vqa": PERCEPTION["vqa"], "clip": PERCEPTION["clip"]}  # what the real world has
    with pytest.raises(HarnessError, match="'spatial' needs the UniDet detector"):
        T2ICompBench().score([(GOLDEN_ITEMS[1], 0, image("a"))], real)
    with pytest.raises(HarnessError, match="'complex' needs the UniDet detector"):
        T2ICompBench().score([(GOLDEN_ITEMS[4], 0, image("a"))], real)
    with pytest.raises(HarnessError, match="3d_spatial"):
        T2ICompBench().score([(item(9, "3d_spatial"), 0, image("a"))], real)
    # an action-only complex prompt needs no detector
    assert T2ICompBench().score([(GOLDEN_ITEMS[5], 0, image("a"))], real)[0].score == pytest.approx(0.605)


# --- file naming and official outputs -------------------------------------------------------------------------------


def test_sample_names_and_export(tmp_path: Path) -> None:
    assert sample_name("a red bench and a blue bowl", 12) == "a red bench and a blue bowl_000012.png"
    with pytest.raises(DataError):
        sample_name("a_b", 0)
    sources = []
    for i in range(3):
        path = tmp_path / f"src{i}.png"
        Image.new("RGB", (4, 4), (i, 0, 0)).save(path)
        sources.append(path)
    written = export_samples(tmp_path / "samples", [("one", sources[:2]), ("two.", sources[2:])])
    assert [p.name for p in written] == ["one_000000.png", "one_000001.png", "two._000002.png"]
    assert written[2].read_bytes() == sources[2].read_bytes()
    # what every official evaluator does with the names
    names = sorted((p.name for p in (tmp_path / "samples").iterdir()), key=lambda x: int(x.split("_")[-1][:-4]))
    assert [n.split("_")[0] for n in names] == ["one", "one", "two."]


def test_write_outputs_official_layout(tmp_path: Path) -> None:
    samples = [(it, k, image(name)) for it in GOLDEN_ITEMS for k, name in enumerate("ab")]
    results = T2ICompBench().score(samples, PERCEPTION)
    source = tmp_path / "img.png"
    Image.new("RGB", (4, 4)).save(source)
    T2ICompBench().write_outputs(tmp_path / "run", GOLDEN_ITEMS, results, [[source, source]] * len(GOLDEN_ITEMS))
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "color" / "samples").iterdir()) == ["prompt 0_000000.png",
                                                                              "prompt 0_000001.png"]
    blip = json.loads((run / "color" / "annotation_blip" / "vqa_result.json").read_text())
    assert blip == [{"question_id": 0, "answer": "0.4500"}, {"question_id": 1, "answer": "0.2000"}]
    spatial = json.loads((run / "spatial" / "labels" / "annotation_obj_detection_2d" / "vqa_result.json").read_text())
    assert [r["answer"] for r in spatial] == pytest.approx([0.925, 0.0])
    assert (run / "numeracy" / "annotation_num" / "vqa_result.json").is_file()
    assert (run / "non_spatial" / "annotation_clip" / "vqa_result.json").is_file()
    complex_dir = run / "complex"
    three = json.loads((complex_dir / "annotation_3_in_1" / "vqa_result.json").read_text())
    assert [r["question_id"] for r in three] == list(range(6))  # 3 prompts x 2 images, one running index
    assert (complex_dir / "annotation_blip" / "vqa_result.json").is_file()
    # not every complex image has a spatial or CLIP component here, so those files are not written
    assert not (complex_dir / "annotation_clip").exists() and not (complex_dir / "labels").exists()
