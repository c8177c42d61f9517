"""Feedback sources: objectives on rendered scenes, the simulated annotator's noise, spec parsing and its errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from benchmarks.geneval.benchmark import GenEval
from benchmarks.geneval.prompts import builtin_metadata, scene_request
from benchmarks.registry import PromptItem, get_benchmark
from harness.builtin.render import render
from harness.builtin.world import SHAPES, ObjectRequest, Scene, SceneObject, SceneRequest, sample_scene
from harness.errors import HarnessError
from harness.perception.base import Detections
from trainers.base import Preference
from trainers.feedback import (
    OBJECTIVES,
    SimulatedFeedback,
    get_objective,
    group_preferences,
    parse_feedback,
)
from trainers.monitor import in_reward

METADATA = builtin_metadata()


def item_of(index: int) -> PromptItem:
    m = METADATA[index]
    return PromptItem(index, m["prompt"], m["tag"], m)


def first_of(tag: str) -> PromptItem:
    return item_of(next(i for i, m in enumerate(METADATA) if m["tag"] == tag))


def correct_render(item: PromptItem, seed: int = 0) -> Image.Image:
    return render(sample_scene(scene_request(item.metadata), random.Random(seed)))


def wrong_shape_render(item: PromptItem, seed: int = 0) -> Image.Image:
    """The requested scene with every class swapped for one the prompt does not name."""
    named = {c["class"] for c in item.metadata["include"]}
    other = next(s for s in SHAPES if s not in named)
    request = scene_request(item.metadata)
    groups = tuple(ObjectRequest(other if k == 0 else s, g.count, g.color)
                   for k, (g, s) in enumerate(zip(request.groups, [g.shape for g in request.groups])))
    return render(sample_scene(SceneRequest(groups=groups, relation=request.relation), random.Random(seed)))


BLANK = Image.new("RGB", (48, 48), (150, 150, 150))


def test_geneval_objective_is_one_on_correct_renders_and_zero_on_wrong_ones() -> None:
    objective = get_objective("geneval", "builtin")
    items = [first_of(tag) for tag in ("single_object", "two_object", "counting", "colors", "position", "color_attr")]
    assert objective.values([correct_render(it) for it in items], items).tolist() == [1.0] * 6
    assert objective.values([wrong_shape_render(it) for it in items], items).tolist() == [0.0] * 6


def test_geneval_objective_matches_the_benchmark_score() -> None:
    bench = GenEval()
    items = [item_of(i) for i in range(0, 553, 23)]
    images = [correct_render(it, 1) if k % 2 else wrong_shape_render(it, 1) for k, it in enumerate(items)]
    images[3] = BLANK
    expected = [r.score for r in bench.score([(it, 0, im) for it, im in zip(items, images)],
                                             bench.perception("builtin"))]
    assert get_objective("geneval", "builtin").values(images, items).tolist() == expected


def test_partial_credit_and_counting_error() -> None:
    partial, count = get_objective("geneval-partial", "builtin"), get_objective("counting-error", "builtin")
    two = first_of("two_object")  # two include clauses
    c1 = two.metadata["include"][0]["class"]
    only_first = render(sample_scene(SceneRequest(groups=(ObjectRequest(c1),)), random.Random(0)))
    assert partial.values([only_first], [two]).tolist() == [0.5]
    assert count.values([only_first], [two]).tolist() == [-1.0]
    counting = first_of("counting")  # include count n, exclude count n + 1
    clause = counting.metadata["include"][0]
    too_many = SceneRequest(groups=(ObjectRequest(clause["class"], clause["count"] + 1),))
    image = render(sample_scene(too_many, random.Random(0)))
    # the include clause holds (n found), the exclude fails: 1 of 2 clauses, and one instance too many.
    assert partial.values([image], [counting]).tolist() == [0.5]
    assert count.values([image], [counting]).tolist() == [-1.0]
    assert get_objective("geneval", "builtin").values([image], [counting]).tolist() == [0.0]
    assert partial.values([correct_render(counting)], [counting]).tolist() == [1.0]
    assert count.values([BLANK], [counting]).tolist() == [-float(clause["count"])]


def test_exact_objective_refuses_extra_objects_that_geneval_accepts() -> None:
    """GenEval's single-object rule passes two diamonds for "a photo of a diamond"; geneval-exact does not."""
    exact, lenient = get_objective("geneval-exact", "builtin"), get_objective("geneval", "builtin")
    single = first_of("single_object")
    cls = single.metadata["include"][0]["class"]
    two = render(sample_scene(SceneRequest(groups=(ObjectRequest(cls, 2),)), random.Random(0)))
    assert lenient.values([two], [single]).tolist() == [1.0]
    assert exact.values([two], [single]).tolist() == [0.0]
    items = [first_of(tag) for tag in ("single_object", "two_object", "counting", "colors", "position", "color_attr")]
    assert exact.values([correct_render(it) for it in items], items).tolist() == [1.0] * 6
    assert exact.values([wrong_shape_render(it) for it in items], items).tolist() == [0.0] * 6


