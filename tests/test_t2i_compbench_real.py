"""T2I-CompBench's real-world detector and depth backends and its image-folder reader.

OWLv2 (the UniDet substitute) and DPT run as tiny random-init networks saved to disk and loaded the real way; they
check preprocessing, shapes, batching and the box frame, not accuracy. The 3D-spatial rule is checked on
hand-computed cases; folder scoring on rendered builtin scenes read back by the oracle.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import benchmarks.t2i_compbench.benchmark as benchmark_module
import benchmarks.t2i_compbench.prompts as prompts_module
from benchmarks.registry import PromptItem
from benchmarks.t2i_compbench import T2ICompBench
from benchmarks.t2i_compbench.benchmark import unidet_detections
from benchmarks.t2i_compbench.export import sample_name
from benchmarks.t2i_compbench.parsing import Parsed, Token
from benchmarks.t2i_compbench.prompts import builtin_requests
from benchmarks.t2i_compbench.rules import (
    CompBenchOptions,
    Detection,
    depth_in_unidet_frame,
    depth_position_score,
    find_by_substring,
    region_depth,
    spatial_3d_score,
)
from harness.builtin.prompts import describe
from harness.builtin.render import render
from harness.builtin.world import sample_scene
from harness.errors import HarnessError
from harness.perception.base import Detections, Detector
from harness.perception.depth import DepthEstimator, DptDepth, depth_to_levels, dpt_pixels
from harness.perception.open_vocab import OwlV2Detector, QueryDetector, box_masks, select_boxes
from tests.fixtures_data import t2i_compbench_data
from tests.tiny_pipelines import write_tokenizer

SIZES = [(64, 48), (40, 40), (30, 60)]  # (width, height): wide, square, tall


def images(sizes: list[tuple[int, int]] = SIZES, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


@pytest.fixture(scope="module")
def owl_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    folder = tmp_path_factory.mktemp("owlv2")
    tokenizer = write_tokenizer(folder)
    text = {"vocab_size": len(tokenizer), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 16, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 8}
    torch.manual_seed(0)
    Owlv2ForObjectDetection(Owlv2Config(text_config=text, vision_config=vision, projection_dim=16)
                            ).save_pretrained(folder)
    processor = Owlv2ImageProcessor(size={"height": 32, "width": 32})
    Owlv2Processor(image_processor=processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def dpt_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import DPTConfig, DPTForDepthEstimation

    folder = tmp_path_factory.mktemp("dpt")
    torch.manual_seed(0)
    config = DPTConfig(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32, image_size=32,
                       patch_size=16, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 8, 8],
                       fusion_hidden_size=8, head_in_index=-1)
    DPTForDepthEstimation(config).save_pretrained(folder)
    return folder


# --- OWLv2 ---------------------------------------------------------------------------------------------------------


def test_select_boxes_hand_computed() -> None:
    """Boxes are relative to the zero-padded square (side = the long side), clipped to the image, per-query NMS."""
    logit = float(np.log(0.8 / 0.2))  # sigmoid -> 0.8
    logits = torch.tensor([[logit, -9.0], [0.0, 9.0], [logit - 0.1, -9.0], [-9.0, logit + 0.1]])
    boxes = torch.tensor([[0.25, 0.25, 0.5, 0.5],  # (cx, cy, w, h) of the 200 x 200 square: (0, 0, 100, 100)
                          [0.5, 0.5, 0.2, 0.2],  # (80, 80, 120, 120), clipped to the 200 x 100 image
                          [0.26, 0.25, 0.5, 0.5],  # (2, 0, 102, 100): IoU 0.96 with box 0
                          [0.9, 0.4, 0.4, 0.4]])  # (140, 40, 220, 120), clipped
    allowed = torch.tensor([True, False])  # query 1 belongs to another image of the batch
    corners, scores, query = select_boxes(logits, boxes, allowed, (200, 100), 0.5, 0.5)
    assert query.tolist() == [0] and scores == pytest.approx([0.8])  # box 1 scores 0.5 (not > 0.5); NMS drops 2
    assert corners.tolist() == [pytest.approx([0.0, 0.0, 100.0, 100.0])]
    corners, scores, query = select_boxes(logits, boxes, torch.tensor([True, True]), (200, 100), 0.5, None)
    sigmoid = [1 / (1 + np.exp(-v)) for v in (9.0, logit + 0.1, logit, logit - 0.1)]
    assert scores.tolist() == pytest.approx(sigmoid) and query.tolist() == [1, 1, 0, 0]  # most confident first
    assert corners[:2].tolist() == [pytest.approx([80.0, 80.0, 120.0, 100.0]),
                                    pytest.approx([140.0, 40.0, 200.0, 100.0])]


def test_box_masks_fill_the_box() -> None:
    masks = box_masks(np.array([[1.0, 2.0, 3.0, 5.0]]), 6, 4)
    assert masks.shape == (1, 6, 4) and masks.sum() == 6 and masks[0, 2:5, 1:3].all()


def test_owlv2_shapes_batching_and_box_frame(owl_folder: Path) -> None:
    imgs = images()
    names = [["cat", "dog"], [], ["person"]]
    detector = OwlV2Detector(str(owl_folder), threshold=0.0, nms_threshold=None, batch_size=3)
    assert isinstance(detector, QueryDetector) and isinstance(detector, Detector)
    found = detector.detect_names(imgs, names)
    assert [len(d) for d in found] == [16, 0, 16]  # (32 / 8)^2 predicted boxes, all kept at threshold 0
    for d, img, own in zip(found, imgs, names):
        assert d.boxes.shape == (len(d), 4) and d.masks.shape == (len(d), img.height, img.width)
        assert set(d.labels) <= set(own) and list(d.scores) == sorted(d.scores, reverse=True)
        assert (d.boxes >= 0).all() and (d.boxes[:, [0, 2]] <= img.width).all()
        assert (d.boxes[:, [1, 3]] <= img.height).all()
    one_by_one = OwlV2Detector(str(owl_folder), threshold=0.0, nms_threshold=None, batch_size=1)
    for a, b in zip(found, one_by_one.detect_names(imgs, names)):  # a batch's union of queries changes nothing
        assert a.labels == b.labels and np.allclose(a.scores, b.scores, atol=1e-5)
        assert np.allclose(a.boxes, b.boxes, atol=1e-4)


def test_owlv2_matches_the_processor_and_raw_outputs(owl_folder: Path) -> None:
    """The model sees transformers' own OWLv2 preprocessing; boxes come back in the original image's pixels."""
    from transformers import Owlv2ForObjectDetection, Owlv2Processor

    img = images([(64, 48)])[0]
    processor = Owlv2Processor.from_pretrained(owl_folder)
    model = Owlv2ForObjectDetection.from_pretrained(owl_folder).eval()
    inputs = processor(text=[["a photo of a cat"]], images=[img], padding="max_length", return_tensors="pt")
    assert inputs["pixel_values"].shape == (1, 3, 32, 32)
    with torch.no_grad():
        out = model(**inputs)
    reference = processor.image_processor.post_process_object_detection(out, threshold=0.3,
                                                                        target_sizes=[(img.height, img.width)])[0]
    (found,) = OwlV2Detector(str(owl_folder), threshold=0.3, nms_threshold=None).detect_names([img], [["cat"]])
    order = torch.argsort(reference["scores"], descending=True)
    expected = reference["boxes"][order].clamp(min=0).numpy()
    expected[:, [0, 2]] = expected[:, [0, 2]].clip(max=64)
    expected[:, [1, 3]] = expected[:, [1, 3]].clip(max=48)
    assert np.allclose(found.scores, reference["scores"][order].numpy(), atol=1e-5)
    assert np.allclose(found.boxes, expected, atol=1e-4) and found.labels == ["cat"] * len(found)


def test_detections_move_into_unidet_frame() -> None:
    """A 512 x 512 image's boxes shrink by 479/512 (UniDet's Resize(479, max_size=480)); scores <= 0.5 go."""
    d = Detections(np.array([[0, 0, 512, 256], [10, 10, 20, 20]], np.float32), np.array([0.9, 0.5], np.float32),
                   ["dog", "cat"], np.zeros((2, 1, 1), bool))
    (kept,) = unidet_detections(d, (512, 512), 0.5)
    assert kept.name == "dog" and kept.box == pytest.approx((0, 0, 479, 239.5))


def test_missing_weights_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="not in the local Hugging Face cache") as err:
        OwlV2Detector("nobody/no-such-owlv2").detect_names(images()[:1], [["cat"]])
    assert "\n" not in str(err.value)
    with pytest.raises(HarnessError, match="holds no loadable DPTForDepthEstimation"):
        DptDepth(str(tmp_path)).depth_levels(images()[:1])
    assert OwlV2Detector("nobody/x").detect_names(images()[:1], [[]])[0].boxes.shape == (0, 4)  # nothing to load


# --- DPT -----------------------------------------------------------------------------------------------------------


def test_dpt_preprocessing_is_the_official_transform() -> None:
    from torchvision import transforms

    official = transforms.Compose([transforms.Resize([480, 480]), transforms.ToTensor(),
                                   transforms.Normalize(0.5, 0.5)])
    img = images([(64, 48)])[0]
    assert torch.allclose(dpt_pixels([img])[0], official(img), atol=1e-5)


def test_depth_levels_hand_computed() -> None:
    """Same size: no resampling; min-max then imsave's min(floor(256 v), 255)."""
    levels = depth_to_levels(torch.tensor([[0.0, 1.0], [2.0, 3.0]]), (2, 2))
    assert levels.dtype == np.uint8 and levels.tolist() == [[0, 85], [170, 255]]
    assert depth_to_levels(torch.ones(2, 2), (2, 2)).tolist() == [[0, 0], [0, 0]]  # a constant map: no 0 / 0
    assert depth_to_levels(torch.tensor([[0.0, 1.0], [2.0, 3.0]]), (3, 1)).shape == (1, 3)  # (width, height)


