"""The errors loopwm raises for what a user can fix: a bad setting, file, env or input.

Each is a subclass of both :class:`LoopWMError` and the builtin type a Python user
expects (``ValueError`` for a bad value, ``TypeError`` for an unsupported type or space,
``FileNotFoundError`` / ``FileExistsError`` for paths), so ``except ValueError`` keeps
working. The command line prints a :class:`LoopWMError` as one line and exits with 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class LoopWMError(Exception):
    """An expected failure caused by the user's input, files or environment."""


class ConfigError(LoopWMError, ValueError):
    """A setting, argument or input value is invalid."""


class UnsupportedError(LoopWMError, TypeError):
    """An unsupported type: an env's space, an object where a model was expected, ..."""


class CheckpointError(ConfigError):
    """A checkpoint file is corrupt, truncated, of another format or mismatched."""


class MissingError(LoopWMError, FileNotFoundError):
    """A file or folder the command needs does not exist."""


class ExistsError(LoopWMError, FileExistsError):
    """An output that must be new already exists."""


class SetupError(LoopWMError, RuntimeError):
    """The machine cannot run the command as asked: no GL backend, no torchrun peers."""
