"""Layer 6: one module per `robot-rl` subcommand, each exposing `run(cfg, args) -> int`."""