def test_dpt_shapes_and_batching(dpt_folder: Path) -> None:
    imgs = images()
    depth = DptDepth(str(dpt_folder), batch_size=2)
    assert isinstance(depth, DepthEstimator)
    levels = depth.depth_levels(imgs)
    assert [lv.shape for lv in levels] == [(h, w) for w, h in SIZES]
    assert all(lv.dtype == np.uint8 and lv.min() == 0 and lv.max() == 255 for lv in levels)
    alone = DptDepth(str(dpt_folder), batch_size=1).depth_levels(imgs)
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(levels, alone))


def test_depth_in_unidet_frame() -> None:
    assert depth_in_unidet_frame(np.full((512, 512), 255, np.uint8)).tolist() == np.ones((479, 479)).tolist()
    frame = depth_in_unidet_frame(np.full((400, 600), 51, np.uint8))
    assert frame.shape == (320, 480) and frame.dtype == np.float32 and frame[0, 0] == pytest.approx(0.2)


# --- the 3D spatial rule, hand-computed ----------------------------------------------------------------------------

ROWS = np.tile(np.arange(10, dtype=np.float32)[:, None] / 10, (1, 10))  # depth[r, c] = r / 10
COLS = ROWS.T.copy()  # depth[r, c] = c / 10


def test_region_depth_indexes_rows_by_x_with_quirks() -> None:
    box = (0, 2, 4, 6)  # x 0..3, y 2..5
    assert region_depth(ROWS, box) == pytest.approx(0.15)  # rows 0..3 (x)
    assert region_depth(ROWS, box, quirks=False) == pytest.approx(0.35)  # rows 2..5 (y)
    assert region_depth(ROWS, (0.9, 2.7, 4.99, 6.2)) == pytest.approx(0.15)  # corners truncated to ints
    assert np.isnan(region_depth(ROWS, (3, 3, 3, 8)))


