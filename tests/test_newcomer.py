"""The newcomer path of issue 12, replayed end to end with real training: the first small sweep a
researcher makes (widths 32–96 × 5e4–2e5 tokens, cosine and WSD), and an imported Chinchilla
table. Every command ends in a result or a one-line error; no traceback, no internal error, and
no predicted number leaves without its trust and warnings."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import invoke

pytestmark = pytest.mark.slow

GRID = ["model.widths=[32,64,96]", "budget.tokens=[5e4,1e5,2e5]"]
LN_VOCAB = math.log(256)


def _clean(res, *, codes=(0,)):
    out = res.output + (res.stderr if res.stderr_bytes is not None else "")
    assert "Traceback" not in out and "internal error" not in out, out
    assert res.exit_code in codes, out
    if res.exit_code:
        errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, res.stderr
    return res


def _json(res):
    _clean(res)
    return json.loads(res.stdout)


def _trusted(pred: dict) -> None:
    """A predicted number travels with where it stands and why."""
    assert pred["trust"] in ("inside", "extrapolated", "outside")
    assert isinstance(pred["warnings"], list)
    if pred["trust"] != "inside":
        assert pred["warnings"], pred


@pytest.fixture(scope="module", params=["cosine", "wsd"])
def small(request, tmp_path_factory):
    from click.testing import CliRunner

    root = tmp_path_factory.mktemp(request.param) / "runs"
    runner = CliRunner()
    name = f"t1{request.param}"
    _clean(invoke(runner, ["plan", name, *GRID, f"train.schedule={request.param}"], root))
    _clean(invoke(runner, ["launch", name, "--no-progress"], root))
    return runner, root, name


def test_fit_recommend_next_on_a_first_sweep(small):
    runner, root, name = small
    fit = _json(invoke(runner, ["fit", name, "--json", "--at", "params=2e5,tokens=2e6"], root))
    assert fit["n_points"] == 9 and fit["warnings"]  # 1 decade of N: the fit says so
    for p in fit["predictions"]:
        _trusted(p)
    assert fit["predictions"][0]["trust"] != "inside"  # 10× the largest budget
    rec = _json(invoke(runner, ["recommend", name, "--compute", "1e13", "--json"], root))
    _trusted(rec)
    assert rec["trust"] != "inside" and math.isclose(rec["flops"], 1e13, rel_tol=1e-9)
    for bad in (["--loss", "10"], ["--loss", "0.5"], ["--compute", "100"]):
        _clean(invoke(runner, ["recommend", name, *bad], root), codes=(1, 2))
    nxt = _clean(invoke(runner, ["next", name, "--budget", "1e12", "--informative", "--json"],
                        root), codes=(0, 1))
    if nxt.exit_code == 0:
        for p in json.loads(nxt.stdout)["predictions"]:
            _trusted(p)
            assert p["predicted_loss"] < LN_VOCAB


def test_every_other_command_on_a_first_sweep(small, tmp_path):
    runner, root, name = small
    for args in (["status", name], ["list"], ["report", name, "--out", str(tmp_path / "r")],
                 ["compare", name, name, "--bootstrap", "50"], ["cost", name],
                 ["isoflop", name], ["kaplan", name], ["envelope", name],
                 ["learning-curve", name], ["downstream", name, "heldout_top1_acc"],
                 ["export", name, "--out", str(tmp_path / "x")]):
        _clean(invoke(runner, args, root), codes=(0, 1, 2))
    report = (tmp_path / "r" / "index.html").read_text()
    assert "warning" in report.lower()


def test_imported_chinchilla_twice(runner, root, shared_data):
    csv = str(shared_data / "chinchilla_hoffmann2022_epoch.csv")
    args = ["import", "chin", csv, "--map", "params=Model Size,flops=Training FLOP,loss=loss",
            "--params-convention", "total"]
    _clean(invoke(runner, args, root))
    _clean(invoke(runner, args, root))  # the same content again: a no-op
    fit = _json(invoke(runner, ["fit", "chin", "--json"], root))
    assert fit["n_points"] == 245
    st = _json(invoke(runner, ["status", "chin", "--json"], root))
    assert sum(i["rows"] for i in st["imported"]) == 245
    rec = _json(invoke(runner, ["recommend", "chin", "--compute", "5.76e23", "--json"], root))
    _trusted(rec)
    assert rec["model"] is None and rec["params"] > 1e10  # N and D only: no shape rule
    _clean(invoke(runner, ["report", "chin"], root))
