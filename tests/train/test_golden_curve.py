"""Golden seeded loss curve of the built-in trainer (torchtitan's tests/assets/losses style).

A tiny fixed run — width 32, depth 2, seq 64, batch 16, 60 steps, lr 3e-3, seed 0, 1 thread,
on the CPU, on a synthetic corpus made here from numpy's frozen legacy RandomState stream (not
the interpreter's standard library, which differs between Python versions) — must reproduce the
train and held-out losses stored in tests/golden/losses/cpu_w32.json. Any change to the model,
its init, the loop, the LR schedule, the optimizer, the clipping, the sampler or the data
pipeline moves these numbers and fails the test; then check the change was meant and regenerate:

    .venv/bin/python tests/train/test_golden_curve.py --write

Tolerance: REL_TOL = 1e-4 relative on every loss. Measured here (tests/train/test_golden_curve.py's
``curve``, 1 thread, this machine): the same run with 2 threads instead of 1 (other summation
orders in the matmul and reduction kernels, as another CPU's BLAS would have) moves the losses by
at most 1.1e-5 relative; behaviour changes move them 20-70x more than the tolerance: LR +1 %
4.8e-3, weight decay 0.11 instead of 0.1 2.8e-3, torch's tanh GELU instead of the exact one
2.3e-3, clipping at 0.5 instead of 1.0 6.8e-3 (the last is checked by
test_golden_curve_detects_a_behaviour_change).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from sweep import shapes
from sweep.records import DataSettings, PlannedRun, TrainSettings

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "losses" / "cpu_w32.json"
REL_TOL = 1e-4
WORDS = ("the of and to in is that for it as with was on be by at this had not are but from or "
         "have an they which one you were all we her she there would their will when who him "
         "been has more if no out so said what up its about into than them can only other new "
         "some could time these two may then do first any my now such like our over man me even "
         "most made after also did many before must through back years where much your way well "
         "down should because each just those people how too little state good very make world "
         "still own see men work long get here between both life being under never day same "
         "another know while last might us great old year off come since against go came right "
         "used take three").split()


def write_corpus(path: Path, n_words: int = 40_000) -> Path:
    """Sentences of words drawn with Zipf-like frequencies from a frozen stream (RandomState's
    stream is fixed across numpy versions); about 200 kB of text."""
    rs = np.random.RandomState(20240601)
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    ids = rs.choice(len(WORDS), size=n_words, p=p / p.sum())
    ends = rs.randint(0, 9, size=n_words) == 0
    text = " ".join(WORDS[i] + (".\n" if e else "") for i, e in zip(ids, ends))
    path.write_text(text)
    return path


def golden_run(corpus: Path) -> PlannedRun:
    width, depth, seq, batch, steps, vocab = 32, 2, 64, 16, 60, 256
    n = shapes.params_nonembed(width, depth)
    tokens = steps * batch * seq
    return PlannedRun(
        run_id="golden-w32", sweep="golden", width=width, depth=depth, heads=1, seq_len=seq,
        vocab=vocab, params=shapes.params_total(width, depth, vocab, seq), params_nonembed=n,
        tokens=tokens, flops_6nd=shapes.flops_6nd(n, tokens),
        flops_attn=shapes.flops_per_token(width, depth, seq) * tokens, steps=steps,
        batch_size=batch, batch_tokens=batch * seq, lr=3e-3, seed=0,
        train=TrainSettings(log_every=10, eval_points=4, eval_tokens=4096, device="cpu"),
        data=DataSettings(path=str(corpus)))


def curve(work: Path, threads: int = 1, **train_changes) -> list[dict]:
    """The golden run's points as {step, train_loss, eval_loss}, in ``work``."""
    from sweep.train.loop import train

    run = golden_run(write_corpus(work / "corpus.txt"))
    if train_changes:
        run = dataclasses.replace(run, train=dataclasses.replace(run.train, **train_changes))
    points: list = []
    train(run, points.append, cache_dir=work / "cache", threads=threads)
    return [{"step": p.step, "train_loss": p.train_loss, "eval_loss": p.eval_loss}
            for p in points]


def max_rel_diff(a: list[dict], b: list[dict]) -> float:
    assert [p["step"] for p in a] == [p["step"] for p in b]
    worst = 0.0
    for p, q in zip(a, b):
        for k in ("train_loss", "eval_loss"):
            assert (p[k] is None) == (q[k] is None), (p, q)
            if p[k] is not None:
                worst = max(worst, abs(p[k] - q[k]) / abs(q[k]))
    return worst


def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def test_golden_curve(tmp_path: Path) -> None:
    want = golden()
    run = golden_run(tmp_path / "corpus.txt").to_dict()
    keys = ("width", "depth", "heads", "seq_len", "batch_size", "steps", "lr", "seed")
    assert {k: want["run"][k] for k in keys} == {k: run[k] for k in keys}, \
        "the golden run's settings changed: regenerate the file"
    got = curve(tmp_path)
    assert max_rel_diff(got, want["points"]) <= REL_TOL, (got, want["points"])


def test_golden_curve_detects_a_behaviour_change(tmp_path: Path) -> None:
    """The tolerance is not so loose that a small change passes: clipping at 0.5 instead of 1.0
    (it binds on the first steps) is caught."""
    got = curve(tmp_path, grad_clip=0.5)
    assert max_rel_diff(got, golden()["points"]) > 10 * REL_TOL


def main(argv: list[str]) -> int:
    import tempfile

    from sweep.fsutil import atomic_write_json

    if argv != ["--write"]:
        print(f"usage: {sys.argv[0]} --write   (regenerates {GOLDEN})", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as d:
        run = golden_run(Path(d) / "corpus.txt")
        points = curve(Path(d))
    import torch

    atomic_write_json(GOLDEN, {
        "what": "seeded CPU loss curve of sweep.train.loop.train "
                "(tests/train/test_golden_curve.py)",
        "units": "nats/token", "threads": 1, "torch": torch.__version__,
        "numpy": np.__version__, "rel_tol": REL_TOL,
        "run": run.to_dict() | {"data": {"path": "<tmp>/corpus.txt (write_corpus)"}},
        "points": points})
    print(f"wrote {GOLDEN} ({len(points)} points)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main(sys.argv[1:]))