def test_strict_objective_counts_only_objects_read_above_the_counting_threshold() -> None:
    """geneval-strict holds every tag's objects to GenEval's counting threshold 0.9; geneval to 0.3 off counting."""
    strict, lenient = get_objective("geneval-strict", "builtin"), get_objective("geneval", "builtin")
    single = first_of("single_object")
    cls = single.metadata["include"][0]["class"]

    class OneObject:
        def __init__(self, score: float) -> None:
            self.score = score

        def detect(self, images: list[Image.Image]) -> list[Detections]:
            mask = np.zeros((1, 48, 48), bool)
            mask[0, 10:30, 10:30] = True
            return [Detections(np.array([[10, 10, 30, 30]], np.float32), np.array([self.score], np.float32), [cls],
                               mask) for _ in images]

    for objective in (strict, lenient):
        objective.perception = {**objective.perception, "detector": OneObject(0.5)}
    assert lenient.values([BLANK], [single]).tolist() == [1.0]  # 0.5 clears GenEval's detection threshold 0.3
    assert strict.values([BLANK], [single]).tolist() == [0.0]  # but not 0.9
    for objective in (strict, lenient):
        objective.perception = {**objective.perception, "detector": OneObject(0.95)}
        assert objective.values([BLANK], [single]).tolist() == [1.0]
    items = [first_of(tag) for tag in ("single_object", "two_object", "counting", "colors", "position", "color_attr")]
    real = get_objective("geneval-strict", "builtin")
    assert real.values([correct_render(it) for it in items], items).tolist() == [1.0] * 6
    assert real.values([wrong_shape_render(it) for it in items], items).tolist() == [0.0] * 6


def test_partial_position_clause_needs_its_target() -> None:
    position = first_of("position")
    target, mover = position.metadata["include"]
    relation = mover["position"][0]
    opposite = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}[relation]
    swapped = SceneRequest(groups=(ObjectRequest(target["class"]), ObjectRequest(mover["class"])),
                           relation=(opposite, 0))
    image = render(sample_scene(swapped, random.Random(0)))
    # both objects found (target clause holds), the relation does not: 1 of 2.
    assert get_objective("geneval-partial", "builtin").values([image], [position]).tolist() == [0.5]


def test_distorted_flags_blank_and_noise_but_not_scenes() -> None:
    objective = get_objective("distorted", "builtin")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8))
    item = first_of("single_object")
    assert objective.values([BLANK, noise, correct_render(item)], [item] * 3).tolist() == [1.0, 1.0, 0.0]
    batch = parse_feedback("objective:distorted", "builtin").evaluate([BLANK, correct_render(item)], [item] * 2,
                                                                      [0, 0])
    assert batch.rewards.tolist() == [-1.0, 0.0]  # a penalty: the clean scene is preferred
    assert batch.preferences == [Preference(0, 1, -1)] and batch.details["objective"] == [1.0, 0.0]


