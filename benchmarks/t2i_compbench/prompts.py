"""T2I-CompBench prompt sets and the per-prompt spec the rules score with.

Real world: the official ``examples/dataset/<category>_val.txt`` files (300 prompts each), read as the official
generation script reads them (``splitlines``, so CRLF endings go; text before a tab). Colour defaults to the file
before commit 3310c2f, which every published colour number used (it repeats 5 prompts; the current file does not).

Builtin world: 300 unique prompts per category from the builtin grammar (``harness.builtin.prompts.describe``,
the phrasing the builtin model was trained on), drawn with a seeded generator:

* color: two shapes with two colours, "a red circle and a blue star" (official: "a green bench and a blue bowl").
* shape: in the builtin world the noun *is* the shape, so binding a shape word to an object is not testable.
  What remains of the official category is its other geometric words (small / big / tall / short are in a fifth
  of shape_val): size, "a small circle and a large star".
* texture: solid / striped, "a striped circle and a solid star".
  Shape and texture have only 8 x 7 x 2 x 2 = 224 two-object prompts, so a share name three objects.
* spatial: "a red circle left of a blue star". The builtin relation words stand for the official phrases
  (left of -> "on the left of", right of -> "on the right of", above -> "on the top of", below ->
  "on the bottom of"), so the official rule scores them; the model knows only its own words. Colourless prompts
  give only 8 x 7 x 4 = 224, so both objects get a colour, which the rule ignores as it ignores all adjectives.
* numeracy: one to three groups of 1-4 objects, at most 4 in all (the scene's capacity), "two circles and a star".
* complex: two objects with a colour and a texture or a size each, in a relation,
  "a small red circle left of a striped blue star"; all are in the 3-in-1 "spatial" partition
  (attribute + spatial).

non_spatial and 3d_spatial are real-world only: non-spatial prompts are actions ("a person is looking at a rainbow")
that shapes cannot perform, and CLIPScore would need an image-text model of the shapes world; 3D relations (in
front of, behind, hidden by) need occlusion and depth, while the builtin world is flat and its objects never
overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.registry import PromptItem
from benchmarks.t2i_compbench.parsing import BuiltinParser, Parsed, Parser
from benchmarks.t2i_compbench.rules import (
    COMPLEX_PREPOSITIONS,
    DEPTH_RELATIONS,
    SPATIAL_RELATIONS,
    CompBenchOptions,
    blip_questions,
    clip_text,
    complex_objects,
    find_relation,
    numeracy_objects,
    route_key,
    simple_objects,
)
from harness.builtin.prompts import describe
from harness.builtin.world import COLORS, MAX_INSTANCES, PLURALS, RELATIONS, SHAPES, SIZES, TEXTURES, ObjectRequest
from harness.builtin.world import SceneRequest as Request
from harness.data import DataFile, fetch

DATA = "t2i-compbench"
COMMIT = "1b7094991a57f3c22abdd4f6e8ba6c1a15517073"
COLOR_COMMIT = "7728deac05e17903b3145befd9b7207c7c019573"  # parent of 3310c2f, which changed color_val.txt
RAW = "https://raw.githubusercontent.com/Karine-Huang/T2I-CompBench/{commit}/examples/dataset/{name}"

CATEGORIES = ("color", "shape", "texture", "spatial", "non_spatial", "complex", "3d_spatial", "numeracy")
ATTRIBUTE_CATEGORIES = ("color", "shape", "texture")
BUILTIN_CATEGORIES = ("color", "shape", "texture", "spatial", "numeracy", "complex")
PROMPTS_PER_CATEGORY = 300
BUILTIN_SEED = 42

_SHA256 = {
    "color_val.txt": "1634259756dbc77d13093d907d414480080ec9790a8c97ad09efaea7b2534f2d",
    "shape_val.txt": "37e1a276906c7ea9516cbd7ac8501be896006c0c17ca7344f260562834455bae",
    "texture_val.txt": "fbb5363515b4a28009e360afaaaf389d2dd2289e50dbb0c6ef4ea0c7fe4f3d4f",
    "spatial_val.txt": "8707a1d7e42ce3002d95363cf55f74bd043c843ae27108f5125aaaa7840ca988",
    "non_spatial_val.txt": "04c56cc9ac441dc9ea6c5157652058bd1635b5308526dd31bb29a1caab9a758d",
    "complex_val.txt": "1b808018b8d9916db3d47d5aa2ef18377a3549a56901a474156f799824cdf3b4",
    "3d_spatial_val.txt": "c9953597315f36a5fcb41291bb19bdc6ab5f64a0fa760d691b4854a73f5d1fe9",
    "numeracy_val.txt": "dad8df141604b70ba7554bec724e3db0a80023680769b5c514854ea2d2527bbe",
    "complex_val_spatial.txt": "6c7ac0ab75c7c9080cfc7b421fb059b9b0febb98471707aeedf58771088abc02",
    "complex_val_action.txt": "d49ee4c7f99e3f3379fb8704a54ff5288b83bb412971edf616a4721c2473308e",
    "new_objects.txt": "f39a3d2ff6067d7738673cbf465dc659ccc750776162989a5d9916f1d5f3e231",
}


def dataset_file(name: str) -> DataFile:
    """A file of ``examples/dataset/`` at the pinned commit."""
    return DataFile(DATA, f"dataset/{name}", RAW.format(commit=COMMIT, name=name), _SHA256[name])


COLOR_VAL_BEFORE_3310C2F = DataFile(DATA, "dataset_before_3310c2f/color_val.txt",
                                    RAW.format(commit=COLOR_COMMIT, name="color_val.txt"),
                                    "1e37a12c1861bf6b11623eaffb0bf6d6eeea9702caf45b95d040f1721bba7f4f")


def val_file(category: str, options: CompBenchOptions) -> DataFile:
    if category == "color" and options.color_prompts == "before_3310c2f":
        return COLOR_VAL_BEFORE_3310C2F
    return dataset_file(f"{category}_val.txt")


def read_prompts(path: Path) -> list[str]:
    """Prompts as ``inference_eval.py`` reads them: ``splitlines()`` (CRLF or LF), text before a tab."""
    return [line.split("\t")[0] for line in path.read_text(encoding="utf-8").splitlines() if line]


@dataclass(frozen=True)
class Vocabulary:
    """What a world's prompts call things: relation phrases (in match order) with the official relation each
    stands for, the prepositions complex prompts put between objects, and numeracy's object names."""

    relations: tuple[tuple[str, str], ...]
    prepositions: tuple[str, ...]
    singular: tuple[str, ...]
    plural: tuple[str, ...]


