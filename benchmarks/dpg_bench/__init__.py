"""DPG-Bench (ELLA, Hu et al., 2024): dense prompts scored by VQA over DSG question graphs with dependencies."""

from benchmarks.dpg_bench.benchmark import DPGBench

__all__ = ["DPGBench"]
