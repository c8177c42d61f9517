"""harness: evaluate and align text-to-image models."""

__version__ = "0.1.0"
