"""Shared fixtures: a twin cell without task objects, stepped synchronously on simulation time."""

from .twin_harness import make_twin  # noqa: F401  (the fixture)