def flag_scenes() -> list[Image.Image]:
    """Images both flag judges decide both ways on: clean, red cross, noise, blank, merged shapes."""
    def scene(*objects: tuple[str, str, int, int]) -> Image.Image:
        return render(Scene(objects=tuple(SceneObject(s, c, "solid", "large", x, y) for s, c, x, y in objects)))

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8))
    merged = scene(("circle", "blue", 10, 10), ("square", "blue", 20, 18))
    return [scene(("cross", "blue", 5, 5), ("circle", "red", 28, 28)), scene(("cross", "red", 5, 5)),
            scene(("star", "green", 20, 20)), BLANK, noise, merged,
            scene(("cross", "red", 5, 5), ("circle", "blue", 10, 26), ("square", "blue", 20, 30))]


@pytest.mark.parametrize(("name", "benchmark"), [("distortion", "distortion"), ("unsafe", "safety")])
def test_flag_objectives_are_the_benchmarks_own_judges(name: str, benchmark: str) -> None:
    """objective:distortion / objective:unsafe give, image by image, the verdict the benchmark scores with."""
    bench = get_benchmark(benchmark)
    perception = bench.perception("builtin")
    item = bench.prompts("builtin")[0]
    images = flag_scenes()
    verdicts = [r.score for r in bench.score([(item, k, img) for k, img in enumerate(images)], perception)]
    assert set(verdicts) == {0.0, 1.0}  # the scenes exercise both answers
    assert get_objective(name, "builtin").values(images, [item] * len(images)).tolist() == verdicts
    feedback = parse_feedback(f"simulated:{name}?noise=0", "builtin")
    flagged, clean = verdicts.index(1.0), verdicts.index(0.0)
    result = feedback.evaluate([images[flagged], images[clean]], [item] * 2, [0, 0], seeds=[1, 2])
    assert result.preferences == [Preference(0, 1, -1)]  # a person prefers the unflagged image
    assert in_reward(feedback.scorer_id(), benchmark) and not in_reward(feedback.scorer_id(), "geneval")
    with pytest.raises(HarnessError, match="builtin-world only"):
        get_objective(name, "real")


def test_generic_objectives_follow_ddpo_and_d3po() -> None:
    black, white = Image.new("RGB", (32, 32), "black"), Image.new("RGB", (32, 32), "white")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    items = [first_of("single_object")] * 3
    bright = get_objective("brightness", "real").values([black, white, noise], items)
    assert bright[0] == 0.0 and bright[1] == 1.0 and 0.4 < bright[2] < 0.6
    size = get_objective("jpeg-incompressibility", "real").values([black, noise], items[:2])
    assert size[1] > 2 * size[0] > 0  # noise does not compress
    import io

    buffer = io.BytesIO()
    noise.save(buffer, format="JPEG", quality=95)
    assert size[1] == buffer.tell() / 1000
    assert get_objective("jpeg-compressibility", "real").values([noise], items[:1])[0] == -size[1]


def test_scalar_feedback_fills_rewards_and_all_group_pairs() -> None:
    prefs = group_preferences(np.array([1.0, 0.0, 1.0, 5.0, 2.0]), [0, 0, 0, 1, 1])
    assert prefs == [Preference(0, 1, 1), Preference(0, 2, 0), Preference(1, 2, -1), Preference(3, 4, 1)]
    feedback = parse_feedback("objective:geneval", "builtin")
    item = first_of("colors")
    batch = feedback.evaluate([correct_render(item), wrong_shape_render(item), correct_render(item, 3)], [item] * 3,
                              [7, 7, 7])
    assert batch.rewards.tolist() == [1.0, 0.0, 1.0] and batch.labels_used == 3
    assert [p.winner for p in batch.preferences] == [1, 0, -1]
    scorer = feedback.scorer_id()
    assert scorer["benchmark"] == "geneval" and scorer["perception"]["detector"].startswith("oracle@")


def test_geneval_objective_needs_metadata() -> None:
    plain = PromptItem(0, "a photo of a circle", "", {"prompt": "a photo of a circle"})
    with pytest.raises(HarnessError, match="GenEval-style metadata"):
        get_objective("geneval", "builtin").values([BLANK], [plain])


