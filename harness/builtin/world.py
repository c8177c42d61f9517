"""The builtin world's vocabulary and scene model.

A scene is a list of objects (shape, colour, texture, size, position) on a flat grey canvas. Everything here is
pure data and seeded sampling; drawing lives in ``render.py`` and reading pixels back in ``oracle.py``.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

CANVAS = 48
BACKGROUND = (150, 150, 150)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross", "heart", "ring")
PLURALS: dict[str, str] = {s: (s + "es" if s.endswith("s") else s + "s") for s in SHAPES}

# GenEval's ten colour names (prompts/create_prompts.py), as saturated, mutually distant RGB values.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 20, 20),
    "orange": (255, 140, 0),
    "yellow": (255, 230, 0),
    "green": (20, 160, 40),
    "blue": (30, 60, 230),
    "purple": (130, 40, 180),
    "pink": (255, 130, 200),
    "brown": (120, 70, 25),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
}
TEXTURES: tuple[str, ...] = ("solid", "striped")
# Box side in pixels for each size word; the oracle splits sizes halfway between them.
SIZES: dict[str, int] = {"small": 10, "large": 16}
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
NUMBERS: dict[int, str] = {1: "one", 2: "two", 3: "three", 4: "four"}
MAX_INSTANCES = 4
# How often an object whose texture the prompt leaves open is striped: mostly solid, as in ordinary photos.
UNSPECIFIED_STRIPED = 0.15
# Minimum free pixels between two objects' boxes, so that objects never touch and stay separate components.
GAP = 2


def stripe_color(color: str) -> tuple[int, int, int]:
    """Colour of the stripes on a striped object: white, or black on a white object."""
    return COLORS["black"] if color == "white" else COLORS["white"]


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    texture: str
    size: str
    x: int  # left edge of the object's box, in pixels
    y: int  # top edge

    @property
    def side(self) -> int:
        return SIZES[self.size]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Inclusive pixel box (x1, y1, x2, y2)."""
        return (self.x, self.y, self.x + self.side - 1, self.y + self.side - 1)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + (self.side - 1) / 2, self.y + (self.side - 1) / 2)


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    canvas: int = CANVAS

    def to_dict(self) -> dict:
        return {"canvas": self.canvas, "objects": [asdict(o) for o in self.objects]}

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        return cls(objects=tuple(SceneObject(**o) for o in data["objects"]), canvas=data["canvas"])


@dataclass(frozen=True)
class ObjectRequest:
    """What a prompt asks for one group of objects; ``None`` means "any" (sampled at random)."""

    shape: str
    count: int = 1
    color: str | None = None
    texture: str | None = None
    size: str | None = None


@dataclass(frozen=True)
class SceneRequest:
    """Groups of objects plus an optional relation: group ``relation[1]`` is ``relation[0]`` group 0."""

    groups: tuple[ObjectRequest, ...]
    relation: tuple[str, int] | None = None  # (relation of group 1 w.r.t. group 0, 0)
    extras: dict = field(default_factory=dict, compare=False)


def _boxes_clear(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[2] + GAP < b[0] or b[2] + GAP < a[0] or a[3] + GAP < b[1] or b[3] + GAP < a[1]


def relation_holds(obj: SceneObject, target: SceneObject, relation: str, strict: float = 0.5) -> bool:
    """True when the centre offset points clearly in ``relation``'s direction (unit-vector component > strict)."""
    (ax, ay), (bx, by) = obj.center, target.center
    dx, dy = ax - bx, ay - by
    norm = (dx * dx + dy * dy) ** 0.5
    if norm == 0:
        return False
    dx, dy = dx / norm, dy / norm
    return {"left of": dx < -strict, "right of": dx > strict, "above": dy < -strict, "below": dy > strict}[relation]


def sample_scene(request: SceneRequest, rng: random.Random, max_tries: int = 200) -> Scene:
    """Draw a scene that satisfies ``request``: unspecified attributes are uniform, objects never overlap.

    Relations are placed with a clear margin (the offset's unit vector > 0.8 along the relation axis and the boxes
    apart by more than GenEval's 0.1 margin) so a correct scene is unambiguous to any reasonable position rule.
    """
    specs: list[tuple[int, ObjectRequest]] = []
    for gi, group in enumerate(request.groups):
        specs.extend((gi, group) for _ in range(group.count))
    if len(specs) > MAX_INSTANCES:
        raise ValueError(f"a builtin scene holds at most {MAX_INSTANCES} objects, got {len(specs)}")
    for _ in range(max_tries):
        placed: list[tuple[int, SceneObject]] = []
        ok = True
        for gi, group in specs:
            size = group.size or rng.choice(tuple(SIZES))
            side = SIZES[size]
            obj = None
            for _ in range(60):
                x = rng.randint(1, CANVAS - side - 1)
                y = rng.randint(1, CANVAS - side - 1)
                cand = SceneObject(
                    shape=group.shape,
                    color=group.color or rng.choice(tuple(COLORS)),
                    texture=group.texture or ("striped" if rng.random() < UNSPECIFIED_STRIPED else "solid"),
                    size=size,
                    x=x,
                    y=y,
                )
                if not all(_boxes_clear(cand.box, p.box) for _, p in placed):
                    continue
                if request.relation is not None and gi == 1:
                    targets = [p for g, p in placed if g == 0]
                    if not all(relation_holds(cand, t, request.relation[0], strict=0.8) for t in targets):
                        continue
                obj = cand
                break
            if obj is None:
                ok = False
                break
            placed.append((gi, obj))
        if ok:
            return Scene(objects=tuple(o for _, o in placed))
    raise RuntimeError(f"could not place scene {request} in {max_tries} tries")
