"""Exception types. Each message says what to change, not only what went wrong."""

from __future__ import annotations


class TokbenchError(Exception):
    """Base class of every error tokbench raises on purpose."""


class UsageError(TokbenchError):
    """The command was asked for something it must not or cannot do (a protected --output, a bad selector):
    the command line exits 2, like any other usage error."""


class FieldError(TokbenchError):
    """An error about one config field: the message names the field, the problem and the fix."""

    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"{field}: {problem}. Fix: {fix}")


class ConfigError(FieldError, ValueError):
    """A configuration value is invalid whatever the machine (e.g. batch_size=0)."""


class UnavailableFeatureError(FieldError):
    """A valid configuration needs something this machine or environment lacks.

    The runner turns it into a result with status ``skipped`` and this message as the reason.
    """


class GenerationError(TokbenchError):
    """A generation call did something a measurement cannot accept (e.g. a wrong token count)."""


class ModelMismatchError(FieldError):
    """A model passed in does not match the config that would label its result (a caller error)."""


class InputShapeError(TokbenchError):
    """Built inputs do not have the exact requested shape."""


class ModelSourceError(TokbenchError):
    """The model could not be found or loaded from the given source."""


class ResultFormatError(TokbenchError, ValueError):
    """A stored result cannot be read back (unknown schema version, missing field)."""


class StoreError(TokbenchError):
    """The results store cannot be opened or read (a newer schema, a damaged file, an unknown run id)."""


class StoreWriteError(StoreError):
    """A finished result could not be committed to the store (disk full, damaged file); it is kept as JSON."""


class LaunchError(TokbenchError):
    """A launcher was asked for something it cannot do (an unknown launcher, a bad compile cache mode)."""


class ForkServerError(LaunchError):
    """The process launcher's fork server could not start, or died (its configs fall back to spawning)."""
