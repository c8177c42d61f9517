"""The benchmark registry: one subpackage per benchmark, found by name (``harness bench list``)."""

from benchmarks.registry import Benchmark, PromptItem, SampleResult, available, get_benchmark, register

__all__ = ["Benchmark", "PromptItem", "SampleResult", "available", "get_benchmark", "register"]
