"""Benchmarks behind `robot-rl bench <name>`: one module per benchmark, each exposing `main(cfg) -> int`."""
