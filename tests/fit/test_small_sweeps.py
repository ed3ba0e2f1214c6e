"""The small sweeps a newcomer makes (issue 12): every law on the 9-run t1 sweep (widths 32-96 x
5e4-2e5 tokens) and a 20-point synthetic one fits without an exception, a numpy warning or a
non-finite number; bootstrap refits that do not converge are counted and left out; the trust
region says what the points identify; wild bootstrap draws are flagged, not reported as an
interval."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from sweep.errors import FitError
from sweep.fit import chinchilla, fit_chinchilla
from sweep.fit.compare import compare
from sweep.fit.downstream import fit_downstream
from sweep.fit.envelope import fit_envelope
from sweep.fit.kaplan import fit_kaplan
from sweep.fit.learning_curve import fit_learning_curve
from sweep.records import Fit

# t1: sweep of the issue, final losses (nats/token) of width x tokens, params_nonembed as N
T1_N = [24736, 98624, 221664]
T1_D = [50176, 100352, 199680]
T1_LOSS = [[2.997433513402939, 2.784292556345463, 2.585769757628441],
           [3.0058849081397057, 2.867170311510563, 2.4224396273493767],
           [2.861789271235466, 2.621280662715435, 2.3012982569634914]]
BATCH = 1024  # tokens per optimizer step (seq 64 x 16)
LN_VOCAB = math.log(256)


def t1_points() -> pd.DataFrame:
    n, d = np.meshgrid(T1_N, T1_D, indexing="ij")
    return pd.DataFrame({"params": n.ravel().astype(float), "tokens": d.ravel().astype(float),
                         "loss": np.ravel(T1_LOSS)})


def t1_curves(seed: int = 0) -> pd.DataFrame:
    """Plausible training curves ending at t1's final losses: L(s) = L_end (S/s)^0.2, capped at
    ln(256), 1 % noise, a point every 10 steps."""
    rng = np.random.default_rng(seed)
    rows = []
    for n, d, end in t1_points().itertuples(index=False):
        steps = int(d // BATCH)
        s = np.unique(np.r_[np.arange(10, steps, 10), steps]).astype(float)
        loss = np.minimum(LN_VOCAB, end * (steps / s) ** 0.2) * np.exp(rng.normal(0, 0.01, s.size))
        loss[-1] = end
        rows.append(pd.DataFrame({"run_id": f"n{n:.0f}-d{d:.0f}", "params": n,
                                  "batch_tokens": float(BATCH), "steps": s, "tokens": s * BATCH,
                                  "flops": 6 * n * s * BATCH, "loss": loss}))
    return pd.concat(rows, ignore_index=True)


def synthetic_20(seed: int = 0) -> pd.DataFrame:
    """4 widths x 5 budgets at t1's scale from L = 1.5 + 20/N^0.3 + 40/D^0.35 (2.3-3.4 nats/token),
    1 % noise."""
    n, d = np.meshgrid(np.geomspace(2.5e4, 4e5, 4), np.geomspace(5e4, 8e5, 5), indexing="ij")
    n, d = n.ravel(), d.ravel()
    loss = (1.5 + 20 / n**0.3 + 40 / d**0.35) * np.exp(
        np.random.default_rng(seed).normal(0, 0.01, n.size))
    return pd.DataFrame({"params": n, "tokens": d, "loss": loss})


@pytest.fixture
def strict():
    """Any warning (numpy overflow, RuntimeWarning, ...) is an error inside the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.fixture(scope="module")
def t1_fit() -> Fit:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fit_chinchilla(t1_points(), bootstrap=1000, seed=0, max_loss=LN_VOCAB,
                              min_tokens=BATCH, at=[(1e6, 1e7)])


