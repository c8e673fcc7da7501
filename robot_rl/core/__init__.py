"""Layer 0: types, rotation math, clocks, config and checkpoint I/O. Imports nothing above it."""
