"""Fit + compute budget → the next compute-optimal run (a concrete model shape and schedule).

Under C = 6·N·D and L = E + A/N^α + B/D^β, the optimum is N_opt = G·(C/6)^a with
G = (αA/(βB))^(1/(α+β)), a = β/(α+β) (Hoffmann et al. 2022, eq. 4). N_opt is turned into a real
shape by the sweep's own shape rule; the tokens are then C/(6·N) for that shape's N, so the
recommended run spends exactly C.
"""

from __future__ import annotations

import math

from sweep import hparams, shapes
from sweep.config import SweepConfig
from sweep.errors import FitError
from sweep.records import Fit, Recommendation


def optimal_params(fit: Fit, compute: float) -> float:
    p = fit.params
    alpha, beta, A, B = p["alpha"], p["beta"], p["A"], p["B"]
    if min(alpha, beta, A, B) <= 0:
        raise FitError("the fit has a non-positive A, B, alpha or beta: no compute-optimal split")
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    return G * (compute / 6.0) ** (beta / (alpha + beta))


def shape_rule(cfg: SweepConfig) -> dict[str, float | None]:
    """The sweep's own rule: a single depth stays fixed; otherwise keep the grid's (geometric
    mean) width/depth aspect ratio and grow both."""
    m = cfg.model
    if len(m.depths) == 1:
        return {"depth": m.depths[0], "aspect": None}
    ratios = [w / d for w in m.widths for d in m.depths]
    return {"depth": None, "aspect": math.exp(sum(map(math.log, ratios)) / len(ratios))}


def _fit_params(width: int, depth: int, cfg: SweepConfig, convention: str) -> int:
    if convention == "total":
        return shapes.params_total(width, depth, cfg.model.vocab, cfg.model.seq_len)
    return shapes.params_nonembed(width, depth)


def recommend(fit: Fit, compute: float, cfg: SweepConfig) -> Recommendation:
    """The compute-optimal run for ``compute`` FLOPs (6ND, N in the fit's convention)."""
    if not (compute > 0 and math.isfinite(compute)):
        raise FitError(f"compute must be a positive number of FLOPs, got {compute!r}")
    convention = cfg.fit.params
    n_opt = optimal_params(fit, compute)
    rule = shape_rule(cfg)
    target = n_opt
    for _ in range(4):  # the total-params convention counts embeddings: solve by fixed point
        width, depth, heads = shapes.shape_for_params(
            max(target, 1.0), cfg.model.head_dim, depth=rule["depth"], aspect=rule["aspect"])
        if convention != "total":
            break
        target = max(1.0, n_opt - (cfg.model.vocab + cfg.model.seq_len) * width)
    n = _fit_params(width, depth, cfg, convention)
    tokens = compute / (6.0 * n)
    hp = hparams.choose(cfg, width, depth, tokens)
    batch_tokens = hp.batch_size * cfg.model.seq_len
    pred = fit.predict(n, tokens)
    return Recommendation(
        compute=compute,
        params=float(shapes.params_total(width, depth, cfg.model.vocab, cfg.model.seq_len)),
        params_nonembed=float(shapes.params_nonembed(width, depth)),
        tokens=tokens, flops=6.0 * n * tokens,
        predicted_loss=pred.loss, predicted_loss_lo95=pred.loss_lo95,
        predicted_loss_hi95=pred.loss_hi95,
        model={"width": width, "depth": depth, "heads": heads},
        train={"lr": hp.lr, "batch_tokens": batch_tokens,
               "steps": max(1, math.ceil(tokens / batch_tokens))},
        conventions={"flops": f"6ND with N = params{'' if convention == 'total' else '_nonembed'}",
                     "loss": "nats/token", "n_opt_continuous": f"{n_opt:.6g}"},
    )


def compute_for_params(fit: Fit, params: float) -> float:
    """The compute (6ND FLOPs) for which ``params`` is the compute-optimal N: inverts
    N_opt = G·(C/6)^a."""
    if not (params > 0 and math.isfinite(params)):
        raise FitError(f"params must be a positive number, got {params!r}")
    p = fit.params
    a = p["beta"] / (p["alpha"] + p["beta"])
    g = optimal_params(fit, 6.0)  # G·1^a
    return 6.0 * (params / g) ** (1.0 / a)


def compute_for_loss(fit: Fit, loss: float) -> float:
    """The least compute (6ND FLOPs) whose compute-optimal run reaches ``loss`` (nats/token) by
    the fitted law: bisection in log C. FitError at or below the loss floor E."""
    if not loss > fit.params["E"]:
        raise FitError(f"loss {loss:g} is not above the fitted floor E = {fit.params['E']:.4g}:"
                       " no compute reaches it")

    def frontier(c: float) -> float:
        n = optimal_params(fit, c)
        return fit.loss(n, c / (6.0 * n))

    lo, hi = 1.0, 1e40
    if frontier(hi) > loss:
        raise FitError(f"loss {loss:g} needs more than 1e40 FLOPs by the fitted law")
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if frontier(mid) > loss else (lo, mid)
        if hi / lo < 1 + 1e-12:
            break
    return hi
