"""Byte-level corpora (vocab 256), a deterministic train/held-out split, batches and an eval set.

Tokens are raw bytes (uint8 → int64 ids). The built-in corpus is the running interpreter's
standard-library ``.py`` sources; ``DataSettings.path`` names a text file or a directory of text
files instead. Files are held out by a stable hash of their relative path (a single file is split
by position: its last ``heldout_frac`` is held out). Both splits are cached as ``.npy`` files so
worker processes memory-map them instead of re-reading the sources.

A ``.bin`` path is a pre-tokenized corpus in nanoGPT's format (uint16 token ids, no header),
memory-mapped as is: ``train.bin`` next to a ``val.bin`` uses that as the held-out split, any
other ``.bin`` is split by position. Its vocab is the largest id + 1 (the model's
``model.vocab`` must be at least that); its tokens are not bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sweep.errors import DataError
from sweep.fsutil import atomic_write_bytes
from sweep.records import DataSettings

logger = logging.getLogger(__name__)

VOCAB = 256
_CACHE_VERSION = 1
_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__"}


@dataclass(frozen=True)
class Corpus:
    """Token arrays (uint8, one token per byte) of the two splits; ``source`` names the origin."""

    train: np.ndarray
    heldout: np.ndarray
    source: str
    vocab: int = VOCAB
    byte_level: bool = True  # one token per byte (then bits/byte = nats/token / ln 2)


def default_cache_dir() -> Path:
    """``$SWEEP_CACHE`` if set, else ``~/.cache/sweep``."""
    return Path(os.environ.get("SWEEP_CACHE") or Path.home() / ".cache" / "sweep")


def _list_files(root: Path, stdlib: bool) -> list[Path]:
    """Files under ``root``, sorted by relative path; stdlib: ``*.py`` outside site-packages."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.startswith(".")]
        for f in filenames:
            if (f.endswith(".py") if stdlib else not f.startswith(".")):
                out.append(Path(dirpath, f))
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def is_heldout(relpath: str, frac: float) -> bool:
    """Stable file-level split: the first 8 bytes of sha1(relpath) as a uniform number < frac."""
    h = int.from_bytes(hashlib.sha1(relpath.encode()).digest()[:8], "big")
    return h / 2.0**64 < frac


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None


def _build(root: Path, files: list[Path], single: bool, frac: float
           ) -> tuple[np.ndarray, np.ndarray]:
    if single:
        data = np.frombuffer(_read(root), dtype=np.uint8)
        cut = int(round(len(data) * (1.0 - frac)))
        return data[:cut].copy(), data[cut:].copy()
    parts: dict[bool, list[bytes]] = {False: [], True: []}
    for f in files:
        parts[is_heldout(f.relative_to(root).as_posix(), frac)].append(_read(f))
    train, held = b"".join(parts[False]), b"".join(parts[True])
    if not held or not train:  # too few files for a file-level split: split by position
        data = np.frombuffer(train + held, dtype=np.uint8)
        cut = int(round(len(data) * (1.0 - frac)))
        return data[:cut].copy(), data[cut:].copy()
    return np.frombuffer(train, dtype=np.uint8), np.frombuffer(held, dtype=np.uint8)


def _save_atomic(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr)
    atomic_write_bytes(path, buf.getbuffer())
    os.chmod(path, 0o644)  # a shared cache: readable by every user's workers


