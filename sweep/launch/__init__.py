"""Launchers: one interface (base.py), a local implementation (local.py)."""

from sweep.launch.base import Job, Launcher, pending_runs
from sweep.launch.local import LocalJob, LocalLauncher

__all__ = ["Job", "Launcher", "LocalJob", "LocalLauncher", "pending_runs"]
