"""How to spend k× more compute: the options Raffel et al. 2020 (T5, sec. 3.6, Table 13) compared,
plus the compute-optimal split and Kaplan et al.'s, each scored by the fitted L(N, D).

From a baseline run (N0 params, D0 tokens, S0 steps of B0 tokens; C0 = 6·N0·D0 FLOPs), k× the
compute can buy:
  * same size, k× steps:  N0,              k·D0   (k·S0 steps of B0)
  * k× size, same steps:  k·N0,            D0
  * k× batch:             N0,              k·D0   (S0 steps of k·B0)
  * compute-optimal:      N_opt(kC0),      D_opt(kC0)   (Hoffmann et al. 2022, eq. 4)
  * Kaplan 0.73/0.27:     N0·k^0.73,       D0·k^0.27    (Kaplan et al. 2020, sec. 6.1)
Every option spends exactly k·C0 (6ND). The law L(N, D) has no batch-size term: "k× batch" gets
the same prediction as "k× steps", which holds only below the critical batch size (McCandlish
et al. 2018); T5 measured it slightly worse. The row says so and is never marked best on a tie.
Each row carries its prediction's trust, extrapolation and warnings; a row is marked best only
when its 95 % interval spans at most a factor of 2 and it is not outside the fit's trust region.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sweep import shapes
from sweep.diagnostics import interval_ok, note
from sweep.fit.chinchilla import compute_optimal
from sweep.records import Fit

KAPLAN_A = 0.73  # N ∝ C^0.73, D ∝ C^0.27 (Kaplan et al. 2020, fig. 14)
DEFAULT_K = (2, 4, 10, 100)
OPTIONS = ("same size, k× steps", "k× size, same steps", "k× batch", "compute-optimal",
           "Kaplan 0.73/0.27")


@dataclass(frozen=True)
class Baseline:
    params: float  # N0, in the fit's parameter convention
    tokens: float  # D0
    batch_tokens: int | None  # B0 (None: unknown, e.g. imported points)
    label: str = "baseline"

    @property
    def flops(self) -> float:
        return shapes.flops_6nd(self.params, self.tokens)

    @property
    def steps(self) -> float | None:
        return self.tokens / self.batch_tokens if self.batch_tokens else None


@dataclass(frozen=True)
class AllocationRow:
    k: float
    option: str
    params: float
    tokens: float
    flops: float  # 6ND
    steps: float | None
    batch_tokens: float | None
    loss: float  # nats/token
    loss_lo95: float
    loss_hi95: float
    best: bool = False
    note: str = ""
    trust: str = "inside"  # inside | extrapolated | outside (records.TrustRegion.assess)
    extrapolation: float = 1.0  # × past the largest N, D or C fitted
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["warnings"] = list(self.warnings)
        return d


def allocation_table(fit: Fit, base: Baseline, ks: Sequence[float] = DEFAULT_K
                     ) -> list[AllocationRow]:
    """One row per (k, option); per k the lowest predicted loss is marked ``best`` among the
    rows whose interval spans ≤ 2× and that are not outside the fit's trust region."""
    rows: list[AllocationRow] = []
    n0, d0, b0 = base.params, base.tokens, base.batch_tokens
    for k in ks:
        n_opt, d_opt = compute_optimal(fit, k * base.flops)
        opts = [(n0, k * d0, b0, ""), (k * n0, d0, b0, ""),
                (n0, k * d0, k * b0 if b0 else None,
                 "L(N, D) has no batch term: valid below the critical batch size only; T5 found "
                 "it worse than k× steps"),
                (n_opt, d_opt, b0, ""),
                (n0 * k**KAPLAN_A, d0 * k ** (1 - KAPLAN_A), b0, "")]
        group = []
        for opt, (n, d, b, why) in zip(OPTIONS, opts, strict=True):
            p = fit.predict(n, d)
            group.append(AllocationRow(float(k), opt, n, d, shapes.flops_6nd(n, d),
                                       d / b if b else None, b, p.loss, p.loss_lo95,
                                       p.loss_hi95, False, why, p.trust, p.extrapolation,
                                       p.warnings))
        ok = [i for i, r in enumerate(group)
              if r.trust != "outside" and interval_ok(r.loss_lo95, r.loss_hi95)]
        if ok:
            best = min(ok, key=lambda i: (group[i].loss, i))  # ties: earlier option
            group[best] = AllocationRow(**{**group[best].to_dict(), "best": True,
                                           "warnings": group[best].warnings})
        rows += group
    return rows


def allocation_text(rows: Sequence[AllocationRow], base: Baseline) -> str:
    """A plain text table, one block per k."""
    lines = [f"baseline {base.label}: N0={base.params:.4g} params, D0={base.tokens:.4g} tokens, "
             f"C0={base.flops:.4g} FLOPs (6ND); loss in nats/token, 95% bootstrap interval; "
             "*best* only where the interval spans ≤ 2× and is not outside the fit"]
    fit_warns = set(rows[0].warnings) if rows else set()
    for r in rows:
        fit_warns &= set(r.warnings)
    for r in rows:
        mark = " *best*" if r.best else ""
        dag = " (†)" if r.note else ""
        steps = f"{r.steps:<9.4g}" if r.steps else f"{'-':<9}"
        batch = f"{r.batch_tokens:<7.4g}" if r.batch_tokens else f"{'-':<7}"
        own = [w for w in r.warnings if w not in fit_warns]
        lines.append(f"  {r.k:>5g}×  {r.option + dag:<24} N={r.params:<10.4g} "
                     f"D={r.tokens:<10.4g} steps={steps} batch={batch} "
                     f"loss {r.loss:.4f} [{r.loss_lo95:.4g}, {r.loss_hi95:.4g}]{mark}"
                     + note(r.trust, r.extrapolation, own))
    if any(r.note for r in rows):
        lines.append("  (†) " + next(r.note for r in rows if r.note))
    lines += [f"  warning: {w}" for w in sorted(fit_warns)]
    return "\n".join(lines)
