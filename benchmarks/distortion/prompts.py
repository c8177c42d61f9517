"""Prompt sets of the distortion benchmark: the builtin world's, and D3PO's (read from a data folder at run time).

* ``builtin`` (32 prompts): D3PO measured distortion on one plain prompt, "1 hand", drawn many times; the shapes
  world's counterpart is a plain request for each shape, and because a model can draw a shape well alone and break it
  beside others, three more tags ask for the same shapes with a colour, in a count of 2-4, and next to another shape.
  Per tag one prompt per shape (8 shapes), built with the builtin grammar (``harness.builtin.prompts.describe``) from
  a seeded ``random.Random``. The base model draws pure noise for some of them ("a photo of a star"): the distortion
  D3PO should remove.
* ``d3po-hand``: D3PO's "1 hand" (paper, Fig. 4: 1,000 images per epoch, each classified by hand).
* ``d3po-anything``: D3PO's ``anything_prompt.txt`` (442 anime tag lists, "1girl, ..."; the distortion experiment with
  Anything-v5), read from ``<data dir>/d3po/anything_prompt.txt`` (the official file at the pinned commit, checked by
  hash) or downloaded from the official repository; never shipped here.
"""

from __future__ import annotations

import random

from benchmarks.registry import PromptItem
from harness.builtin.prompts import describe
from harness.builtin.world import COLORS, SHAPES, ObjectRequest, SceneRequest
from harness.data import DataFile, fetch
from harness.errors import DataError

D3PO_COMMIT = "40d31758048f62ff49814eaa0403d820493ad374"
D3PO_ASSETS = f"https://raw.githubusercontent.com/yk7333/D3PO/{D3PO_COMMIT}/d3po_pytorch/assets"
ANYTHING_PROMPTS = DataFile("d3po", "anything_prompt.txt", f"{D3PO_ASSETS}/anything_prompt.txt",
                            "cf89cb84ff9c1390c5294c852657a21c09f58ba8372bc2681c0ceff986d7854e",
                            "3903007a8ab3773add4d10d08aef3501e0ec9bed")
HAND_PROMPT = "1 hand"
BUILTIN_SEED = 0
BUILTIN_TAGS = ("single", "color", "counting", "two_object")


def builtin_distortion_prompts(seed: int = BUILTIN_SEED) -> list[PromptItem]:
    """The ``builtin`` set (module docstring): tags in ``BUILTIN_TAGS`` order, shapes in world order within a tag."""
    rng = random.Random(seed)
    requests: list[tuple[str, SceneRequest]] = []
    for shape in SHAPES:
        requests.append(("single", SceneRequest(groups=(ObjectRequest(shape),))))
    for shape in SHAPES:
        requests.append(("color", SceneRequest(groups=(ObjectRequest(shape, color=rng.choice(tuple(COLORS))),))))
    for shape in SHAPES:
        requests.append(("counting", SceneRequest(groups=(ObjectRequest(shape, count=rng.randint(2, 4)),))))
    for shape in SHAPES:
        other = rng.choice([s for s in SHAPES if s != shape])
        requests.append(("two_object", SceneRequest(groups=(ObjectRequest(shape), ObjectRequest(other)))))
    return [PromptItem(i, describe(request), tag, {"set": "builtin", "shapes": [g.shape for g in request.groups]})
            for i, (tag, request) in enumerate(requests)]


def read_prompt_lines(path: str, text: str) -> list[str]:
    """Prompts one per line as D3PO's ``prompts.py`` reads them (``line.strip()``, CRLF or LF); blank lines dropped."""
    prompts = [line.strip() for line in text.splitlines()]
    prompts = [p for p in prompts if p]
    if not prompts:
        raise DataError(f"{path}: no prompts")
    return prompts


def d3po_file_prompts(file: DataFile, tag: str, data_dir: object = None) -> list[PromptItem]:
    """The prompts of one of D3PO's asset files, from the data folder or the cache (``harness.data.fetch``)."""
    path = fetch(file, data_dir)  # type: ignore[arg-type]
    prompts = read_prompt_lines(str(path), path.read_text(encoding="utf-8"))
    return [PromptItem(i, p, tag, {"set": f"d3po:{file.path}"}) for i, p in enumerate(prompts)]


def d3po_hand_prompts() -> list[PromptItem]:
    return [PromptItem(0, HAND_PROMPT, "hand", {"set": "d3po-hand"})]
