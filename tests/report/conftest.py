"""Fixtures of the report tests: a synthetic sweep (synth.py), this issue's commands."""

from __future__ import annotations

import pytest

from sweep import api
from .synth import ISO, finish_runs


@pytest.fixture
def iso_sweep(root, monkeypatch):
    """A completed 5 × 4 isoFLOP sweep 'iso' under ``root``."""
    monkeypatch.setenv("SWEEP_CPU_PEAK", "1.5e11")
    api.plan_sweep("iso", ISO, root)
    finish_runs(root, "iso")
    return root


@pytest.fixture(autouse=True)
def _commands():
    """Register this issue's commands on the CLI group (sweep/cli/__init__.py is the lead's)."""
    from sweep.cli import cli
    from sweep.cli import report_commands as rc

    for cmd in (rc.next_, rc.report, rc.cost):
        if cmd.name not in cli.commands:
            cli.add_command(cmd)
