"""Exception types. Every message names the file, field and offending value."""


class RobotRLError(Exception):
    """Base class for errors that robot_rl reports to users."""


class ConfigError(RobotRLError, ValueError):
    """A configuration file or override is invalid."""


class CheckpointError(RobotRLError):
    """A checkpoint directory is missing files, tampered with, or does not match the model."""


class StoreError(RobotRLError):
    """An episode store is missing, corrupt, or was used incorrectly."""


class StaleDataError(RobotRLError):
    """A sensor sample is older than the allowed staleness bound."""