def _token_file(path: Path) -> np.ndarray:
    """A nanoGPT ``.bin``: uint16 token ids, memory-mapped."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DataError(f"cannot read token file {path}: {e.strerror}") from None
    if size == 0 or size % 2:
        raise DataError(f"{path} is not a uint16 token file ({size} bytes; nanoGPT's .bin "
                        "format holds 2 bytes per token)")
    return np.memmap(path, dtype=np.uint16, mode="r")


def _load_bin(path: Path, frac: float) -> Corpus:
    tokens = _token_file(path)
    val = path.with_name("val.bin")
    if path.name == "train.bin" and val.is_file():
        train, held = tokens, _token_file(val)
    else:
        cut = int(round(len(tokens) * (1.0 - frac)))
        train, held = tokens[:cut], tokens[cut:]
    vocab = 1 + max(int(a.max()) for a in (train, held) if len(a))
    logger.info("token file %s: %d train / %d held-out tokens, vocab %d", path, len(train),
                len(held), vocab)
    return Corpus(train, held, str(path), vocab=vocab, byte_level=False)


def load_corpus(data: DataSettings, cache_dir: str | os.PathLike[str] | None = None) -> Corpus:
    """Load (or build and cache) the train/held-out token arrays described by ``data``."""
    if data.path is not None and data.path.endswith(".bin") and not Path(data.path).is_dir():
        return _checked(_load_bin(Path(data.path).expanduser().resolve(), data.heldout_frac))
    if data.path is None:
        if data.name != "stdlib":
            raise DataError(f"unknown built-in corpus {data.name!r} (only 'stdlib'; or set "
                            "data.path)")
        root, stdlib = Path(sysconfig.get_paths()["stdlib"]), True
    else:
        root, stdlib = Path(data.path).expanduser().resolve(), False
    if not root.exists():
        raise DataError(f"corpus path {root} does not exist")
    single = root.is_file()
    files = [root] if single else _list_files(root, stdlib)
    try:
        stats = [(f.relative_to(root).as_posix(), f.stat().st_size, f.stat().st_mtime_ns)
                 for f in files]
    except OSError as e:
        raise DataError(f"cannot read {e.filename}: {e.strerror}") from None
    if sum(s[1] for s in stats) == 0:
        raise DataError(f"corpus path {root} is empty (no data in {len(files)} files)")
    key = hashlib.sha1(json.dumps([_CACHE_VERSION, str(root), stdlib, data.heldout_frac, stats])
                       .encode()).hexdigest()[:16]
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    kind = "stdlib" if stdlib else "corpus"
    paths = {s: cache / f"{kind}-{key}.{s}.npy" for s in ("train", "heldout")}
    try:
        arrays = {s: np.load(p, mmap_mode="r") for s, p in paths.items()}
        logger.debug("corpus %s loaded from cache %s", root, cache)
    except (OSError, ValueError):
        train, held = _build(root, files, single, data.heldout_frac)
        arrays = {"train": train, "heldout": held}
        try:
            cache.mkdir(parents=True, exist_ok=True)
            for s, p in paths.items():
                _save_atomic(p, arrays[s])
        except OSError as e:
            logger.warning("could not cache corpus in %s: %s", cache, e)
        logger.info("corpus %s: %d files, %d train / %d held-out bytes", root, len(files),
                    len(train), len(held))
    return _checked(Corpus(arrays["train"], arrays["heldout"], str(root)))


def _checked(corpus: Corpus) -> Corpus:
    if len(corpus.heldout) < 2 or len(corpus.train) < 2:
        unit = "bytes" if corpus.byte_level else "tokens"
        raise DataError(f"corpus path {corpus.source} is too small to split "
                        f"({len(corpus.train)} train, {len(corpus.heldout)} held-out {unit})")
    return corpus


def epochs(tokens: int, corpus: Corpus) -> float:
    """Passes over the training split that ``tokens`` training tokens amount to."""
    return tokens / len(corpus.train)


class BatchSampler:
    """Random windows from ``tokens`` (seeded numpy Generator), drawn ``chunk`` steps at a time;
    ``pin``: the chunk lives in pinned host memory (for non-blocking copies to a GPU).

    Each call returns (x, y): int64 tensors of shape (batch_size, seq_len), y shifted by one.
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, seed: int,
                 chunk: int = 64, pin: bool = False) -> None:
        if len(tokens) < seq_len + 1:
            raise DataError(f"training split has {len(tokens)} tokens, fewer than seq_len+1 "
                            f"= {seq_len + 1}")
        self.tokens, self.batch_size, self.seq_len, self.chunk = tokens, batch_size, seq_len, chunk
        self.pin = pin
        self.rng = np.random.default_rng(seed)
        self._x = self._y = torch.empty(0)
        self._i = chunk
        self._refill_state = self.rng.bit_generator.state  # the generator before the last refill

    def state_dict(self) -> dict:
        """The data position: the generator state before the current chunk and the index in it
        (plain Python values; the chunk itself is re-drawn on load). With the chunk used up, the
        generator's current state (the next refill starts from it)."""
        rng = self._refill_state if self._i < self.chunk else self.rng.bit_generator.state
        return {"rng": rng, "i": self._i, "chunk": self.chunk}

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where the sampler that made ``state`` stood."""
        if state["chunk"] != self.chunk:
            raise DataError(f"sampler state has chunk {state['chunk']}, this sampler {self.chunk}")
        self.rng.bit_generator.state = state["rng"]
        self._refill_state = state["rng"]
        if state["i"] < self.chunk:
            self._refill()
        self._i = state["i"]

    def _refill(self) -> None:
        self._refill_state = self.rng.bit_generator.state
        hi = len(self.tokens) - self.seq_len  # exclusive upper bound of window starts
        starts = self.rng.integers(0, hi, size=(self.chunk, self.batch_size))
        w = torch.from_numpy(self.tokens[starts[..., None] + np.arange(self.seq_len + 1)]
                             .astype(np.int64))
        self._x, self._y = w[..., :-1].contiguous(), w[..., 1:].contiguous()
        if self.pin:  # page-locked: batches copy to the GPU without blocking (CUDA only)
            self._x, self._y = self._x.pin_memory(), self._y.pin_memory()
        self._i = 0

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._i == self.chunk:
            self._refill()
        i = self._i
        self._i += 1
        return self._x[i], self._y[i]


def eval_set(heldout: np.ndarray, seq_len: int, eval_tokens: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed evaluation windows: ``eval_tokens // seq_len`` windows spread evenly over the held-out
    split (overlapping only if it is shorter than ``eval_tokens``); (x, y) int64, (n, seq_len).

    Depends only on the split, ``seq_len`` and ``eval_tokens``: the same for every run of a sweep.
    """
    last = len(heldout) - seq_len - 1  # largest window start
    if last < 0:
        raise DataError(f"held-out split has {len(heldout)} tokens, fewer than seq_len+1 "
                        f"= {seq_len + 1}")
    n = max(1, eval_tokens // seq_len)
    starts = np.unique(np.linspace(0, last, n).round().astype(np.int64))
    w = torch.from_numpy(np.asarray(heldout)[starts[:, None] + np.arange(seq_len + 1)]
                         .astype(np.int64))
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()