BUILTIN_RELATIONS = {"left of": "on the left of", "right of": "on the right of", "above": "on the top of",
                     "below": "on the bottom of"}
BUILTIN_VOCABULARY = Vocabulary(tuple(BUILTIN_RELATIONS.items()), tuple(BUILTIN_RELATIONS), SHAPES,
                                tuple(PLURALS[s] for s in SHAPES))


def real_vocabulary(data_dir: Path | str | None) -> Vocabulary:
    """The official vocabulary; numeracy's objects are ``new_objects.txt`` ("bottle - bottles"), lower-cased."""
    pairs = [line.split(" - ") for line in fetch(dataset_file("new_objects.txt"), data_dir).read_text().splitlines()]
    return Vocabulary(tuple((r, r) for r in SPATIAL_RELATIONS), COMPLEX_PREPOSITIONS,
                      tuple(s.strip().lower() for s, _ in pairs), tuple(p.strip().lower() for _, p in pairs))


def prompt_spec(category: str, prompt: str, parse: Callable[[str], Parsed], vocabulary: Vocabulary,
                options: CompBenchOptions, partition: str | None = None) -> dict:
    """What scoring needs of one prompt: BLIP questions, spatial objects and relation, numeracy objects and
    counts, CLIP text, complex partition; 3d_spatial: the first and last noun and the first of
    :data:`DEPTH_RELATIONS` in the prompt, as ``3D_spatial_eval.py`` reads them."""
    quirks = options.official_quirks
    spec: dict = {"category": category}
    if category in ATTRIBUTE_CATEGORIES:
        spec["questions"] = blip_questions(parse(prompt), options.np_num)
    elif category == "spatial":
        spec["objects"] = list(simple_objects(parse(prompt)))
        spec["relation"] = find_relation(prompt, vocabulary.relations, quirks)
    elif category == "3d_spatial":
        spec["objects"] = list(simple_objects(parse(prompt)))
        spec["relation"] = find_relation(prompt, tuple((r, r) for r in DEPTH_RELATIONS), quirks)
    elif category == "numeracy":
        spec["objects"], spec["counts"] = numeracy_objects(parse(prompt), vocabulary.singular, vocabulary.plural,
                                                           quirks, options.numeracy_rule)
    elif category == "non_spatial":
        spec["clip_text"] = prompt
    elif category == "complex":
        parsed = parse(prompt)
        spec.update(partition=partition, questions=blip_questions(parsed, options.np_num),
                    objects=list(complex_objects(parsed, vocabulary.prepositions)),
                    relation=find_relation(prompt, vocabulary.relations, quirks),
                    clip_text=clip_text(prompt, parsed, drop_adjectives=True))
    return spec


def complex_partitions(data_dir: Path | str | None, options: CompBenchOptions) -> Callable[[str], str]:
    """The 3-in-1 routing of complex_val prompts: spatial, action, or (in neither list) spatial_action."""

    def keys(name: str) -> set[str]:
        return {route_key(p, options.official_quirks) for p in read_prompts(fetch(dataset_file(name), data_dir))}

    spatial, action = keys("complex_val_spatial.txt"), keys("complex_val_action.txt")

    def partition(prompt: str) -> str:
        key = route_key(prompt, options.official_quirks)
        return "spatial" if key in spatial else "action" if key in action else "spatial_action"

    return partition


