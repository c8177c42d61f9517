"""T2I-CompBench and T2I-CompBench++ (Huang et al., NeurIPS 2023 / TPAMI 2025): compositional alignment.

Eight categories, each 300 validation prompts x 10 images (seeds 42..51), scored per image by the official rules
(``rules.py``) and averaged per category: attribute binding (color, shape, texture) by BLIP-VQA, 2D spatial and
numeracy by UniDet detections, non-spatial by CLIPScore, complex by the 3-in-1 mix, 3D spatial by UniDet + depth.

Worlds (details in ``prompts.py``):

* builtin: color, shape (as size binding: the builtin noun is the shape), texture, spatial, numeracy and complex,
  scored by the oracle VQA and detector that read the pixels. non_spatial (actions) and 3d_spatial (occlusion and
  depth) cannot be made meaningful in a flat world of non-overlapping shapes, so they are real-world only.
* real: the official val files, all eight categories, weights from local folders or the local cache (each loaded
  only when a category needs it): color, shape and texture with transformers BLIP VQA, non_spatial with open_clip
  CLIPScore, 3d_spatial's depth with transformers DPT-Hybrid MiDaS. UniDet (detectron2) cannot be installed, so
  spatial, 3d_spatial, numeracy and complex use **OWLv2 as a substitute detector**, queried with the prompt's
  object names (``harness.perception.open_vocab``): the official rules, threshold and pixel constants apply, but
  those four categories will not match published tables exactly.

Images made elsewhere are scored from the official layout, ``samples/{prompt}_{k:06}.png``
(``harness score --bench t2i-compbench --images DIR``).
"""

from benchmarks.t2i_compbench.benchmark import T2ICompBench

__all__ = ["T2ICompBench"]
