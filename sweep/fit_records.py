"""Typed records of the fit stage: what a fit saw (TrustRegion), a prediction, a fit, a
recommendation, and the curve and downstream fits. Units: N = parameters (the fit's convention),
D = training tokens, C = 6ND FLOPs, losses in nats/token. Re-exported by sweep.records.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from sweep import shapes


TRUST_LEVELS = ("inside", "extrapolated", "outside")  # Prediction.trust, worst last


@dataclass(frozen=True)
class TrustRegion:
    """What a fit saw and what it can say (issue 12): the ranges of N, D, C and loss of its
    points, which parameters the data identify, its held-out validation error, and the fit-level
    warnings that go with every number predicted from it. ``assess`` places one prediction.

    ``max_loss`` is ln(vocab) when the vocabulary is known (a predicted loss above it is worse
    than a uniform guess); ``min_tokens`` one optimizer batch when known."""

    params: tuple[float, float]  # min, max N of the fitted points (the fit's N convention)
    tokens: tuple[float, float]  # min, max D (training tokens)
    flops: tuple[float, float]  # min, max C = 6ND (FLOPs)
    loss: tuple[float, float]  # min, max loss (nats/token)
    identified: dict[str, bool] = field(default_factory=dict)  # E, A, B, alpha, beta → bool
    validation_error: float | None = None  # mean |rel. error| predicting the held-out budget
    floor: float = 0.0  # the law's loss floor E (nats/token)
    max_loss: float | None = None  # ln(vocab) where known
    min_tokens: float | None = None  # one optimizer batch (tokens) where known
    warnings: tuple[str, ...] = ()  # fit-level warnings (identifiability, spans, convergence)

    def assess(self, params: float, tokens: float, loss: float
               ) -> tuple[str, float, tuple[str, ...]]:
        """(trust, k, warnings) of a prediction at (N, D) with point loss ``loss``: trust is
        'inside' the data's box, 'extrapolated' (k = how many times past the largest N, D or C
        seen, ≥ 1) or 'outside' what the law can say; warnings say why, then the fit's own."""
        c = shapes.flops_6nd(params, tokens)
        k = max(1.0, params / self.params[1], tokens / self.tokens[1], c / self.flops[1])
        why: list[str] = []
        outside = False
        if not math.isfinite(loss):
            outside = True
            why.append("the predicted loss is not finite")
        if self.max_loss is not None and loss > self.max_loss:
            outside = True
            why.append(f"predicted loss {loss:.4g} is above ln(vocab) = {self.max_loss:.4g} "
                       "nats/token (worse than a uniform guess): the law does not hold there")
        if params < self.params[0] * (1 - 1e-9):
            outside = True
            why.append(f"N = {params:.4g} is below the smallest fitted model "
                       f"({self.params[0]:.4g})")
        if self.min_tokens is not None and tokens < self.min_tokens:
            outside = True
            why.append(f"D = {tokens:.4g} tokens is less than one batch ({self.min_tokens:.4g})")
        if tokens < self.tokens[0] * (1 - 1e-9) and not outside:
            why.append(f"D = {tokens:.4g} is below the smallest fitted budget "
                       f"({self.tokens[0]:.4g} tokens)")
        if k > 1 + 1e-9:
            what = [f"N ×{params / self.params[1]:.3g}" if params > self.params[1] else "",
                    f"D ×{tokens / self.tokens[1]:.3g}" if tokens > self.tokens[1] else "",
                    f"C ×{c / self.flops[1]:.3g}" if c > self.flops[1] else ""]
            why.append("extrapolated past the fitted data (" + ", ".join(w for w in what if w)
                       + ")")
        trust = "outside" if outside else "extrapolated" if (
            k > 1 + 1e-9 or tokens < self.tokens[0] * (1 - 1e-9)) else "inside"
        return trust, float(k), tuple(why) + self.warnings

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrustRegion:
        d = dict(d)
        for k in ("params", "tokens", "flops", "loss", "warnings"):
            d[k] = tuple(d[k])
        return cls(**d)


