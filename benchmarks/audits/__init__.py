"""Audits of benchmark scores: checks, after the fact, of what a score says against what a person sees."""