@pytest.mark.parametrize(("relation", "box1", "box2", "depth", "quirks", "expected"), [
    # IoU 12/20 = 0.6 > 0.5; quirk rows 0..3 (0.15) vs 1..4 (0.25): d = -0.1, object 1 is farther
    ("behind", (0, 0, 4, 4), (1, 0, 5, 4), ROWS, True, 1.0),
    ("hidden", (0, 0, 4, 4), (1, 0, 5, 4), ROWS, True, 1.0),
    ("in front of", (0, 0, 4, 4), (1, 0, 5, 4), ROWS, True, 0.0),
    ("behind", (0, 0, 4, 4), (1, 0, 5, 4), ROWS, False, 0.0),  # proper rows are y 0..3 for both: d = 0
    # IoU 10/30 = 1/3: 0 < IoU < 0.5 -> IoU / 0.5; d = 0.15 - 0.35 < 0 under quirks
    ("behind", (0, 0, 4, 5), (2, 0, 6, 5), ROWS, True, 2 / 3),
    # no overlap: 0 whatever the depth
    ("behind", (0, 0, 2, 2), (5, 0, 7, 2), ROWS, True, 0.0),
    # IoU exactly 0.5 (8 / 16): between the script's branches with quirks
    ("in front of", (0, 0, 4, 4), (0, 0, 4, 2), COLS, True, 0.0),  # d = 0.15 - 0.05 > 0, yet 0
    ("in front of", (0, 0, 4, 4), (0, 0, 4, 2), ROWS, False, 1.0),  # rows y: 0.15 - 0.05 > 0 -> 1
    (None, (0, 0, 4, 4), (1, 0, 5, 4), ROWS, True, 0.0),
])
def test_depth_position_score(relation: str | None, box1: tuple, box2: tuple, depth: np.ndarray, quirks: bool,
                              expected: float) -> None:
    assert depth_position_score(relation, box1, box2, depth, quirks) == pytest.approx(expected)