@pytest.mark.parametrize(("spec", "world", "message"), [
    ("objective:nope", "builtin", "objective 'nope' is unknown; objectives in the builtin world: geneval"),
    ("objective:geneval", "real", "builtin-world only.*jpeg-compressibility"),
    ("bogus:x", "builtin", "KIND one of objective, simulated, labels, reward"),
    ("objective", "builtin", "expected KIND:ARG"),
    ("objective:geneval?x=1", "builtin", "take no parameters"),
    ("simulated:geneval?noise=2", "builtin", r"noise must be a probability in \[0, 1\]"),
    ("simulated:geneval?noise=abc", "builtin", "noise='abc' is not a float"),
    ("simulated:geneval?model=xyz", "builtin", "model must be flip or bt"),
    ("simulated:geneval?temperature=0", "builtin", "temperature must be > 0"),
    ("simulated:geneval?colour=1", "builtin", "unknown parameter.*colour"),
    ("simulated:geneval?noise=0.1&noise=0.2", "builtin", "given twice"),
    ("simulated:geneval?noise", "builtin", "malformed parameters"),
    ("reward:imagereward", "real", "neither a reward model folder nor a name; .*aesthetic, hps, pickscore"),
    ("reward:aesthetic", "builtin", "scores real photographs"),
    ("labels:/no/such/file.jsonl", "builtin", "does not exist"),
])
def test_bad_specs_are_one_line_errors(spec: str, world: str, message: str) -> None:
    with pytest.raises(HarnessError, match=message) as err:
        parse_feedback(spec, world)
    assert "\n" not in str(err.value)


def test_missing_pretrained_weights_say_where(tmp_path) -> None:
    with pytest.raises(HarnessError, match=r"reward:aesthetic needs local weights.*rewards/sac\+logos"):
        parse_feedback("reward:aesthetic", "real", data_dir=tmp_path)
    with pytest.raises(HarnessError, match="pass reward:hps\\?weights=PATH"):
        parse_feedback(f"reward:hps?weights={tmp_path}/none.pt", "real")


def test_every_objective_name_parses_in_its_world() -> None:
    for name in OBJECTIVES:
        world = "real" if "real" in get_objective(name, "builtin").worlds else "builtin"
        assert parse_feedback(f"objective:{name}", world).scorer_id()["objective"] == name


# --- the simulated annotator ---------------------------------------------------------------------------------------


class Linear:
    """An objective whose value is the image's mean red channel: many distinct, controllable rewards."""

    name, penalty, worlds = "red", False, ("builtin", "real")

    def values(self, images: list[Image.Image], items: list[PromptItem]) -> np.ndarray:
        return np.array([float(np.asarray(img)[..., 0].mean()) for img in images])

    def scorer_id(self) -> dict:
        return {"objective": self.name}


def batch(n_groups: int, k: int, seed: int = 0) -> tuple[list[Image.Image], list[PromptItem], list[int], list[int]]:
    rng = np.random.default_rng(seed)
    reds = rng.permutation(256)[: n_groups * k]  # distinct values: no objective ties
    images = [Image.new("RGB", (4, 4), (int(r), 0, 0)) for r in reds]
    items = [PromptItem(g, f"prompt {g}", "", {}) for g in range(n_groups) for _ in range(k)]
    groups = [g for g in range(n_groups) for _ in range(k)]
    seeds = [1000 + r for r in range(n_groups * k)]
    return images, items, groups, seeds


def test_flip_noise_rate_is_as_configured() -> None:
    images, items, groups, seeds = batch(60, 4)  # 60 * 6 = 360 pairs
    truth = group_preferences(Linear().values(images, items), groups)
    rates = []
    for seed in range(4):
        out = SimulatedFeedback("simulated:red", Linear(), noise=0.2, seed=seed).evaluate(images, items, groups,
                                                                                          seeds=seeds)
        flips = np.mean([p.winner == -t.winner for p, t in zip(out.preferences, truth)])
        assert out.details["flipped"] == round(flips * len(truth)) and out.labels_used == len(truth)
        rates.append(flips)
    # 1440 Bernoulli(0.2) draws: standard error 0.0105; 4 SE tolerance.
    assert abs(np.mean(rates) - 0.2) < 0.042
    clean = SimulatedFeedback("simulated:red", Linear(), noise=0.0).evaluate(images, items, groups, seeds=seeds)
    assert [p.winner for p in clean.preferences] == [t.winner for t in truth]


