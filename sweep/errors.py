"""The error tree. Input errors (exit 2) vs. operational errors (exit 1); no click import here."""


class SweepError(Exception):
    """Base of every error sweep reports to a user as one line."""

    exit_code = 1


class InputError(SweepError):
    """The user's input is wrong (config, CSV, arguments): a usage error, exit 2."""

    exit_code = 2


class ConfigError(InputError):
    """An unknown key or a malformed value in the config or its overrides."""


class DataError(InputError):
    """A data file (CSV, corpus) is missing or malformed."""


class StoreError(SweepError):
    """The results store is missing, locked, newer than this sweep, or inconsistent."""


class LaunchError(SweepError):
    """A run could not be launched or the scheduler refused it."""


class FitError(SweepError):
    """A fit is impossible (too few points, degenerate data)."""


class TrainError(SweepError):
    """Training failed (divergence, NaN, bad data)."""


class TrainInterrupted(SweepError):
    """Training stopped on request (signal, preemption) after saving a checkpoint."""