def test_3d_matching_by_substring_and_score_without_floor() -> None:
    detections = [Detection("hot dog", 0.9, (0, 0, 4, 4)), Detection("dog", 0.8, (1, 0, 5, 4)),
                  Detection("person", 0.6, (1, 0, 5, 4))]
    assert find_by_substring("dog", detections).name == "hot dog"  # type: ignore[union-attr]
    assert find_by_substring("dog", detections, quirks=False).name == "dog"  # type: ignore[union-attr]
    assert find_by_substring("t d", detections) is not None and find_by_substring("g d", detections) is None
    # The official loop overwrites obj1's index on every hit until both objects are set: "dog" (0.8) at (1, 0, 5, 4),
    # not the first hit "hot dog"; same box as the person, so no depth difference and position 0.
    score, seen = spatial_3d_score("dog", "person", "behind", detections, ROWS)
    assert score == pytest.approx(0.25 * 0.8 + 0.25 * 0.6) and seen["position"] == 0.0
    hot_first = [detections[2], detections[0], detections[1]]  # person first: both set at "hot dog", then stop
    score, seen = spatial_3d_score("dog", "person", "behind", hot_first, ROWS)
    assert score == pytest.approx(0.25 * 0.9 + 0.25 * 0.6 + 1.0 / 2) and seen["position"] == 1.0
    assert spatial_3d_score("cat", "person", "behind", detections, ROWS)[0] == pytest.approx(0.15)  # no 0.5 floor
    assert spatial_3d_score("cat", None, "behind", detections, ROWS)[0] == 0.0


# --- the benchmark's real world ------------------------------------------------------------------------------------


def item(index: int, tag: str, **spec: object) -> PromptItem:
    return PromptItem(index, f"prompt {index}", tag, {"category": tag, **spec})


ITEMS = [
    item(0, "spatial", objects=["person", "frog"], relation="on the top of"),
    item(1, "numeracy", objects=["boy", "ship"], counts=[2, 1]),
    item(2, "3d_spatial", objects=["dog", "desk"], relation="in front of"),
    item(3, "complex", partition="spatial", questions=[], objects=["hat", "coat"], relation="on top of",
         clip_text="x"),
]