def finite(obj) -> bool:
    """Every number in a nested dict/list is finite (None allowed)."""
    if isinstance(obj, dict):
        return all(finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(finite(v) for v in obj)
    if isinstance(obj, float):
        return math.isfinite(obj)
    return True


def test_t1_bootstrap_counted_and_dropped(t1_fit: Fit) -> None:
    boot = t1_fit.bootstrap
    assert boot is not None and boot["resamples"] == 1000
    k = boot["not_converged"]
    assert t1_fit.samples.shape == (1000 - k, 5)
    msg = [w for w in t1_fit.warnings if "bootstrap refits did not converge" in w]
    assert (k > 0) == bool(msg)
    if k:
        assert msg[0].startswith(f"{k} of 1000 bootstrap refits") and "left out" in msg[0]
    assert k <= 50  # 5 %: the Newton polish converges on almost every resample
    # the intervals are the percentiles of exactly the converged samples
    q = np.percentile(t1_fit.samples, [2.5, 97.5], axis=0)
    for i, key in enumerate(chinchilla.KEYS):
        assert t1_fit.ci95[key] == pytest.approx(list(q[:, i]), rel=1e-12)
    d = t1_fit.to_dict()
    assert d["bootstrap"] == boot and finite(d["params"]) and finite(d["ci95"])
    assert Fit.from_state(t1_fit.to_state()).bootstrap == boot


def test_t1_trust_region(t1_fit: Fit) -> None:
    tr = t1_fit.trust
    assert tr is not None
    assert tr.params == (24736.0, 221664.0) and tr.tokens == (50176.0, 199680.0)
    assert tr.flops == pytest.approx((6 * 24736 * 50176, 6 * 221664 * 199680))
    assert tr.loss == (min(np.ravel(T1_LOSS)), max(np.ravel(T1_LOSS)))
    assert tr.max_loss == LN_VOCAB and tr.min_tokens == BATCH
    assert tr.floor == t1_fit.params["E"]
    # 9 points over < 1 decade: E falls to its floor, the exponents are not pinned down
    assert tr.identified["E"] is False
    assert set(tr.identified) == {"E", "A", "B", "alpha", "beta"}
    assert not all(tr.identified.values())
    assert tr.validation_error == t1_fit.validation["mean_abs_rel_error"] > 0
    assert tr.warnings == tuple(t1_fit.warnings)
    assert any("E is not identified" in w for w in tr.warnings)


def test_t1_predictions_flag_unbounded_intervals(t1_fit: Fit, strict: None) -> None:
    inside = t1_fit.predict(98624.0, 100352.0)
    assert inside.trust == "inside" and inside.loss_lo95 <= inside.loss <= inside.loss_hi95
    # far below the data (recommend --loss 10 asked for 1 FLOP): the law says nothing there
    far = t1_fit.predict(2.0, 1e-2)
    assert far.trust == "outside"
    assert math.isfinite(far.loss_hi95) and far.loss_hi95 <= max(LN_VOCAB, far.loss)
    assert any(w.startswith("interval unbounded") for w in far.warnings)
    (pred,) = t1_fit.predictions
    assert pred.trust in ("extrapolated", "outside") and pred.extrapolation > 1
    assert finite(pred.to_dict())


def test_wild_draws_are_flagged_not_reported(strict: None) -> None:
    """A bootstrap draw with E unidentified can give 5.9e48 (or overflow): the interval's upper
    end is then clipped to ln(vocab) with the prediction 'outside', or flagged when > 10x."""
    base = fit_chinchilla(synthetic_20(), bootstrap=0, validate=False, max_loss=LN_VOCAB)
    p = base.params
    good = np.array([[p["E"], p["A"], p["B"], p["alpha"], p["beta"]]] * 95)
    wild = np.array([[0.0, 1e308, 1e308, 1e-4, 1e-4]] * 5)  # A/N^a + B/D^b overflows
    base.samples = np.vstack([good, wild])
    inside = base.predict(1e5, 1e5)  # inside the data's box: only the interval is wrong
    assert inside.trust == "outside" and inside.loss_hi95 == LN_VOCAB > inside.loss
    assert any(w.startswith("interval unbounded") and "reported as ln(vocab)" in w
               for w in inside.warnings)
    loose = dataclass_replace_trust(base, max_loss=None).predict(1e5, 1e5)
    assert loose.trust == "outside" and math.isfinite(loose.loss_hi95)
    assert loose.loss_hi95 == pytest.approx(inside.loss)  # the largest finite draw
    assert any("not finite" in w for w in loose.warnings)
    base.samples = np.vstack([good, np.array([[0.0, 1e6, 1e6, 0.3, 0.3]] * 5)])
    wide = dataclass_replace_trust(base, max_loss=None).predict(1e5, 1e5)
    assert wide.trust == "inside" and wide.loss_hi95 > 10 * wide.loss  # reported, but flagged
    assert any("more than 10x" in w for w in wide.warnings)


def dataclass_replace_trust(fit: Fit, **kw) -> Fit:
    import dataclasses

    return dataclasses.replace(fit, trust=dataclasses.replace(fit.trust, **kw))


def test_not_converged_refits_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """With 3 Newton steps most refits cannot converge: each is counted, warned about and left
    out of the samples and intervals (not silently kept at its last iterate)."""
    monkeypatch.setattr(chinchilla, "BOOT_ITERS", 3)
    fit = fit_chinchilla(synthetic_20(), bootstrap=200, validate=False)
    k = fit.bootstrap["not_converged"]
    assert k > 0 and len(fit.samples) == 200 - k
    assert any(w.startswith(f"{k} of 200 bootstrap refits did not converge")
               for w in fit.warnings)


def test_synthetic_20_converges_and_is_identified(strict: None) -> None:
    fit = fit_chinchilla(synthetic_20(), bootstrap=1000, seed=1)
    assert fit.bootstrap == {"resamples": 1000, "not_converged": fit.bootstrap["not_converged"]}
    assert fit.bootstrap["not_converged"] <= 10
    assert fit.validation is not None and "bootstrap" in fit.validation
    assert finite(fit.to_dict())


@pytest.mark.parametrize("variable", ["N", "D", "C"])
@pytest.mark.parametrize("irreducible", [True, False])
def test_kaplan_on_t1(variable: str, irreducible: bool, strict: None) -> None:
    pts = t1_points().assign(flops=lambda d: 6 * d["params"] * d["tokens"])
    if irreducible and variable != "C":  # 3 distinct N (D): a floor needs 4, says so
        with pytest.raises(FitError, match="needs at least 4 distinct"):
            fit_kaplan(pts, variable, irreducible=irreducible, bootstrap=200)
        return
    fit = fit_kaplan(pts, variable, irreducible=irreducible, bootstrap=200)
    d = fit.to_dict()
    assert math.isfinite(d["alpha"]) and math.isfinite(d["E"]) and math.isfinite(d["objective"])
    assert np.all(np.isfinite(fit.loss(pts[{"N": "params", "D": "tokens",
                                             "C": "flops"}[variable]])))


def test_compare_on_t1(t1_fit: Fit, strict: None) -> None:
    other = fit_chinchilla(t1_points().assign(loss=lambda d: d["loss"] * 0.97), bootstrap=200)
    cmp = compare(t1_fit, other, [1e10, 1e12, 1e15, 1e20])
    d = cmp.to_dict()
    assert finite(d["loss_a"]) and finite(d["loss_b"])
    for key in ("multiplier", "multiplier_lo95", "multiplier_hi95"):
        assert all(v is None or (v == v and v > 0) for v in d[key])  # no nan; 1e300 = never


def test_learning_curve_on_t1(strict: None) -> None:
    fit = fit_learning_curve(t1_curves(), predict=[(1e6, None, 1000)])  # default bootstrap
    d = fit.to_dict()
    assert finite(d["params"]) and finite(d["ci95"]) and math.isfinite(d["rmse_log"])
    (pred,) = d["predictions"]
    assert finite(pred["loss"]) and finite(pred["loss_lo95"]) and finite(pred["loss_hi95"])


def test_envelope_on_t1(strict: None) -> None:
    fit = fit_envelope(t1_curves()[["run_id", "params", "tokens", "flops", "loss"]])
    d = fit.to_dict()
    assert finite(d["allocation"]) and finite(d["ci95"]) and finite(d["envelope"])


@pytest.mark.parametrize(("form", "against"), [("sigmoid", "loss"), ("sigmoid", "flops"),
                                               ("power", "loss"), ("power", "flops")])
def test_downstream_on_t1(form: str, against: str, strict: None) -> None:
    pts = t1_points()
    loss = pts["loss"].to_numpy()
    acc = 0.05 + 0.3 / (1 + np.exp(4 * (loss - 2.6)))  # plausible top-1 accuracy
    x = loss if against == "loss" else 6 * pts["params"].to_numpy() * pts["tokens"].to_numpy()
    at = [2.0, 1.5] if against == "loss" else [1e13, 1e15]
    fit = fit_downstream(x, acc, metric="top1", against=against, form=form, at=at)
    d = fit.to_dict()
    assert finite(d["params"]) and math.isfinite(d["rmse"])
    assert all(math.isfinite(p["value"]) for p in d["predictions"])
