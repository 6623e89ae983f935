"""Amends' benchmarks (issue 8): B1 intake, B2 time to apology, B3 incident storm.

Run `python -m bench --quick` (a few minutes) or `python -m bench` (the full figures).
"""
