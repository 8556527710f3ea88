"""Fake model servers for the gateway tests, the demo and the benchmarks (see server.py)."""
