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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

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
    batch_tokens: int  # B0
    label: str = "baseline"

    @property
    def flops(self) -> float:
        return 6.0 * self.params * self.tokens

    @property
    def steps(self) -> float:
        return self.tokens / self.batch_tokens


@dataclass(frozen=True)
class AllocationRow:
    k: float
    option: str
    params: float
    tokens: float
    flops: float  # 6ND
    steps: float
    batch_tokens: float
    loss: float  # nats/token
    loss_lo95: float
    loss_hi95: float
    best: bool = False
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def allocation_table(fit: Fit, base: Baseline, ks: Sequence[float] = DEFAULT_K
                     ) -> list[AllocationRow]:
    """One row per (k, option); per k the lowest predicted loss is marked ``best``."""
    rows: list[AllocationRow] = []
    n0, d0, b0 = base.params, base.tokens, base.batch_tokens
    for k in ks:
        n_opt, d_opt = compute_optimal(fit, k * base.flops)
        shapes = [(n0, k * d0, b0, ""), (k * n0, d0, b0, ""),
                  (n0, k * d0, k * b0, "L(N, D) has no batch term: valid below the critical "
                                       "batch size only; T5 found it worse than k× steps"),
                  (n_opt, d_opt, b0, ""),
                  (n0 * k**KAPLAN_A, d0 * k ** (1 - KAPLAN_A), b0, "")]
        group = []
        for opt, (n, d, b, note) in zip(OPTIONS, shapes, strict=True):
            p = fit.predict(n, d)
            group.append(AllocationRow(float(k), opt, n, d, 6.0 * n * d, d / b, b, p.loss,
                                       p.loss_lo95, p.loss_hi95, False, note))
        best = min(range(len(group)), key=lambda i: (group[i].loss, i))  # ties: earlier option
        group[best] = AllocationRow(**{**group[best].to_dict(), "best": True})
        rows += group
    return rows


def allocation_text(rows: Sequence[AllocationRow], base: Baseline) -> str:
    """A plain text table, one block per k."""
    lines = [f"baseline {base.label}: N0={base.params:.4g} params, D0={base.tokens:.4g} tokens, "
             f"C0={base.flops:.4g} FLOPs (6ND); loss in nats/token, 95% bootstrap interval"]
    for r in rows:
        mark = " *best*" if r.best else ""
        note = " (†)" if r.note else ""
        lines.append(f"  {r.k:>5g}×  {r.option + note:<24} N={r.params:<10.4g} "
                     f"D={r.tokens:<10.4g} steps={r.steps:<9.4g} batch={r.batch_tokens:<7.4g} "
                     f"loss {r.loss:.4f} [{r.loss_lo95:.4f}, {r.loss_hi95:.4f}]{mark}")
    if any(r.note for r in rows):
        lines.append("  (†) " + next(r.note for r in rows if r.note))
    return "\n".join(lines)
