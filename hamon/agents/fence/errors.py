"""The fence agent's one error type, the kind validate-all reports, and its exit codes.

A room of its own because every other room raises them and the agent's process glue
(:mod:`.agent`) catches them before the engine is loaded: this module imports nothing.
The exit codes are fencing.py's: 0 success, 1 failure (``status``: 0 on, 2 off).
"""

EC_OK, EC_FAILED = 0, 1


class FenceError(Exception):
    """The action failed. The text is one line for the administrator: which device or
    option, what happened, and what to do."""


class ConfigError(FenceError):
    """A bad option value (validate-all reports these)."""
