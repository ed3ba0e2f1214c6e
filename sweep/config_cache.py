"""A cache of composed configs: Hydra's compose costs ~0.45 s of every command, and the same
overrides over the same conf/ files always compose to the same config.

Key: sha256 of the overrides, every file under conf/ (path and bytes), the schema module's
source and Hydra's version, so editing a YAML file, the schema or Hydra composes afresh. Value:
the composed SweepConfig as JSON (``dataclasses.asdict``), rebuilt field by field. Only configs
that composed and validated are stored; an unreadable or stale entry is ignored (and
overwritten), never trusted. Location: ``$SWEEP_CACHE/config`` (default ~/.cache/sweep/config).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sweep import conf_schema
from sweep.conf_schema import SweepConfig
from sweep.fsutil import atomic_write_json

VERSION = 1


def cache_dir() -> Path:
    return Path(os.environ.get("SWEEP_CACHE") or Path.home() / ".cache" / "sweep") / "config"


def key(conf: Path, overrides: Sequence[str]) -> str:
    """The cache key of composing ``conf`` with ``overrides`` (see the module docstring)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        hydra = version("hydra-core")
    except PackageNotFoundError:
        hydra = "?"
    h = hashlib.sha256(json.dumps([VERSION, list(overrides), hydra]).encode())
    for p in sorted(q for q in conf.rglob("*") if q.is_file()):
        h.update(p.relative_to(conf).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    h.update(Path(conf_schema.__file__).read_bytes())
    return h.hexdigest()


def _build(cls: Any, value: Any) -> Any:
    """``value`` (JSON) as an instance of the annotated type ``cls``."""
    origin = typing.get_origin(cls)
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        if not isinstance(value, dict) or set(value) - set(hints):
            raise ValueError(f"bad {cls.__name__} entry")
        return cls(**{k: _build(hints[k], v) for k, v in value.items()})
    if origin in (list, typing.List):  # noqa: UP006 (the schema spells List for OmegaConf)
        if not isinstance(value, list):
            raise ValueError("expected a list")
        (arg,) = typing.get_args(cls)
        return [_build(arg, v) for v in value]
    if origin is typing.Union:
        args = typing.get_args(cls)
        if value is None and type(None) in args:
            return None
        return _build(next(a for a in args if a is not type(None)), value)
    if cls is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if cls in (int, float, str, bool) and type(value) is not cls:
        raise ValueError(f"expected {cls.__name__}, got {value!r}")
    return value


def get(k: str) -> SweepConfig | None:
    """The cached config under key ``k``, or None (missing, unreadable, or another schema)."""
    try:
        obj = _build(SweepConfig, json.loads((cache_dir() / f"{k}.json").read_text()))
    except (OSError, ValueError, TypeError, KeyError, StopIteration):
        return None
    return obj if isinstance(obj, SweepConfig) else None


def put(k: str, cfg: SweepConfig) -> None:
    """Store ``cfg`` under ``k``; a cache that cannot be written is skipped silently."""
    try:
        atomic_write_json(cache_dir() / f"{k}.json", dataclasses.asdict(cfg))
    except OSError:
        pass
