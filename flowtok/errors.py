"""Typed errors the library raises; the CLI maps them to one-line messages and exit codes."""


class FlowTokError(Exception):
    """Base class: a runtime problem the user can fix (exit code 1 in the CLI)."""


class ConfigError(FlowTokError):
    """A configuration, preset or override that cannot be applied (exit code 2 in the CLI)."""


class DataError(FlowTokError):
    """An input file or folder that cannot be read as expected."""


class CheckpointError(FlowTokError):
    """A model folder or checkpoint that is missing, corrupted, unsafe or incompatible."""


class ArgumentError(ConfigError, ValueError):
    """A bad argument to a library call (a ValueError too, as Python callers expect; exit 2)."""


class NumericalError(FlowTokError):
    """A model produced NaN or Inf: a non-finite setting or damaged weights (never a black image)."""
