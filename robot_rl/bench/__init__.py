"""Benchmarks run by `robot-rl bench <name>`; each module exposes main(cfg) -> int."""
