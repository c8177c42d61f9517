"""Perception backends behind small protocols: detectors, colour classifiers, VQA, image-text scorers."""

from harness.perception.base import ColorClassifier, Detections, Detector

__all__ = ["ColorClassifier", "Detections", "Detector"]
