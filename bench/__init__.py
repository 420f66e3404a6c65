"""Benchmarks (issue 6): scripts that measure a figure and its baseline in the same run.

Run them all with `./scripts/bench`; each is also `python -m bench.<name>`.
"""
