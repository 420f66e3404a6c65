"""Test doubles used by end-to-end tests, the demo and benchmarks (never by the running service)."""