class SpyDetector:
    """Records the names it is asked for; finds each name once, all over the image, at 0.9."""

    name, version = "spy", "1"

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    def detect_names(self, imgs: list[Image.Image], names: list[list[str]]) -> list[Detections]:
        self.asked.extend(names)
        return [Detections(np.array([[0, 0, img.width, img.height]] * len(own), np.float32).reshape(-1, 4),
                           np.full(len(own), 0.9, np.float32), list(own), np.zeros((len(own), 1, 1), bool))
                for img, own in zip(imgs, names)]


class FlatDepth:
    name, version = "flat", "1"

    def depth_levels(self, imgs: list[Image.Image]) -> list[np.ndarray]:
        return [np.zeros((img.height, img.width), np.uint8) for img in imgs]


def test_real_perception_is_lazy_and_configurable() -> None:
    bench = T2ICompBench(CompBenchOptions(detection_threshold=0.3))
    bench.configure({"detector_model": "/nowhere/owl", "depth_model": "/nowhere/dpt"})
    perception = bench.perception("real")  # nothing loads yet: no weights are needed to build it
    assert set(perception) == {"vqa", "clip", "detector", "depth"}
    detector = perception["detector"]
    assert isinstance(detector, OwlV2Detector) and detector.threshold == 0.3 and detector.source == "/nowhere/owl"
    assert isinstance(perception["depth"], DptDepth)
    with pytest.raises(HarnessError, match="detector_model=PATH"):
        bench.score([(ITEMS[0], 0, images()[0])], perception)


def test_objects_are_asked_by_name_and_3d_is_scored() -> None:
    spy = SpyDetector()
    samples = [(it, 0, images([(479, 479)])[0]) for it in ITEMS]
    results = T2ICompBench().score(samples, {"detector": spy, "depth": FlatDepth(), "vqa": None})
    assert spy.asked == [["person", "frog"], ["person", "boat"], ["dog", "desk"], ["hat", "coat"]]
    by_tag = {r.tag: r for r in results}
    # same boxes (IoU 1) and flat depth: d = 0, no direction -> 0.25 * 0.9 * 2
    assert by_tag["3d_spatial"].score == pytest.approx(0.45)
    assert by_tag["3d_spatial"].details["found"] == [True, True]
    assert by_tag["numeracy"].score == pytest.approx(0.75)  # person: 1 != 2 asked; boat: 1 = 1
    with pytest.raises(HarnessError, match="'3d_spatial' needs a depth backend"):
        T2ICompBench().score(samples[2:3], {"detector": spy})


def test_tiny_networks_through_the_benchmark(owl_folder: Path, dpt_folder: Path, tmp_path: Path) -> None:
    bench = T2ICompBench(CompBenchOptions(detection_threshold=0.0))
    bench.configure({"detector_model": str(owl_folder), "depth_model": str(dpt_folder)})
    perception = bench.perception("real")
    results = bench.score([(it, 0, img) for it, img in zip(ITEMS[:3], images())], perception)
    assert [r.tag for r in results] == ["spatial", "numeracy", "3d_spatial"]
    assert all(0.0 <= r.score <= 1.0 for r in results)
    assert results[2].details["found"] == [True, True]  # threshold 0: every queried name has a box
    images()[0].save(tmp_path / "x.png")
    bench.write_outputs(tmp_path, ITEMS[2:3], results[2:], [[tmp_path / "x.png"]])
    assert (tmp_path / "3d_spatial" / "labels" / "annotation_obj_detection_3d" / "vqa_result.json").is_file()


# --- image folders -------------------------------------------------------------------------------------------------


