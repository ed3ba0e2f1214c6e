"""Parameter (total ↔ non-embedding) and FLOP (6ND ↔ +attention) conventions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from sweep.cli import cli
from sweep.errors import DataError
from sweep.fit.conventions import Assumptions, convert, load_shapes, match_shapes
from sweep.shapes import flops_per_token, params_nonembed, params_total

DATA = (Path(__file__).parents[2] / "../shared/data").resolve()
CHIN = DATA / "chinchilla_hoffmann2022_epoch.csv"
SHAPES = DATA / "chinchilla_tableA9_model_shapes.csv"


def test_matches_our_own_model_shapes() -> None:
    """sweep's own models (tied embedding, learned positions): the conversion reproduces
    sweep.shapes' counts and its FLOPs(+attn) per token exactly."""
    w, depth, vocab, seq = np.array([64, 128, 256]), np.array([2, 4, 6]), 256, 128
    total = [params_total(a, b, vocab, seq) for a, b in zip(w, depth, strict=True)]
    df = pd.DataFrame({"params": total, "tokens": 1e6, "loss": 2.0})
    shape = pd.DataFrame({"d_model": w, "n_layer": depth})
    out = convert(df, shape, Assumptions("total", "nonembed", "attn", vocab, True, seq, seq))
    assert out["params_nonembed"].tolist() == [params_nonembed(a, b) for a, b in zip(w, depth)]
    per_token = [flops_per_token(a, b, seq) for a, b in zip(w, depth, strict=True)]
    assert np.allclose(out["flops"] / 1e6, per_token, rtol=1e-12)
    assert np.allclose(out["flops_6nd"], 6 * out["params_nonembed"] * 1e6)


@settings(max_examples=20, deadline=None)
@given(n=st.floats(1e7, 1e11), d=st.integers(256, 8192), vocab=st.integers(256, 256000),
       tied=st.booleans())
def test_round_trip(n: float, d: int, vocab: int, tied: bool) -> None:
    emb = vocab * d * (1 if tied else 2)
    df = pd.DataFrame({"params": [n + emb], "tokens": [1e9], "loss": [2.0]})
    shape = pd.DataFrame({"d_model": [d], "n_layer": [8]})
    ne = convert(df, shape, Assumptions("total", "nonembed", "6nd", vocab, tied))
    assert ne["params"].iloc[0] == pytest.approx(n, rel=1e-9)
    back = convert(ne[["params", "tokens", "loss"]], shape,
                   Assumptions("nonembed", "total", "6nd", vocab, tied))
    assert back["params"].iloc[0] == pytest.approx(n + emb, rel=1e-12)


def test_chinchilla_shapes_match_every_row() -> None:
    d = pd.read_csv(CHIN)
    s = match_shapes(d["Model Size"].to_numpy(), load_shapes(SHAPES))
    assert len(s) == 245 and set(s.columns) == {"d_model", "n_layer"}
    with pytest.raises(DataError, match="data row 2"):
        match_shapes(np.array([4.4e7, 1e13]), load_shapes(SHAPES))
    with pytest.raises(DataError, match="needs model shapes"):
        convert(d.rename(columns={"Model Size": "params"}).assign(tokens=1e9, loss=2.0), None,
                Assumptions("total", "nonembed", "6nd", 32000))


def test_cli_convert_chinchilla(tmp_path: Path) -> None:
    out = tmp_path / "ne.csv"
    base = ["convert", str(CHIN), "--map", "params=Model Size,flops=Training FLOP"]
    r = CliRunner().invoke(cli, [*base, "--shapes", str(SHAPES), "--vocab", "32000",
                                 "--seq-len", "2048", "--flops", "attn", "-o", str(out),
                                 "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["rows"] == 245 and "32000" in d["conventions"]["embeddings"]
    lo, hi = d["ratios"]["params_nonembed/params_total"]
    assert 0.6 < lo < hi < 1.0  # embeddings are a third of the smallest models, ~1 % of 16B
    assert 1.0 < d["ratios"]["flops_attn/flops_6nd"][0]
    conv = pd.read_csv(out)
    assert np.allclose(conv["params_total"] - conv["params_nonembed"], 32000 * conv["d_model"])
    assert np.allclose(conv["flops"], conv["flops_attn"])
    r = CliRunner().invoke(cli, ["fit", "--data", str(out), "--bootstrap", "0", "--json"])
    assert r.exit_code == 0, r.output
    for bad in (["--vocab", "32000"], ["--d-model", "512", "--vocab", "32000"],
                ["--flops", "attn", "--d-model", "512", "--n-layer", "8"],
                ["--shapes", str(tmp_path / "none.csv")]):
        r = CliRunner().invoke(cli, [*base, *bad])
        assert r.exit_code == 2 and "Traceback" not in r.output, bad
        assert len(r.stderr.strip().splitlines()) == 1
