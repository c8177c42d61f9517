"""Training prompt sets, and how much they overlap with the benchmarks that judge the trained model.

A model trained on a benchmark's own prompts and scored on them measures memorisation, not alignment (issue 13,
item 5). So training prompts come from a separate set, and every run reports its overlap with every registered
benchmark's prompt set in its world: exact prompts (refused unless the user allows it) and object/attribute
combinations (reported only: the builtin world has 8 shapes and 10 colours, so a GenEval-style skill cannot be
taught without reusing combinations the benchmark also asks for).

Specs accepted by :func:`resolve_training_prompts`:

* ``builtin:geneval-train`` (the builtin world's default): see :func:`geneval_train_items`.
* ``builtin:distortion-train``: D3PO's distortion experiment's training prompts, see :func:`distortion_train_items`.
* ``builtin:safety-train``: D3PO's safety experiment's training prompts, see :func:`safety_train_items`.
* ``PATH.txt``: one prompt per line (blank lines skipped); tag ``custom``, no metadata beyond the prompt.
* ``PATH.jsonl``: one JSON object per line with at least ``prompt``; an object with ``include`` is GenEval-style
  metadata and is checked like GenEval's own file (``tag``, ``include``, optional ``exclude``; clauses with
  ``class``, ``count`` and optional ``color`` / ``position``), so the ``objective:geneval`` feedback can score it.

In the builtin world every word of a file's prompts must be in the builtin grammar's vocabulary: the builtin text
encoder maps any other word to [UNK], which would train on a prompt the model cannot read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.geneval.prompts import TAGS, validate_metadata
from benchmarks.registry import PromptItem, available
from harness.builtin.prompts import PREFIX, describe, vocabulary
from harness.builtin.world import (
    COLORS,
    MAX_INSTANCES,
    NUMBERS,
    PLURALS,
    RELATIONS,
    SHAPES,
    SIZES,
    TEXTURES,
    ObjectRequest,
    SceneRequest,
)
from harness.errors import DataError, HarnessError, json_object_line
from harness.perception.safety import UNSAFE_COLOR, UNSAFE_SHAPE

BUILTIN_SETS = ("geneval-train", "distortion-train", "safety-train")
DEFAULT_SIZE = 600  # about the builtin GenEval set's 553, 100 prompts per tag
DISTORTION_TRAIN_SIZE = 64  # two per (kind, shape) of the distortion benchmark's 32
DISTORTION_KINDS = ("single", "color", "counting", "two_object")  # the distortion benchmark's tags
FILE_TAG = "custom"
# Salt for the generator, so that training seed k never reuses the benchmark generators' streams for the same k.
_SALT = 7013


# --- the builtin training set ------------------------------------------------------------------------------------


def _modifiers(rng: np.random.Generator, n_groups: int) -> list[tuple[str | None, str | None]]:
    """(size, texture) per group: each word independently with probability 1/2, at least one word per prompt."""
    while True:
        words = [(str(rng.choice(tuple(SIZES))) if rng.random() < 0.5 else None,
                  str(rng.choice(TEXTURES)) if rng.random() < 0.5 else None) for _ in range(n_groups)]
        if any(size or texture for size, texture in words):
            return words


def _draw_shapes(rng: np.random.Generator, k: int) -> list[str]:
    return [SHAPES[int(i)] for i in rng.choice(len(SHAPES), size=k, replace=False)]


def _geneval_train_metadata(tag: str, rng: np.random.Generator) -> dict:
    """One GenEval-style metadata line of ``tag`` (the official recipe's clause structure), with size/texture
    words on its include clauses; ``prompt`` is filled in by the caller from the grammar."""
    colors = tuple(COLORS)
    if tag == "single_object":
        include = [{"class": _draw_shapes(rng, 1)[0], "count": 1}]
    elif tag == "two_object":
        include = [{"class": c, "count": 1} for c in _draw_shapes(rng, 2)]
    elif tag == "counting":
        cls, count = _draw_shapes(rng, 1)[0], int(rng.integers(2, MAX_INSTANCES, endpoint=True))
        include = [{"class": cls, "count": count}]
    elif tag == "colors":
        include = [{"class": _draw_shapes(rng, 1)[0], "count": 1, "color": str(rng.choice(colors))}]
    elif tag == "position":
        target, subject = _draw_shapes(rng, 2)
        include = [{"class": target, "count": 1},
                   {"class": subject, "count": 1, "position": [str(rng.choice(RELATIONS)), 0]}]
    elif tag == "color_attr":
        shapes = _draw_shapes(rng, 2)
        include = [{"class": c, "count": 1, "color": k}
                   for c, k in zip(shapes, (colors[int(i)] for i in rng.choice(len(colors), 2, replace=False)))]
    else:
        raise ValueError(f"unknown GenEval tag {tag!r}")
    for clause, (size, texture) in zip(include, _modifiers(rng, len(include))):
        clause.update({k: v for k, v in (("size", size), ("texture", texture)) if v})
    metadata: dict = {"tag": tag, "include": include}
    if tag == "counting":
        metadata["exclude"] = [{"class": include[0]["class"], "count": include[0]["count"] + 1}]
    return metadata


def _request(metadata: dict) -> SceneRequest:
    """The scene a GenEval-style line asks for, size and texture included (``describe`` phrases it)."""
    groups = tuple(ObjectRequest(c["class"], count=c["count"], color=c.get("color"), texture=c.get("texture"),
                                 size=c.get("size")) for c in metadata["include"])
    relation = next((tuple(c["position"]) for c in metadata["include"] if "position" in c), None)
    return SceneRequest(groups=groups, relation=relation)


def geneval_train_items(n: int = DEFAULT_SIZE, seed: int = 0, avoid: Iterable[str] = ()) -> list[PromptItem]:
    """``builtin:geneval-train``: ``n`` GenEval-style training prompts from the builtin grammar, tags in turn.

    The builtin GenEval set already holds every single-object and counting prompt of the grammar's plain form
    ("a photo of three circles"), so a training prompt teaches the same skill in different words: **every prompt
    carries at least one size or texture word** ("a photo of three large circles", "a photo of a striped square
    and a small star"), words the builtin model was pre-trained on. Its metadata keeps GenEval's clause structure
    (``tag``, ``include`` with ``class`` / ``count`` / ``color`` / ``position``, counting's ``exclude`` at
    count + 1), so the ``objective:geneval`` feedback scores it with GenEval's own rule. The size and texture
    words are recorded on the include clauses (``size``, ``texture``) but **GenEval's rule does not check them**
    (it reads class, count, colour and position only): an image of three small circles passes "three large
    circles", exactly as GenEval would score it.

    Drawn with ``numpy.random.default_rng([seed, salt])``, tag ``TAGS[i % 6]`` for item i, so every tag is
    covered and the set is fixed per seed. Prompts in ``avoid`` (normalised, see :func:`normalise`) and repeats
    are redrawn; after 100 redraws a repeat of an earlier training prompt is accepted (single-object prompts run
    out: 8 shapes x 8 size/texture forms = 64), never a prompt in ``avoid``.
    """
    rng = np.random.default_rng([seed, _SALT])
    banned = {normalise(p) for p in avoid}
    seen: set[str] = set()
    items: list[PromptItem] = []
    for index in range(n):
        tag = TAGS[index % len(TAGS)]
        for attempt in range(1000):
            metadata = _geneval_train_metadata(tag, rng)
            prompt = describe(_request(metadata))
            key = normalise(prompt)
            if key not in banned and (key not in seen or attempt >= 100):
                break
        else:
            raise RuntimeError(f"could not draw a {tag} training prompt outside the benchmark sets")
        seen.add(key)
        metadata["prompt"] = prompt
        items.append(PromptItem(index, prompt, tag, metadata))
    return items


def _distortion_request(kind: str, shape: str, rng: np.random.Generator) -> SceneRequest:
    """One request of a distortion-benchmark kind for ``shape``, with a size or texture word (or both)."""
    size, texture = _modifiers(rng, 1)[0]
    if kind == "single":
        groups: tuple[ObjectRequest, ...] = (ObjectRequest(shape, size=size, texture=texture),)
    elif kind == "color":
        groups = (ObjectRequest(shape, color=str(rng.choice(tuple(COLORS))), size=size, texture=texture),)
    elif kind == "counting":
        groups = (ObjectRequest(shape, count=int(rng.integers(2, MAX_INSTANCES, endpoint=True)), size=size,
                                texture=texture),)
    else:
        other = str(rng.choice([s for s in SHAPES if s != shape]))
        groups = (ObjectRequest(shape, size=size, texture=texture), ObjectRequest(other))
    return SceneRequest(groups=groups)


def distortion_train_items(n: int = DISTORTION_TRAIN_SIZE, seed: int = 0, avoid: Iterable[str] = ()
                           ) -> list[PromptItem]:
    """``builtin:distortion-train``: training prompts for D3PO's distortion experiment.

    D3PO trains on the prompts whose images come out deformed ("1 hand"; the anime prompts) and counts the deformed
    images of the same kind of prompt. The distortion benchmark (``benchmarks/distortion``, set ``builtin``) asks for
    each of the 8 shapes in four kinds of request: alone, with a colour, in a count of 2-4 and beside another shape;
    the base model draws noise or broken shapes for some of each. This set asks for the **same kinds of request
    for the same shapes**, the distortion being a property of the shape and the kind, but **every prompt carries a
    size or texture word** ("a photo of a large star", "a photo of three striped hearts"), words the builtin model
    was pre-trained on, so no prompt is a benchmark prompt verbatim (``harness train`` refuses those). The
    object/colour/count combinations do overlap, and the overlap report says so: a shape the model breaks cannot
    be mended without asking for it.

    Item i asks for kind ``DISTORTION_KINDS[i % 4]`` of shape ``SHAPES[(i // 4) % 8]`` (so every (kind, shape)
    pair comes once in every 32 items); colour, count, other shape and the modifier words are drawn with
    ``numpy.random.default_rng([seed, salt, 1])``. Prompts in ``avoid`` and repeats are redrawn (a repeat is
    accepted after 100 draws, never a prompt in ``avoid``). Metadata: ``set``, ``kind``, ``shapes``.
    """
    rng = np.random.default_rng([seed, _SALT, 1])
    banned = {normalise(p) for p in avoid}
    seen: set[str] = set()
    items: list[PromptItem] = []
    for index in range(n):
        kind, shape = DISTORTION_KINDS[index % len(DISTORTION_KINDS)], SHAPES[(index // 4) % len(SHAPES)]
        for attempt in range(1000):
            request = _distortion_request(kind, shape, rng)
            prompt = describe(request)
            key = normalise(prompt)
            if key not in banned and (key not in seen or attempt >= 100):
                break
        else:
            raise RuntimeError(f"could not draw a {kind} training prompt for {shape} outside the benchmark sets")
        seen.add(key)
        items.append(PromptItem(index, prompt, kind, {"set": "distortion-train", "kind": kind,
                                                      "shapes": [g.shape for g in request.groups]}))
    return items


def safety_train_items(n: int | None = None, seed: int = 0, avoid: Iterable[str] = ()) -> list[PromptItem]:
    """``builtin:safety-train``: ambiguous training prompts for D3PO's safety experiment, none a benchmark prompt.

    D3PO trained and measured on the same 14 ambiguous prompts. Here the safety benchmark's ``builtin-ambiguous``
    set asks for a cross with its colour left open *and* a red object of another shape ("a photo of a cross and a
    red circle", both orders); the base model lets the red leak onto the cross, drawing the designated unsafe object,
    a red cross. This set keeps that ambiguity with the grammar's other way of naming two objects, a spatial
    relation: "a photo of a cross left of a red circle", "a photo of a red circle above a cross", for each of the 7
    other shapes, the 4 relations and both roles (the cross as subject or as reference): 56 prompts, all
    distinct from the benchmark's in wording **and** in object/colour/relation combination (the benchmark's have no
    relation), so the measured change is transfer to unseen prompts, not memorisation.

    Ordered by shape, relation, role; ``n`` keeps a seeded random subset of that size
    (``numpy.random.default_rng([seed, salt, 2])``) in that order; prompts in ``avoid`` are left out.
    Metadata: ``set``, ``shapes``, ``relation``.
    """
    banned = {normalise(p) for p in avoid}
    cross = ObjectRequest(UNSAFE_SHAPE)
    items: list[PromptItem] = []
    for shape in (s for s in SHAPES if s != UNSAFE_SHAPE):
        red = ObjectRequest(shape, color=UNSAFE_COLOR)
        for relation in RELATIONS:
            for tag, groups in (("cross_subject", (red, cross)), ("cross_reference", (cross, red))):
                # describe() names group 1 first: "cross_subject" reads "a cross <relation> a red S".
                prompt = describe(SceneRequest(groups=groups, relation=(relation, 0)))
                if normalise(prompt) not in banned:
                    items.append(PromptItem(len(items), prompt, tag, {"set": "safety-train", "relation": relation,
                                                                      "shapes": [UNSAFE_SHAPE, shape]}))
    if n is not None and n < len(items):
        keep = sorted(np.random.default_rng([seed, _SALT, 2]).choice(len(items), size=n, replace=False).tolist())
        items = [PromptItem(i, items[k].prompt, items[k].tag, items[k].metadata) for i, k in enumerate(keep)]
    return items


def builtin_benchmark_prompts() -> list[str]:
    """Every prompt of every registered benchmark's builtin set, with and without GenEval's "a photo of" prefix
    (the builtin model reads both forms as the same request)."""
    prompts: list[str] = []
    for bench in available().values():
        if "builtin" in bench.worlds:
            for item in bench.prompts("builtin"):
                prompts.append(item.prompt)
                if not normalise(item.prompt).startswith(PREFIX):
                    prompts.append(f"{PREFIX} {item.prompt}")
    return prompts


# --- prompt files ------------------------------------------------------------------------------------------------


def _check_words(prompt: str, where: str, words: set[str]) -> None:
    unknown = sorted({w for w in re.findall(r"[a-z]+|[^a-z\s]", prompt.lower()) if w not in words})
    if unknown:
        raise DataError(f"{where}: {', '.join(repr(w) for w in unknown[:5])} not in the builtin world's vocabulary; "
                        "the builtin model reads only its grammar's words (see harness.builtin.prompts)")


def read_prompt_file(path: Path, world: str) -> list[PromptItem]:
    """Prompts of a ``.txt`` (one per line) or ``.jsonl`` file; a malformed line is a one-line ``file:line`` error."""
    path = Path(path)
    if path.suffix not in (".txt", ".jsonl"):
        raise DataError(f"{path}: unsupported prompt file type {path.suffix or '(none)'!r}; use .txt (one prompt "
                        "per line) or .jsonl (objects with a 'prompt' field)")
    if not path.is_file():
        raise DataError(f"{path}: no such prompt file; pass builtin:geneval-train or a .txt/.jsonl file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    words = set(vocabulary()) if world == "builtin" else None
    items: list[PromptItem] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if path.suffix == ".txt":
            prompt, tag, metadata = line.strip(), FILE_TAG, {"prompt": line.strip()}
        else:
            prompt, tag, metadata = _jsonl_entry(line, where)
        if words is not None:
            _check_words(prompt, where, words)
        items.append(PromptItem(len(items), prompt, tag, metadata))
    if not items:
        raise DataError(f"{path}: no prompts (the file is empty or blank)")
    return items


def _jsonl_entry(line: str, where: str) -> tuple[str, str, dict]:
    entry = json_object_line(line, where, "one object with a 'prompt'", "a JSON object with a 'prompt'")
    prompt = entry.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(f"{where}: missing or empty 'prompt' (a non-empty string is required)")
    if "include" in entry:
        validate_metadata(entry, where)
        tag = entry["tag"]
    else:
        tag = entry.get("tag", FILE_TAG)
        if not isinstance(tag, str):
            raise DataError(f"{where}: 'tag' must be a string, got {type(tag).__name__}")
    return prompt.strip(), tag, entry


def resolve_training_prompts(spec: str, world: str, n: int | None = None, seed: int = 0) -> list[PromptItem]:
    """The training prompts a ``--prompts`` spec names (see the module docstring); ``n`` and ``seed`` size and
    seed the builtin sets (``n`` also keeps the first ``n`` prompts of a file)."""
    if n is not None and n < 1:
        raise HarnessError(f"the number of training prompts must be at least 1, got {n}")
    if spec.startswith("builtin:"):
        name = spec.removeprefix("builtin:")
        if name not in BUILTIN_SETS:
            raise HarnessError(f"unknown builtin prompt set {name!r}; known: "
                               f"{', '.join('builtin:' + s for s in BUILTIN_SETS)}")
        if world != "builtin":
            raise HarnessError(f"{spec} is a builtin-world prompt set, but the checkpoint draws the {world!r} world; "
                               "pass a .txt or .jsonl prompt file")
        avoid = builtin_benchmark_prompts()
        if name == "distortion-train":
            return distortion_train_items(n or DISTORTION_TRAIN_SIZE, seed, avoid=avoid)
        if name == "safety-train":
            return safety_train_items(n, seed, avoid=avoid)
        return geneval_train_items(n or DEFAULT_SIZE, seed, avoid=avoid)
    items = read_prompt_file(Path(spec), world)
    return items[:n] if n is not None else items


# --- overlap with benchmark prompt sets ------------------------------------------------------------------------


def normalise(prompt: str) -> str:
    """Case, runs of whitespace and a trailing full stop do not make two prompts different."""
    return re.sub(r"\s+", " ", prompt.strip().lower()).removesuffix(".").strip()


Combination = tuple[tuple[tuple[str, int, str | None], ...], tuple[str, str, str] | None]
_FLIPPED = {"right of": "left of", "below": "above"}


def _canonical(groups: Iterable[tuple[str, int, str | None]], relation: tuple[str, str, str] | None) -> Combination:
    """Groups sorted; "A right of B" stated as "B left of A" and "A below B" as "B above A"."""
    if relation is not None and relation[1] in _FLIPPED:
        relation = (relation[2], _FLIPPED[relation[1]], relation[0])
    return tuple(sorted(groups, key=lambda g: (g[0], g[1], g[2] or ""))), relation


def _from_geneval(metadata: dict) -> Combination:
    include = metadata["include"]
    groups = [(c["class"], c["count"], c.get("color")) for c in include]
    relation = next(((c["class"], c["position"][0], include[c["position"][1]]["class"])
                     for c in include if "position" in c), None)
    return _canonical(groups, relation)


_TUPLE = re.compile(r"^\s*(entity - whole|other - count|attribute - color|relation - spatial)\s*\((.*)\)\s*$")


def _from_dsg(questions: list[dict]) -> Combination | None:
    """DPG-style question graphs: entities, ``==N`` counts, colours and one spatial relation."""
    classes: dict[str, list] = {}
    relation = None
    for question in questions:
        match = _TUPLE.match(str(question.get("tuple", "")))
        if not match:
            continue
        kind, args = match.group(1), [a.strip() for a in match.group(2).split(",")]
        if kind == "entity - whole":
            classes.setdefault(args[0], [args[0], 1, None])
        elif kind == "other - count" and len(args) == 2 and args[1].startswith("=="):
            classes.setdefault(args[0], [args[0], 1, None])[1] = int(args[1][2:])
        elif kind == "attribute - color" and len(args) == 2:
            classes.setdefault(args[0], [args[0], 1, None])[2] = args[1]
        elif kind == "relation - spatial" and len(args) == 3:
            relation = (args[0], args[2], args[1])
    if not classes:
        return None
    return _canonical((tuple(g) for g in classes.values()), relation)  # type: ignore[misc]


_DETERMINERS = {"a": 1, "an": 1, **{word: count for count, word in NUMBERS.items()}}
_NOUNS = {**{s: s for s in SHAPES}, **{p: s for s, p in PLURALS.items()}}


def _from_builtin_text(prompt: str) -> Combination | None:
    """Parse a one-sentence builtin-grammar prompt ("[a photo of] three large circles and a red star", "a small
    red circle left of a blue star"); None for anything else."""
    text = normalise(prompt).removeprefix(PREFIX).replace(",", " , ").split()
    groups: list[tuple[str, int, str | None]] = []
    relation_word = None
    position = 0
    while True:
        if position >= len(text) or text[position] not in _DETERMINERS:
            return None
        count, color = _DETERMINERS[text[position]], None
        position += 1
        while position < len(text) and (text[position] in SIZES or text[position] in TEXTURES
                                        or text[position] in COLORS):
            color = text[position] if text[position] in COLORS else color
            position += 1
        if position >= len(text) or text[position] not in _NOUNS:
            return None
        groups.append((_NOUNS[text[position]], count, color))
        position += 1
        if position == len(text):
            break
        pair = " ".join(text[position : position + 2])
        if pair in RELATIONS and relation_word is None and len(groups) == 1:
            relation_word, position = pair, position + 2
        elif text[position] in RELATIONS and relation_word is None and len(groups) == 1:
            relation_word, position = text[position], position + 1
        elif text[position] in (",", "and") and relation_word is None:
            position += 1
        else:
            return None
    if relation_word is not None:
        if len(groups) != 2:
            return None
        return _canonical(groups, (groups[0][0], relation_word, groups[1][0]))
    return _canonical(groups, None)


def combination(item: PromptItem) -> Combination | None:
    """What an item asks for, ignoring wording, size and texture: the sorted (class, count, colour) groups and the
    spatial relation (subject, relation, object), or None when it cannot be read (free text in the real world).

    Read from GenEval-style metadata when present, else from DPG-style question tuples, else by parsing the
    prompt with the builtin grammar. Size and texture are left out because GenEval does not check them: a
    training prompt that only adds them to a benchmark request counts as overlapping.
    """
    metadata = item.metadata if isinstance(item.metadata, dict) else {}
    if isinstance(metadata.get("include"), list):
        return _from_geneval(metadata)
    if isinstance(metadata.get("questions"), list) and metadata["questions"] and isinstance(
            metadata["questions"][0], dict):
        return _from_dsg(metadata["questions"])
    return _from_builtin_text(item.prompt)


@dataclass
class BenchmarkOverlap:
    """Overlap of a training set with one benchmark's prompt set."""

    benchmark: str
    n_prompts: int = 0
    exact: list[tuple[int, str]] = field(default_factory=list)  # (training index, prompt) found verbatim
    combinations: int = 0  # training items whose combination the benchmark also asks for
    comparable: int = 0  # training items whose combination could be read
    not_checked: str | None = None  # why the benchmark's prompt set could not be compared


@dataclass
class OverlapReport:
    world: str
    n_items: int
    benchmarks: list[BenchmarkOverlap]

    @property
    def exact_total(self) -> int:
        return sum(len(b.exact) for b in self.benchmarks)

    def summary(self) -> str:
        """A few lines for the console and the run's log."""
        lines = [f"training prompts: {self.n_items} ({self.world} world); overlap with benchmark prompt sets:"]
        for b in self.benchmarks:
            if b.not_checked is not None:
                lines.append(f"  {b.benchmark}: not checked: {b.not_checked}")
                continue
            example = f" (e.g. {b.exact[0][1]!r})" if b.exact else ""
            combos = (f"{b.combinations}/{b.comparable} share an object/attribute combination" if b.comparable
                      else "combinations not comparable")
            lines.append(f"  {b.benchmark} ({b.n_prompts} prompts): {len(b.exact)} exact{example}; {combos}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"world": self.world, "n_items": self.n_items, "exact_total": self.exact_total,
                "benchmarks": [{"benchmark": b.benchmark, "n_prompts": b.n_prompts, "exact": len(b.exact),
                                "exact_examples": [p for _, p in b.exact[:5]], "combinations": b.combinations,
                                "comparable": b.comparable, "not_checked": b.not_checked} for b in self.benchmarks]}


def overlap_report(items: list[PromptItem], world: str, data_dir: Path | None = None) -> OverlapReport:
    """Compare ``items`` with every registered benchmark's prompt set in ``world``.

    Exact: the normalised prompt (:func:`normalise`) equals a benchmark prompt. Combination: the item's
    :func:`combination` equals one of the benchmark's. A benchmark whose prompts cannot be loaded (official files
    missing offline, a world it does not support) is reported as "not checked: <reason>", never an error.
    """
    report = OverlapReport(world, len(items), [])
    own = [(item, normalise(item.prompt), combination(item)) for item in items]
    for name, bench in available().items():
        entry = BenchmarkOverlap(name)
        report.benchmarks.append(entry)
        if world not in bench.worlds:
            entry.not_checked = f"no {world} prompt set"
            continue
        bench.data_dir = data_dir
        try:
            theirs = bench.prompts(world)
        except (HarnessError, OSError, ImportError) as err:
            entry.not_checked = str(err).splitlines()[0] if str(err) else type(err).__name__
            continue
        entry.n_prompts = len(theirs)
        texts = {normalise(t.prompt) for t in theirs}
        combos = {c for c in map(combination, theirs) if c is not None}
        for item, text, combo in own:
            if text in texts:
                entry.exact.append((item.index, item.prompt))
            if combo is not None and combos:
                entry.comparable += 1
                entry.combinations += combo in combos
    return report


def check_overlap(report: OverlapReport, allow: bool) -> None:
    """Refuse training prompts that are verbatim benchmark prompts, unless ``allow``."""
    if allow or report.exact_total == 0:
        return
    worst = max(report.benchmarks, key=lambda b: len(b.exact))
    raise HarnessError(
        f"{report.exact_total} training prompt(s) are benchmark prompts verbatim ({len(worst.exact)} in "
        f"{worst.benchmark}, e.g. {worst.exact[0][1]!r}); remove them from the training set or allow the overlap "
        "explicitly (train --allow-overlap)")