def lay_out(samples: Path, prompts: list[tuple[str, list[Image.Image]]]) -> None:
    """``samples/{prompt}_{k:06}.png`` with a running k, as the official generation script names them."""
    samples.mkdir(parents=True, exist_ok=True)
    k = 0
    for prompt, imgs in prompts:
        for img in imgs:
            img.save(samples / sample_name(prompt, k))
            k += 1


def test_builtin_folder_with_a_bad_image_and_an_unknown_prompt(tmp_path: Path) -> None:
    from harness.api import EvalSettings, score

    rng = random.Random(0)
    spatial, numeracy = builtin_requests("spatial")[:2], builtin_requests("numeracy")[:1]
    bench = T2ICompBench()
    items = {item.prompt: item for item in bench.prompts("builtin")}
    laid = [(describe(r, prefix=False), [render(sample_scene(r, rng)) for _ in range(2)]) for r in spatial + numeracy]
    lay_out(tmp_path / "samples", [*laid, ("a purple elephant", [laid[0][1][0]])])
    (tmp_path / "samples" / sample_name(laid[1][0], 3)).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "samples" / "notes.png").write_bytes(b"")
    contents = bench.read_image_folder(tmp_path)
    assert [i.prompt for i in contents.items] == [p for p, _ in laid]
    assert [i.metadata for i in contents.items] == [items[p].metadata for p, _ in laid]
    assert [p.name for p in contents.images[0]] == [sample_name(laid[0][0], k) for k in (0, 1)]
    assert [len(ps) for ps in contents.images] == [2, 1, 2]
    assert len(contents.skipped) == 3 and any("unreadable image" in s for s in contents.skipped)
    assert any("'a purple elephant' (1 image(s)): in no T2I-CompBench prompt list" in s for s in contents.skipped)
    assert any("notes.png: not named" in s for s in contents.skipped)
    assert bench.world_of(contents.items) == "builtin"
    record = score("t2i-compbench", tmp_path / "samples", out=tmp_path / "store", progress=False)
    assert record.world == "builtin" and record.n_images == 5 and len(record.options["skipped"]) == 3
    assert record.scores == pytest.approx({"overall": 1.0, "spatial": 1.0, "numeracy": 1.0})
    only = score("t2i-compbench", tmp_path, out=tmp_path / "store", settings=EvalSettings(tags=("numeracy",)),
                 progress=False)
    assert only.n_images == 2 and set(only.scores) == {"overall", "numeracy"}


class WordParser:
    """Whitespace tokens tagged NOUN: enough to parse real prompts without spaCy."""

    name, version = "words", "0"

    def parse(self, text: str) -> Parsed:
        return Parsed(tuple(Token(w, "NOUN") for w in text.split()), ())


def test_real_folder_finds_categories_and_resolves_shared_prompts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  unpinned_data: None) -> None:
    bench = T2ICompBench(parser=WordParser())
    bench.data_dir = t2i_compbench_data(tmp_path / "data")
    listed = prompts_module.real_prompts(bench.data_dir, bench.options)
    shared = "a giraffe next to a lamp"  # a spatial prompt, here also listed as numeracy
    patched = [*listed, ("numeracy", shared)]
    monkeypatch.setattr(prompts_module, "real_prompts", lambda *args: patched)
    monkeypatch.setattr(benchmark_module, "real_prompts", lambda *args: patched)
    blank = [Image.new("RGB", (8, 8))]
    lay_out(tmp_path / "a" / "samples", [(shared, blank * 2), ("a girl on the top of a frog", blank)])
    contents = bench.read_image_folder(tmp_path / "a")
    found = {i.prompt: i for i in contents.items}
    assert (found[shared].tag, found[shared].index) == ("spatial", listed.index(("spatial", shared)))
    assert found[shared].metadata["relation"] == "next to" and len(contents.images[0]) == 2
    assert bench.world_of(contents.items) == "real" and not contents.skipped
    lay_out(tmp_path / "b" / "samples", [(shared, blank)])
    alone = bench.read_image_folder(tmp_path / "b" / "samples")
    assert sorted(i.tag for i in alone.items) == ["numeracy", "spatial"]  # one per category: --tags picks
