"""Switchboard: Kubernetes operator and LLM gateway."""

__version__ = "0.1.0"
