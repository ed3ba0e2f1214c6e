"""Tests of sweep.launch (a package, so its conftest does not shadow tests/conftest.py)."""