def real_prompts(data_dir: Path | str | None, options: CompBenchOptions) -> list[tuple[str, str]]:
    """(category, prompt) for every official val prompt, category by category in :data:`CATEGORIES` order; the
    position in this list is the prompt's index."""
    return [(category, prompt) for category in CATEGORIES
            for prompt in read_prompts(fetch(val_file(category, options), data_dir))]


def real_items(data_dir: Path | str | None, options: CompBenchOptions, parser: Parser,
               indices: Sequence[int] | None = None) -> list[PromptItem]:
    """Items of the official val prompts (:func:`real_prompts`), all or those at ``indices``; only those are
    parsed."""
    vocabulary = real_vocabulary(data_dir)
    partition = complex_partitions(data_dir, options)
    listed = real_prompts(data_dir, options)
    items: list[PromptItem] = []
    for index in range(len(listed)) if indices is None else indices:
        category, prompt = listed[index]
        route = partition(prompt) if category == "complex" else None
        spec = prompt_spec(category, prompt, parser.parse, vocabulary, options, route)
        items.append(PromptItem(index, prompt, category, spec))
    return items


# --- the builtin world -------------------------------------------------------------------------------------------


def _draw(rng: np.random.Generator, values: tuple[str, ...], k: int = 1) -> list[str]:
    return [values[int(i)] for i in rng.choice(len(values), size=k, replace=False)]


def _request(category: str, rng: np.random.Generator) -> Request:
    """One random builtin prompt of ``category``, as a scene request (what a correct image shows)."""
    if category in ("color", "shape", "texture"):
        n = 2 if category == "color" else int(rng.choice([2, 3]))
        shapes = _draw(rng, SHAPES, n)
        if category == "color":
            return Request(tuple(ObjectRequest(s, color=c) for s, c in zip(shapes, _draw(rng, tuple(COLORS), 2))))
        if category == "shape":
            return Request(tuple(ObjectRequest(s, size=_draw(rng, tuple(SIZES))[0]) for s in shapes))
        return Request(tuple(ObjectRequest(s, texture=_draw(rng, TEXTURES)[0]) for s in shapes))
    if category == "spatial":
        shapes, colors = _draw(rng, SHAPES, 2), _draw(rng, tuple(COLORS), 2)
        groups = tuple(ObjectRequest(s, color=c) for s, c in zip(shapes, colors))
        return Request(groups, relation=(_draw(rng, RELATIONS)[0], 0))
    if category == "numeracy":
        n = int(rng.choice([1, 2, 3], p=[0.1, 0.6, 0.3]))
        splits = [c for c in np.ndindex(*(MAX_INSTANCES,) * n) if sum(c) + n <= MAX_INSTANCES]
        counts = splits[int(rng.integers(len(splits)))]
        return Request(tuple(ObjectRequest(s, count=c + 1) for s, c in zip(_draw(rng, SHAPES, n), counts)))
    if category == "complex":
        groups = []
        for shape, color in zip(_draw(rng, SHAPES, 2), _draw(rng, tuple(COLORS), 2)):
            if rng.random() < 0.5:
                groups.append(ObjectRequest(shape, color=color, texture=_draw(rng, TEXTURES)[0]))
            else:
                groups.append(ObjectRequest(shape, color=color, size=_draw(rng, tuple(SIZES))[0]))
        return Request(tuple(groups), relation=(_draw(rng, RELATIONS)[0], 0))
    raise ValueError(f"{category!r} has no builtin prompts; builtin categories: {', '.join(BUILTIN_CATEGORIES)}")


def builtin_requests(category: str, n: int = PROMPTS_PER_CATEGORY, seed: int = BUILTIN_SEED) -> list[Request]:
    """``n`` scene requests with distinct prompts, drawn from a generator seeded by (seed, category)."""
    rng = np.random.default_rng([seed, CATEGORIES.index(category)])
    requests: dict[str, Request] = {}
    while len(requests) < n:
        request = _request(category, rng)
        requests.setdefault(describe(request, prefix=False), request)
    return list(requests.values())


def builtin_items(options: CompBenchOptions) -> list[PromptItem]:
    """The builtin prompt sets, category by category; specs come from parsing the prompt text, as in the real
    world, with the builtin grammar's exact parser and vocabulary."""
    parser = BuiltinParser()
    items: list[PromptItem] = []
    for category in BUILTIN_CATEGORIES:
        for request in builtin_requests(category):
            prompt = describe(request, prefix=False)
            spec = prompt_spec(category, prompt, parser.parse, BUILTIN_VOCABULARY, options,
                               "spatial" if category == "complex" else None)
            items.append(PromptItem(len(items), prompt, category, spec))
    return items
