"""The most informative next run: the candidate whose result would most narrow the bootstrap
interval of the predicted loss at a target compute (expected-variance reduction).

Deliberately simple. For each candidate run (N, D) within the study budget:
  1. pretend it was trained and measured L_hat(N, D) · exp(sigma · z), where sigma is the fit's
     residual spread (std of ln L - ln L_hat over the sweep's points) and z a few fixed
     standard-normal draws (the same for every candidate: common random numbers);
  2. refit with a bootstrap of B resamples (same seed for every candidate) and take the variance
     of the predicted loss at the target's compute-optimal (N*, D*) across the resamples;
  3. compare with the same-B, same-seed refit without the extra point.
The bootstrap variance itself has a relative noise of about sqrt(2/B) (B = 60: ±18 %), so small
differences between candidates mean nothing; the text says so. Candidates whose own prediction
is outside the fit's trust region (above ln(vocab), N below the smallest fitted model, fewer
tokens than one batch) are left out. Each candidate says which parameter of the law it pins down
most (largest drop of that parameter's bootstrap sd; ln A and ln B for A and B).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sweep import shapes
from sweep.config import SweepConfig
from sweep.errors import ConfigError
from sweep.fit.chinchilla import compute_optimal, fit_chinchilla
from sweep.plan import make_run
from sweep.recommend import fit_params, shape_rule
from sweep.records import Fit, PlannedRun

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    run: PlannedRun
    params: float  # N in the fit's convention
    flops: float  # 6ND, N in the fit's convention
    predicted_loss: float
    var_after: float  # expected bootstrap variance of the target prediction with this run
    reduction: float  # var_before - var_after (nats²)
    width_after: float  # expected 95 % interval width at the target (nats/token)
    why: str = ""  # which parameter it pins down most, e.g. "pins down beta (sd -35 %)"


@dataclass(frozen=True)
class InformativeResult:
    target_compute: float
    target_params: float
    target_tokens: float
    var_before: float
    width_before: float
    sigma: float  # residual spread of ln L
    bootstrap: int
    candidates: list[Candidate]  # sorted, most informative first
    skipped: tuple[str, ...] = ()  # candidates left out: outside the fit's trust region, why

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


def residual_sigma(fit: Fit, pts: pd.DataFrame) -> float:
    """Standard deviation of ln L - ln L_hat over the fitted points."""
    r = [math.log(l) - math.log(fit.loss(n, d))
         for n, d, l in zip(pts["params"], pts["tokens"], pts["loss"], strict=True)]
    return float(np.std(r, ddof=1)) if len(r) > 1 else 0.0


def _target_var(fit: Fit, n: float, d: float) -> tuple[float, float]:
    s = np.asarray(fit.samples)
    draws = s[:, 0] + s[:, 1] / n ** s[:, 3] + s[:, 2] / d ** s[:, 4]
    draws = draws[np.isfinite(draws)]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(np.var(draws)), float(hi - lo)


PARAMS = ("E", "A", "B", "alpha", "beta")


def _param_sd(fit: Fit) -> np.ndarray:
    """Bootstrap sd of E, ln A, ln B, alpha, beta."""
    s = np.array(fit.samples, dtype=float)
    with np.errstate(all="ignore"):
        s[:, 1:3] = np.log(s[:, 1:3])
    s = s[np.isfinite(s).all(axis=1)]
    return np.std(s, axis=0) if len(s) > 1 else np.full(5, np.nan)


def _pins(before: np.ndarray, after: np.ndarray) -> str:
    with np.errstate(all="ignore"):
        drop = 1.0 - after / before
    drop = np.where(np.isfinite(drop), drop, -np.inf)
    i = int(np.argmax(drop))
    if not np.isfinite(drop[i]) or drop[i] <= 0:
        return "pins down no single parameter more"
    return f"pins down {PARAMS[i]} most (its bootstrap sd {-drop[i]:+.0%})"


def candidates(fit: Fit, cfg: SweepConfig, sweep: str, budget: float,
               fractions: Sequence[float] = (1.0, 0.3, 0.1),
               size_factors: Sequence[float] = (1 / 3, 1.0, 3.0), exclude: Sequence[str] = ()
               ) -> list[PlannedRun]:
    """Runs at compute budget × fraction, sized N_opt × factor by the sweep's shape rule;
    run ids in ``exclude`` (already planned) are left out."""
    rule = shape_rule(cfg)
    out: dict[str, PlannedRun] = {}
    for f in fractions:
        c = budget * f
        n_opt, _ = compute_optimal(fit, c)
        for k in size_factors:
            w, dpt, _ = shapes.shape_for_params(max(n_opt * k, 1.0), cfg.model.head_dim,
                                                depth=rule["depth"], aspect=rule["aspect"])
            n = fit_params(w, dpt, cfg, cfg.fit.params)
            tokens = shapes.tokens_for_flops(c, n)
            try:  # the rule's own batch decides whether the budget fits one step
                run = make_run(sweep, w, dpt, tokens, cfg)
            except ConfigError:
                continue
            if shapes.flops_6nd(n, run.tokens) <= budget * 1.0001 and run.run_id not in exclude:
                out.setdefault(run.run_id, run)
    return list(out.values())


def reach_candidates(fit: Fit, cfg: SweepConfig, sweep: str, budget: float, reach: float,
                     exclude: Sequence[str] = (), sizes: int = 24, lengths: int = 6
                     ) -> list[PlannedRun]:
    """Runs no farther than ``reach`` × past the fitted N and D (never below the smallest fitted
    model; tokens down to the smallest fitted D / reach, at least one batch) costing at most
    ``budget`` FLOPs (6ND): sizes log-spaced from the smallest fitted N to reach × the largest,
    by the sweep's shape rule; token budgets log-spaced over that range, plus the one that
    spends ``budget``."""
    tr = fit.trust
    if tr is None:
        raise ConfigError("the fit has no trust region: no candidates within reach")
    rule = shape_rule(cfg)
    shapes_: dict[tuple[int, int], int] = {}
    for n in np.geomspace(tr.params[0], reach * tr.params[1], sizes):
        w, dpt, _ = shapes.shape_for_params(float(n), cfg.model.head_dim, depth=rule["depth"],
                                            aspect=rule["aspect"])
        p = fit_params(w, dpt, cfg, cfg.fit.params)
        if tr.params[0] * (1 - 1e-9) <= p <= reach * tr.params[1] * (1 + 1e-9):
            shapes_[(w, dpt)] = p
    d_lo, d_hi = max(tr.tokens[0] / reach, tr.min_tokens or 0.0), reach * tr.tokens[1]
    out: dict[str, PlannedRun] = {}
    for (w, dpt), p in sorted(shapes_.items()):
        spend = shapes.tokens_for_flops(budget, p)
        for d in [*np.geomspace(d_lo, d_hi, lengths + 1), spend]:
            if not d_lo * (1 - 1e-9) <= d <= d_hi * (1 + 1e-9):
                continue
            try:
                run = make_run(sweep, w, dpt, float(d), cfg)
            except ConfigError:
                continue
            ok = (shapes.flops_6nd(p, run.tokens) <= budget * 1.0001
                  and run.tokens <= d_hi * 1.0001 and run.run_id not in exclude)
            if ok:
                out.setdefault(run.run_id, run)
    return list(out.values())


def most_informative(fit: Fit, pts: pd.DataFrame, cfg: SweepConfig, sweep: str, budget: float,
                     target_compute: float, *, bootstrap: int = 60, draws: int = 1,
                     seed: int = 0, runs: Sequence[PlannedRun] | None = None,
                     exclude: Sequence[str] = ()) -> InformativeResult:
    """Rank candidate runs (default: ``candidates``) by expected variance reduction of the
    predicted loss at ``target_compute`` (FLOPs, 6ND). ``pts``: params, tokens, loss."""
    pts = pts[["params", "tokens", "loss"]].reset_index(drop=True)
    n_t, d_t = compute_optimal(fit, target_compute)
    sigma = residual_sigma(fit, pts)
    z = np.random.default_rng(seed).standard_normal(draws)
    chin = logging.getLogger("sweep.fit.chinchilla")
    level = chin.level
    chin.setLevel(logging.ERROR)  # hypothetical refits: no repeated warnings
    try:
        def refit(df: pd.DataFrame) -> Fit:
            return fit_chinchilla(df, delta=cfg.fit.delta, bootstrap=bootstrap, seed=seed,
                                  validate=False)

        f0 = refit(pts)
        var0, width0 = _target_var(f0, n_t, d_t)
        sd0 = _param_sd(f0)
        out, skipped = [], []
        for run in (runs if runs is not None
                        else candidates(fit, cfg, sweep, budget, exclude=exclude)):
            n = fit_params(run.width, run.depth, cfg, cfg.fit.params)
            pred = fit.predict(n, run.tokens)
            if pred.trust == "outside":
                own = [w for w in pred.warnings if w not in fit.warnings]
                skipped.append(f"{run.run_id}: " + "; ".join(own))
                continue
            lhat = pred.loss
            vs, ws, sds = [], [], []
            for zi in z:
                extra = pd.DataFrame({"params": [float(n)], "tokens": [float(run.tokens)],
                                      "loss": [lhat * math.exp(sigma * zi)]})
                f1 = refit(pd.concat([pts, extra], ignore_index=True))
                v, w = _target_var(f1, n_t, d_t)
                vs.append(v)
                ws.append(w)
                sds.append(_param_sd(f1))
            out.append(Candidate(run, float(n), shapes.flops_6nd(n, run.tokens), lhat,
                                 float(np.mean(vs)), var0 - float(np.mean(vs)),
                                 float(np.mean(ws)), _pins(sd0, np.mean(sds, axis=0))))
            log.info("candidate %s: var %.3g -> %.3g", run.run_id, var0, out[-1].var_after)
    finally:
        chin.setLevel(level)
    out.sort(key=lambda c: -c.reduction)
    return InformativeResult(target_compute, n_t, d_t, var0, width0, sigma, bootstrap, out,
                             tuple(skipped))


def informative_text(res: InformativeResult, costs: dict[str, str] | None = None) -> str:
    lines = [f"target C={res.target_compute:.4g} FLOPs (N*={res.target_params:.4g}, "
             f"D*={res.target_tokens:.4g}): bootstrap sd of the predicted loss now "
             f"{math.sqrt(res.var_before):.4g} nats (95% width {res.width_before:.4g}); "
             f"residual spread sigma={res.sigma:.3g} (ln L); B={res.bootstrap} resamples "
             f"(variance noise ≈ ±{math.sqrt(2 / max(res.bootstrap, 1)):.0%})"]
    for i, c in enumerate(res.candidates):
        r = c.run
        cost = f"  {costs[r.run_id]}" if costs and r.run_id in costs else ""
        lines.append(f"  {'*' if i == 0 else ' '} {r.run_id:<26} C={c.flops:<9.3g} "
                     f"pred {c.predicted_loss:.4f}  sd after {math.sqrt(max(c.var_after, 0)):.4g}"
                     f"  reduction {c.reduction / res.var_before:+.0%}{cost}  ({c.why})"
                     if res.var_before > 0 else f"    {r.run_id}")
    lines += [f"  left out (outside the fit's trust region): {s}" for s in res.skipped]
    return "\n".join(lines)
