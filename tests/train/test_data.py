"""Corpora: deterministic disjoint splits, caching, DataError, batches and the eval set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sweep.errors import DataError
from sweep.records import DataSettings
from sweep.train.data import BatchSampler, epochs, eval_set, is_heldout, load_corpus


def _text_dir(root: Path, n: int = 60) -> dict[str, bytes]:
    files = {}
    for i in range(n):
        rel = f"sub{i % 3}/f{i:03d}.txt"
        files[rel] = f"file {i}: ".encode() + bytes([65 + i % 26]) * (50 + i)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(files[rel])
    return files


def test_directory_split_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    files = _text_dir(tmp_path / "corpus")
    ds = DataSettings(path=str(tmp_path / "corpus"), heldout_frac=0.2)
    a = load_corpus(ds, tmp_path / "cache1")
    b = load_corpus(ds, tmp_path / "cache2")
    c = load_corpus(ds, tmp_path / "cache1")  # from the cache
    assert isinstance(c.train, np.memmap)
    for x in (b, c):
        assert np.array_equal(a.train, x.train) and np.array_equal(a.heldout, x.heldout)
    held = [r for r in sorted(files) if is_heldout(r, 0.2)]
    train = [r for r in sorted(files) if not is_heldout(r, 0.2)]
    assert held and train
    assert bytes(a.heldout) == b"".join(files[r] for r in held)
    assert bytes(a.train) == b"".join(files[r] for r in train)
    assert a.vocab == 256 and epochs(len(a.train) * 3, a) == 3.0


def test_single_file_splits_by_position(tmp_path: Path) -> None:
    text = bytes(range(256)) * 40
    (tmp_path / "t.txt").write_bytes(text)
    corpus = load_corpus(DataSettings(path=str(tmp_path / "t.txt"), heldout_frac=0.1), tmp_path)
    assert bytes(corpus.train) + bytes(corpus.heldout) == text
    assert len(corpus.heldout) == round(0.1 * len(text))


def test_cache_is_invalidated_when_a_file_changes(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_bytes(b"a" * 1000)
    ds = DataSettings(path=str(tmp_path / "t.txt"))
    assert bytes(load_corpus(ds, tmp_path / "c").train) == b"a" * 950
    (tmp_path / "t.txt").write_bytes(b"b" * 2000)
    assert bytes(load_corpus(ds, tmp_path / "c").train) == b"b" * 1900


def test_missing_or_empty_path_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope"):
        load_corpus(DataSettings(path=str(tmp_path / "nope")), tmp_path)
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        load_corpus(DataSettings(path=str(tmp_path / "empty.txt")), tmp_path)
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(DataError, match="emptydir"):
        load_corpus(DataSettings(path=str(tmp_path / "emptydir")), tmp_path)
    with pytest.raises(DataError, match="unknown built-in corpus"):
        load_corpus(DataSettings(name="nope"), tmp_path)


def test_stdlib_corpus(tmp_path: Path) -> None:
    corpus = load_corpus(DataSettings(), tmp_path)
    assert len(corpus.train) > 1_000_000 and len(corpus.heldout) > 100_000
    assert corpus.train.dtype == np.uint8
    assert b"def " in bytes(corpus.heldout[:100_000])


def test_batch_sampler_is_seeded_and_shifted() -> None:
    tokens = np.arange(5000, dtype=np.int64).astype(np.uint8)
    s1, s2, s3 = (BatchSampler(tokens, 4, 16, seed=s, chunk=3) for s in (0, 0, 1))
    for _ in range(7):  # crosses chunk boundaries
        (x1, y1), (x2, y2), (x3, _) = s1(), s2(), s3()
        assert x1.shape == y1.shape == (4, 16) and str(x1.dtype) == "torch.int64"
        assert (x1 == x2).all() and (y1 == y2).all()
        assert ((x1[:, 1:] == y1[:, :-1]).all() and ((x1 + 1) % 256 == y1).all())
    assert not (x1 == x3).all()


def test_eval_set_is_fixed() -> None:
    held = (np.arange(10_000) % 251).astype(np.uint8)
    x, y = eval_set(held, 32, 2048)
    x2, _ = eval_set(held, 32, 2048)
    assert x.shape == y.shape == (64, 32) and (x == x2).all()
    assert ((x + 1) % 251 == y).all()
    assert x[0, 0] == 0 and y[-1, -1] == held[-1]  # spread over the whole split
    with pytest.raises(DataError):
        eval_set(held[:20], 32, 2048)


def test_nanogpt_bin_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    d = tmp_path / "shakespeare"
    d.mkdir()
    train, val = rng.integers(0, 1000, 5000, dtype=np.uint16), rng.integers(0, 1200, 700,
                                                                            dtype=np.uint16)
    train.tofile(d / "train.bin")
    val.tofile(d / "val.bin")
    c = load_corpus(DataSettings(path=str(d / "train.bin")), tmp_path / "cache")
    assert np.array_equal(c.train, train) and np.array_equal(c.heldout, val)
    assert c.vocab == int(max(train.max(), val.max())) + 1 and not c.byte_level
    assert isinstance(c.train, np.memmap) and not (tmp_path / "cache").exists()  # no copy

    train.tofile(tmp_path / "all.bin")  # any other name: split by position
    c = load_corpus(DataSettings(path=str(tmp_path / "all.bin"), heldout_frac=0.1))
    assert np.array_equal(c.train, train[:4500]) and np.array_equal(c.heldout, train[4500:])
    x, y = BatchSampler(c.train, 4, 16, seed=0)()
    assert x.dtype == y.dtype == __import__("torch").int64 and int(x.max()) < 1000

    (tmp_path / "odd.bin").write_bytes(b"abc")
    with pytest.raises(DataError, match="not a uint16 token file"):
        load_corpus(DataSettings(path=str(tmp_path / "odd.bin")))
    with pytest.raises(DataError, match="cannot read token file"):
        load_corpus(DataSettings(path=str(tmp_path / "missing.bin")))
