"""T2I-CompBench and T2I-CompBench++ (Huang et al., NeurIPS 2023 / TPAMI 2025): compositional alignment.

Eight categories, each 300 validation prompts x 10 images (seeds 42..51), scored per image by the official rules
(``rules.py``) and averaged per category: attribute binding (color, shape, texture) by BLIP-VQA, 2D spatial and
numeracy by UniDet detections, non-spatial by CLIPScore, complex by the 3-in-1 mix, 3D spatial by UniDet + depth.

Worlds (details in ``prompts.py``):

* builtin: color, shape (as size binding: the builtin noun is the shape), texture, spatial, numeracy and complex,
  scored by the oracle VQA and detector that read the pixels. non_spatial (actions) and 3d_spatial (occlusion and
  depth) cannot be made meaningful in a flat world of non-overlapping shapes, so they are real-world only.
* real: the official val files. color, shape, texture and non_spatial run with transformers BLIP VQA and open_clip
  CLIPScore (weights from a local folder or the local cache). spatial, numeracy, complex and 3d_spatial need UniDet
  (detectron2) and, for 3D, DPT depth, which the harness does not provide: scoring them is an error saying so.
"""

from benchmarks.t2i_compbench.benchmark import T2ICompBench

__all__ = ["T2ICompBench"]