@dataclass(frozen=True)
class Prediction:
    """A predicted loss (nats/token) at (N, D) with its 95 % interval and where it stands
    relative to the fit's trust region (``TrustRegion.assess``)."""

    params: float
    tokens: float
    flops: float  # 6ND
    loss: float
    loss_lo95: float
    loss_hi95: float
    trust: str = "inside"  # inside | extrapolated | outside
    extrapolation: float = 1.0  # × past the largest N, D or C fitted (1 = inside)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["warnings"] = list(self.warnings)
        return d


@dataclass
class Fit:
    """A fitted L(N, D) = E + A/N^alpha + B/D^beta with bootstrap intervals.

    ``samples`` holds the bootstrap parameter vectors (columns E, A, B, alpha, beta) of the
    refits that converged and is not part of the JSON; ``predict`` uses it for intervals.
    ``bootstrap`` = {"resamples": n, "not_converged": k} (the k are not in ``samples``).
    """

    method: str
    n_points: int
    params: dict[str, float]
    ci95: dict[str, list[float]]
    objective: float
    allocation: dict[str, float]
    validation: dict[str, Any] | None = None
    predictions: list[Prediction] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    conventions: dict[str, str] = field(default_factory=dict)
    samples: Any = None  # numpy array (n_boot, 5) in E, A, B, alpha, beta order
    trust: TrustRegion | None = None  # where predictions from this fit can be believed
    bootstrap: dict[str, int] | None = None  # resamples, not_converged (dropped from the CIs)

    def loss(self, params: Any, tokens: Any) -> Any:
        """E + A/N^alpha + B/D^beta (nats/token), scalars or arrays; inf past the float range."""
        out = Fit._law([[self.params[k] for k in ("E", "A", "B", "alpha", "beta")]], params,
                       tokens)[0]
        return float(out) if out.ndim == 0 else out

    def draws(self, params: Any, tokens: Any) -> Any:
        """Bootstrap draws of the loss at (N, D): shape (n_samples,) + shape of N * D."""
        return Fit._law(self.samples, params, tokens)

    @staticmethod
    def _law(rows: Any, params: Any, tokens: Any) -> Any:
        """The law for parameter rows (E, A, B, alpha, beta), in logs: a wild row gives a large
        number or inf, never an overflow error."""
        import numpy as np

        s = np.asarray(rows, float).reshape(-1, 5)
        ln_n, ln_d = np.log(np.asarray(params, float)), np.log(np.asarray(tokens, float))
        e, a, b, al, be = (s[:, i].reshape((-1,) + (1,) * np.ndim(ln_n + ln_d)) for i in range(5))
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return e + np.exp(np.log(a) - al * ln_n) + np.exp(np.log(b) - be * ln_d)

    def predict(self, params: float, tokens: float) -> Prediction:
        """Point prediction and 95 % bootstrap interval at (N, D), placed in the trust region.
        An interval whose upper end is not finite, above ln(vocab) (then clipped to it and the
        prediction is 'outside') or more than 10x the loss is flagged "interval unbounded"."""
        import numpy as np

        loss = self.loss(params, tokens)
        lo = hi = top = loss
        if self.samples is not None and len(self.samples):
            d = self.draws(params, tokens)
            d = np.where(np.isnan(d), np.inf, d)  # a draw that overflowed is unbounded
            with np.errstate(invalid="ignore"):  # inf - inf between two infinite draws
                lo, hi = (float(x) for x in np.percentile(d, [2.5, 97.5]))
            hi = math.inf if math.isnan(hi) else hi
            top = float(d[np.isfinite(d)].max()) if np.isfinite(d).any() else loss
        trust, k, warns = ("inside", 1.0, ()) if self.trust is None else self.trust.assess(
            params, tokens, loss)
        max_loss = None if self.trust is None else self.trust.max_loss
        extra: list[str] = []
        above = max_loss is not None and hi > max_loss
        if not math.isfinite(hi) or above or hi > 10 * loss:
            why = ("not finite" if not math.isfinite(hi) else f"above ln(vocab) = {max_loss:.4g}"
                   if above else f"more than 10x the loss {loss:.4g}")
            if not math.isfinite(hi) or above:
                trust = "outside"  # and the bound is clipped: ln(vocab), else the top draw
                hi, why = ((max(max_loss, loss), why + "; reported as ln(vocab)")
                           if max_loss is not None else
                           (top, why + "; reported as the largest finite draw"))
            extra.append(f"interval unbounded: the 95% upper bound is {why} (the bootstrap "
                         "does not pin the law down here)")
        return Prediction(float(params), float(tokens), shapes.flops_6nd(params, tokens),
                          float(loss), min(lo, loss), max(hi, loss), trust, k,
                          tuple(extra) + warns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "n_points": self.n_points,
            "params": self.params,
            "ci95": self.ci95,
            "objective": self.objective,
            "allocation": self.allocation,
            "predictions": [p.to_dict() for p in self.predictions],
            "validation": self.validation,
            "warnings": self.warnings,
            "conventions": self.conventions,
            "trust": None if self.trust is None else self.trust.to_dict(),
            "bootstrap": self.bootstrap,
        }

    def to_state(self) -> dict[str, Any]:
        """``to_dict`` plus the bootstrap samples: what the fit cache stores."""
        d = self.to_dict()
        d["samples"] = None if self.samples is None else [list(map(float, r))
                                                          for r in self.samples]
        return d

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Fit:
        """The inverse of ``to_state`` (a cached fit, samples included)."""
        import numpy as np

        d = dict(d)
        d["predictions"] = [Prediction(**{**p, "warnings": tuple(p.get("warnings", ()))})
                            for p in d.get("predictions", [])]
        d["trust"] = None if d.get("trust") is None else TrustRegion.from_dict(d["trust"])
        d["samples"] = None if d.get("samples") is None else np.asarray(d["samples"], float)
        return cls(**d)


