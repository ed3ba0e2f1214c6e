"""Shared fixtures: a CLI runner, a fresh root per test, hostile names, the shared data dir."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

SHARED_DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# the tests' launchers share a core budget of their own, not a developer's running launches'
os.environ.setdefault("SWEEP_SLOTS_DIR", tempfile.mkdtemp(prefix="sweep-test-slots-"))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


WEIRD_NAMES = ["a'; touch PWNED", "../escape", "a/b", "with space", "", "-dash", "a" * 65,
               "$(touch PWNED)", "a;touch PWNED", ".hidden", "ok..dots"]


def invoke(runner: CliRunner, args: list[str], root: Path | None = None):
    """Run the real CLI in-process; returns the click Result (stdout and stderr separate)."""
    from sweep.cli import cli

    full = list(args) + (["--root", str(root)] if root is not None else [])
    return runner.invoke(cli, full, catch_exceptions=False)
