"""Benchmarks: ``python -m bench`` loads a real local stack with wrk and prints the figures."""