@dataclass(frozen=True)
class Recommendation:
    """The next compute-optimal run; keys are the shared JSON interface."""

    compute: float
    params: float
    params_nonembed: float
    tokens: float
    flops: float
    predicted_loss: float
    predicted_loss_lo95: float
    predicted_loss_hi95: float
    model: dict[str, int] | None  # None: no shape rule (e.g. an imported sweep)
    train: dict[str, float] | None
    conventions: dict[str, str] = field(default_factory=dict)
    trust: str = "inside"  # the predicted loss's place in the fit's trust region
    extrapolation: float = 1.0  # × past the largest N, D or C fitted
    warnings: tuple[str, ...] = ()  # the prediction's warnings, then the fit's

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["warnings"] = list(self.warnings)
        return d


@dataclass(frozen=True)
class DownstreamFit:
    """A downstream metric (e.g. top-1 accuracy) fitted against loss (nats/token) or compute
    (FLOPs): ``form`` sigmoid (params lo, hi, k, x0) or power (params A, b); ``predictions``
    are dicts x, value, lo95, hi95 (bootstrap over runs)."""

    metric: str
    against: str  # "loss" | "flops"
    form: str  # "sigmoid" | "power"
    n_points: int
    params: dict[str, float]
    ci95: dict[str, list[float]]
    rmse: float  # root-mean-square residual, in the metric's own units
    predictions: list[dict[str, float]] = field(default_factory=list)
    validation: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    conventions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LearningCurveFit:
    """Kaplan et al. 2020 §5: L(N, S) = E + (N_c/N)^alpha_N + (S_c/S_min)^alpha_S with
    S_min = S / (1 + B_crit(L)/B), B_crit(L) = B_star / L^(1/alpha_B) (B, B_star in tokens,
    N in params, S optimizer steps, L nats/token). ``fixed`` names parameters not fitted."""

    n_runs: int
    n_points: int
    params: dict[str, float]  # N_c, alpha_N, S_c, alpha_S, B_star, alpha_B, E
    ci95: dict[str, list[float]]
    fixed: list[str]
    rmse_log: float  # root-mean-square residual of ln L
    predictions: list[dict[str, Any]] = field(default_factory=list)  # params, batch_tokens,
    # steps [...], loss [...], loss_lo95 [...], loss_hi95 [...] (a whole predicted curve)
    validation: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    conventions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
