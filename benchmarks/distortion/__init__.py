"""Distortion rate (D3PO's deformity experiment): the share of images judged distorted, with a Wilson interval."""

from benchmarks.distortion.benchmark import Distortion

__all__ = ["Distortion"]