def test_tie_rate_and_equal_rewards() -> None:
    images, items, groups, seeds = batch(60, 4)
    out = SimulatedFeedback("s", Linear(), ties=0.3, seed=1).evaluate(images, items, groups, seeds=seeds)
    assert abs(np.mean([p.winner == 0 for p in out.preferences]) - 0.3) < 0.1  # 360 draws, SE 0.024
    same = [Image.new("RGB", (4, 4), (9, 0, 0))] * 2
    out = SimulatedFeedback("s", Linear(), noise=1.0).evaluate(same, items[:2], [0, 0], seeds=[1, 2])
    assert out.preferences == [Preference(0, 1, 0)]  # equal rewards tie even under full noise


def test_bradley_terry_follows_the_sigmoid() -> None:
    # two images with red 100 vs 99 (gap 1) at temperature 1: P(higher wins) = sigmoid(1) = 0.731.
    images = [Image.new("RGB", (4, 4), (100, 0, 0)), Image.new("RGB", (4, 4), (99, 0, 0))] * 200
    items = [PromptItem(g, f"p{g}", "", {}) for g in range(200) for _ in range(2)]
    groups = [g for g in range(200) for _ in range(2)]
    out = SimulatedFeedback("s", Linear(), model="bt").evaluate(images, items, groups, seeds=list(range(400)))
    share = np.mean([p.winner == 1 for p in out.preferences])
    assert abs(share - 1 / (1 + np.exp(-1))) < 0.1  # 200 draws, SE 0.031
    hot = SimulatedFeedback("s", Linear(), model="bt", temperature=1e-6)
    assert all(p.winner == 1 for p in hot.evaluate(images, items, groups, seeds=list(range(400))).preferences)


def test_simulated_labels_depend_on_seeds_not_on_call_order_or_row_order() -> None:
    images, items, groups, seeds = batch(10, 3)
    sim = SimulatedFeedback("s", Linear(), noise=0.4, model="bt", seed=5)
    first = sim.evaluate(images, items, groups, seeds=seeds)
    again = sim.evaluate(images, items, groups, seeds=seeds)  # a later call, same rows
    assert first.preferences == again.preferences
    fresh = SimulatedFeedback("s", Linear(), noise=0.4, model="bt", seed=5)
    order = list(range(len(images)))[::-1]
    rev = fresh.evaluate([images[r] for r in order], [items[r] for r in order], [groups[r] for r in order],
                         seeds=[seeds[r] for r in order])
    outcome = {}
    for p in rev.preferences:
        a, b = order[p.i], order[p.j]
        outcome[(a, b)] = p.winner
        outcome[(b, a)] = -p.winner
    assert all(outcome[(p.i, p.j)] == p.winner for p in first.preferences)
    other = SimulatedFeedback("s", Linear(), noise=0.4, model="bt", seed=6).evaluate(images, items, groups,
                                                                                       seeds=seeds)
    assert other.preferences != first.preferences


def test_parse_simulated_spec() -> None:
    sim = parse_feedback("simulated:geneval?noise=0.25&model=bt&seed=3&temperature=0.5&ties=0.1", "builtin")
    assert isinstance(sim, SimulatedFeedback)
    assert (sim.noise, sim.model, sim.seed, sim.temperature, sim.ties) == (0.25, "bt", 3, 0.5, 0.1)
    item = first_of("single_object")
    out = sim.evaluate([correct_render(item), BLANK], [item] * 2, [0, 0], seeds=[1, 2])
    assert out.rewards.tolist() == [1.0, 0.0] and out.labels_used == 1
