"""`sweep report`: one HTML page with PNG figures beside it (matplotlib's object API, Agg).

Figures: loss curves by size; isoFLOP profiles with their parabolas (sweeps with FLOP budgets);
the frontier L(C) with its 95 % band and the target; fitted vs measured losses; N_opt(C) and
D_opt(C) with Kaplan's (0.73) and Chinchilla's (0.5) reference slopes. Every log axis is clipped
to within 10× of the data it shows (points and the target), bands to their sane part (finite,
not above ln(vocab)); extrapolated parts are dashed. Tables: a headline (the target's predicted
loss with its trust, the fit's warnings), the fit, the recommendation, the allocation of k× more
compute, cost/energy/carbon (sweep/report_page.py). The data come from sweep/report_data.py.
Units: N = parameters in the fit's convention, D = tokens, C = 6ND FLOPs, loss in nats/token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

STYLE = {"font.size": 10, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
         "axes.spines.right": False, "legend.frameon": False, "savefig.dpi": 150}


def _figure(width: float, height: float, ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(1, ncols)


def _finite(values, log: bool) -> np.ndarray:
    v = np.asarray(list(values), dtype=float).ravel()
    return v[np.isfinite(v) & (v > 0)] if log else v[np.isfinite(v)]


def _lim(ax, which: str, data, extra=(), log: bool = False, cap: float | None = None) -> None:
    """Set ``which`` ('x' or 'y') limits to cover ``data`` and as much of ``extra`` (curves,
    bands) as stays within 10× of the data (log) or one data span beyond it (linear), and
    below ``cap`` (e.g. ln(vocab)) where the data are."""
    d = _finite(data, log)
    if not len(d):
        return
    dlo, dhi = float(d.min()), float(d.max())
    e = _finite(extra, log)
    if cap is not None and dhi <= cap:
        e = e[e <= cap]
    if log:
        blo, bhi = dlo / 10, dhi * 10
        lo, hi = max(blo, min(dlo, *e) if len(e) else dlo), min(bhi, max(dhi, *e) if len(e)
                                                                 else dhi)
        pad = 10 ** (0.05 * max(math.log10(hi / lo), 0.5))
        lo, hi = max(blo, lo / pad), min(bhi, hi * pad)
    else:
        span = max(dhi - dlo, 0.1 * abs(dhi), 1e-12)
        blo, bhi = dlo - span, dhi + span
        if dlo > 0:
            blo, bhi = max(blo, dlo / 10), min(bhi, dhi * 10)
        lo = max(blo, min(dlo, *e) if len(e) else dlo)
        hi = min(bhi, max(dhi, *e) if len(e) else dhi)
        pad = 0.05 * (hi - lo or span)
        lo, hi = max(blo, lo - pad), min(bhi, hi + pad)
    if cap is not None and dhi <= cap:
        hi = min(hi, cap)
    (ax.set_xscale if which == "x" else ax.set_yscale)("log" if log else "linear")
    (ax.set_xlim if which == "x" else ax.set_ylim)(lo, hi)


def _sane_band(lo, up, max_loss: float | None):
    """The band's sane part: non-finite parts dropped (NaN), the top cut at ln(vocab)."""
    lo, up = np.asarray(lo, float), np.asarray(up, float)
    bad = ~(np.isfinite(lo) & np.isfinite(up))
    if max_loss is not None:
        up = np.minimum(up, max_loss)
        bad |= lo > max_loss
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, up)


def _size_colors(sizes: Sequence[float]):
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    s = sorted(set(sizes))
    return {n: cmap(0.05 + 0.85 * i / max(len(s) - 1, 1)) for i, n in enumerate(s)}


def fig_curves(d):
    fig, ax = _figure(6.4, 4.2)
    f = d.finals[d.finals["native"]]
    col = _size_colors(f["params_fit"])
    sizes = f.set_index("run_id")["params_fit"]
    seen, xs, ys = set(), [], []
    for rid, g in d.curves.groupby("run_id"):
        if rid not in sizes:
            continue
        n = sizes[rid]
        tr = g.dropna(subset=["train_loss"])
        if len(tr) > 4:  # light smoothing of the noisy train loss
            y = tr["train_loss"].rolling(5, min_periods=1, center=True).mean()
            ax.plot(tr["tokens"], y, color=col[n], lw=1.0, alpha=0.55)
            xs += list(tr["tokens"])
            ys += list(y)
        ev = g.dropna(subset=["eval_loss"])
        ax.plot(ev["tokens"], ev["eval_loss"], "o", color=col[n], ms=4,
                label=f"N = {n:.3g}" if n not in seen else None)
        xs += list(ev["tokens"])
        ys += list(ev["eval_loss"])
        seen.add(n)
    _lim(ax, "x", xs, log=True)
    _lim(ax, "y", ys)
    ax.set_xlabel("training tokens D")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(f"{d.name}: loss curves (lines: train, smoothed; dots: held-out)")
    h, lab = ax.get_legend_handles_labels()
    order = np.argsort([float(s.split("= ")[1]) for s in lab])
    ax.legend([h[i] for i in order], [lab[i] for i in order], fontsize=8,
              title=f"size ({d.param_label})", title_fontsize=8)
    return fig


def fig_isoflop(d):
    from matplotlib import colormaps

    from sweep.report_data import budgets

    iso = d.isoflop
    fig, ax = _figure(6.4, 4.2)
    f = d.finals[d.finals["native"]]
    groups = budgets(f["params_fit"], f["tokens"])
    cmap = colormaps["plasma"]
    extra_y = []
    for i, b in enumerate(iso.budgets):
        colr = cmap(0.1 + 0.75 * i / max(len(iso.budgets) - 1, 1))
        m = np.isclose(groups, b.budget, rtol=1e-9)
        x, y = f["params_fit"][m].to_numpy(), f["final_loss"][m].to_numpy()
        ax.plot(x, y, "o", color=colr, label=f"C = {b.budget:.2g}")
        if len(x) >= 3:
            lx = np.log(x)
            co = np.polyfit(lx, y, 2)
            xs = np.linspace(lx.min() - 0.2, lx.max() + 0.2, 100)
            ax.plot(np.exp(xs), np.polyval(co, xs), "-", color=colr, lw=1.2)
        if b.used and b.params_opt:
            ax.plot([b.params_opt], [b.loss_opt], "*", color=colr, ms=12, mec="k", mew=0.5)
            extra_y.append(b.loss_opt)
    _lim(ax, "x", f["params_fit"], log=True)
    _lim(ax, "y", f["final_loss"], extra_y)
    ax.set_xlabel(f"parameters N ({d.param_label})")
    ax.set_ylabel("final loss (nats/token)")
    ax.set_title(f"isoFLOP profiles (Approach 2): a = {iso.a:.2f}; ★ = parabola minimum")
    ax.legend(fontsize=8, title="budget (FLOPs, 6ND)", title_fontsize=8)
    return fig


def _frontier(fit, cs: np.ndarray):
    from sweep.fit.chinchilla import compute_optimal

    preds = [fit.predict(*compute_optimal(fit, c)) for c in cs]
    return (np.array([p.loss for p in preds]), np.array([p.loss_lo95 for p in preds]),
            np.array([p.loss_hi95 for p in preds]))


def _grid(d, n: int = 80) -> np.ndarray:
    f = d.finals
    cmin, cmax = float(f["flops_6nd"].min()), float(f["flops_6nd"].max())
    return np.logspace(math.log10(cmin) - 0.2, math.log10(max(d.target, cmax) * 3), n)


def _sane_rec(d) -> bool:
    r, ml = d.rec, d.max_loss
    return math.isfinite(r.predicted_loss) and (ml is None or r.predicted_loss <= ml)


def fig_frontier(d):
    fig, ax = _figure(6.4, 4.4)
    f = d.finals
    col = _size_colors(f["params_fit"])
    many = len(col) > 8  # one legend entry per size only for a few sizes
    for i, (n, g) in enumerate(f.groupby("params_fit")):
        lab = (f"runs, N = {min(col):.3g}…{max(col):.3g} (dark → light)" if i == 0 else None
               ) if many else f"N = {n:.3g}"
        ax.plot(g["flops_6nd"], g["final_loss"], "o", color=col[n], ms=5 if not many else 3,
                label=lab)
    cmax = float(f["flops_6nd"].max())
    cs = _grid(d)
    loss, lo, up = _frontier(d.fit, cs)
    lo, up = _sane_band(lo, up, d.max_loss)
    inside = cs <= cmax
    ax.fill_between(cs, lo, up, color="C3", alpha=0.18, lw=0, label="95 % bootstrap band")
    ax.plot(cs[inside], loss[inside], "-", color="C3", lw=2, label="fitted frontier L(C)")
    ax.plot(cs[~inside], loss[~inside], "--", color="C3", lw=2, label="extrapolated")
    r = d.rec
    ys = list(f["final_loss"])
    if _sane_rec(d):
        hi = r.predicted_loss_hi95 if d.max_loss is None else min(r.predicted_loss_hi95,
                                                                  d.max_loss)
        ax.errorbar([d.target], [r.predicted_loss],
                    yerr=[[r.predicted_loss - r.predicted_loss_lo95], [hi - r.predicted_loss]],
                    fmt="*", color="k", ms=12, capsize=3,
                    label=f"target C = {d.target:.2g}: {r.predicted_loss:.3f} ({r.trust})")
        ys.append(r.predicted_loss)
    for ch in d.checks:
        if ch.measured_loss is not None:
            ax.plot([ch.record.flops], [ch.measured_loss], "D", mfc="none", mec="C1", ms=8,
                    mew=1.5, label="appended run (measured)")
    _lim(ax, "x", [*f["flops_6nd"], d.target], cs, log=True)
    _lim(ax, "y", ys, [*loss, *lo[np.isfinite(lo)], *up[np.isfinite(up)]], cap=d.max_loss)
    ax.axvline(cmax, color="grey", lw=0.8, ls=":")
    ax.text(cmax, ax.get_ylim()[0], " largest run; dashed: extrapolated", va="bottom",
            fontsize=8, color="grey")
    ax.set_xlabel("training compute C (FLOPs, 6ND)")
    ax.set_ylabel("final loss (nats/token)")
    p = d.fit.params
    ax.set_title(f"compute frontier: E={p['E']:.3g}, α={p['alpha']:.3g}, β={p['beta']:.3g}")
    h, lab = ax.get_legend_handles_labels()
    uniq = dict(zip(lab, h, strict=True))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7, ncol=2, loc="upper right")
    return fig


def fig_residuals(d):
    f = d.finals
    pred = np.array([d.fit.loss(n, t) for n, t in zip(f["params_fit"], f["tokens"],
                                                       strict=True)])
    obs = f["final_loss"].to_numpy()
    col = _size_colors(f["params_fit"])
    colors = [col[n] for n in f["params_fit"]]
    fig, (a1, a2) = _figure(8.6, 3.8, 2)
    a1.scatter(obs, pred, c=colors, s=25, zorder=3)
    both = [*obs, *pred]
    lim = [min(both), max(both)]
    a1.plot(lim, lim, "k-", lw=0.8)
    _lim(a1, "x", both)
    _lim(a1, "y", both)
    a1.set_xlabel("measured loss (nats/token)")
    a1.set_ylabel("fitted loss (nats/token)")
    a1.set_title("fitted vs measured")
    rel = (pred - obs) / obs * 100
    a2.scatter(f["flops_6nd"], rel, c=colors, s=25, zorder=3)
    a2.axhline(0, color="k", lw=0.8)
    _lim(a2, "x", f["flops_6nd"], log=True)
    _lim(a2, "y", [*rel, 0.0])
    a2.set_xlabel("training compute C (FLOPs, 6ND)")
    a2.set_ylabel("(fitted − measured) / measured (%)")
    a2.set_title(f"residuals: RMS {np.sqrt(np.mean(rel ** 2)):.2f} %")
    return fig


def fig_optimal(d):
    from sweep.fit.chinchilla import compute_optimal

    f = d.finals
    cs = _grid(d, 60)
    cmax = float(f["flops_6nd"].max())
    opt = np.array([compute_optimal(d.fit, c) for c in cs])
    fig, axes = _figure(9.0, 3.9, 2)
    s = d.fit.samples
    r = d.rec
    n_rec = r.flops / 6.0 / r.tokens
    inside = cs <= cmax
    for j, (ax, what) in enumerate(zip(axes, ("N_opt (parameters)", "D_opt (tokens)"),
                                       strict=True)):
        ax.plot(cs[inside], opt[inside, j], "-", color="C3", lw=2,
                label=f"fit: ∝ C^{d.fit.allocation['ab'[j]]:.2f}")
        ax.plot(cs[~inside], opt[~inside, j], "--", color="C3", lw=2, label="extrapolated")
        extra = list(opt[:, j])
        if s is not None and len(s):
            s_ = np.asarray(s)
            al, be, A, B = s_[:, 3], s_[:, 4], s_[:, 1], s_[:, 2]
            with np.errstate(all="ignore"):
                g = (al * A / (be * B)) ** (1 / (al + be))
                n = g[:, None] * (cs[None] / 6) ** (be / (al + be))[:, None]
                v = n if j == 0 else cs[None] / 6 / n
                v = np.where(np.isfinite(v) & (v > 0), v, np.nan)
                lo, hi = np.nanpercentile(v, [2.5, 97.5], axis=0)
            ok = np.isfinite(lo) & np.isfinite(hi)
            ax.fill_between(cs[ok], lo[ok], hi[ok], color="C3", alpha=0.15, lw=0,
                            label="95 % bootstrap")
        c0, y0 = cs[len(cs) // 2], opt[len(cs) // 2, j]
        for slope, ls, lab in (((0.73, 0.27)[j], ":", "Kaplan"), (0.5, "--", "Chinchilla")):
            ax.plot(cs, y0 * (cs / c0) ** slope, ls, color="grey", lw=1.2,
                    label=f"{lab} slope {slope}")
        data = [*f["params_fit" if j == 0 else "tokens"], n_rec if j == 0 else r.tokens]
        ax.plot(f["flops_6nd"], f["params_fit" if j == 0 else "tokens"], ".", color="grey",
                ms=5, label="fitted runs")
        if d.isoflop is not None:
            b = [x for x in d.isoflop.budgets if x.used]
            ys = [x.params_opt if j == 0 else x.tokens_opt for x in b]
            ax.plot([x.budget for x in b], ys, "s", color="C0", ms=6, label="isoFLOP minima")
            extra += ys
        ax.axvline(d.target, color="k", lw=0.8, ls=":")
        _lim(ax, "x", [*f["flops_6nd"], d.target], cs, log=True)
        _lim(ax, "y", data, extra, log=True)
        ax.set_xlabel("training compute C (FLOPs, 6ND)")
        ax.set_ylabel(what)
        ax.legend(fontsize=7)
    axes[0].set_title("compute-optimal model size")
    axes[1].set_title("compute-optimal tokens")
    return fig


CAPTIONS = {
    "loss_curves.png": "Loss curves by model size.",
    "isoflop.png": "IsoFLOP profiles: loss against N at fixed compute, with least-squares "
                   "parabolas in ln N.",
    "frontier.png": "Compute frontier L(C) = min over N of the fitted L(N, C/6N); solid within "
                    "the sweep, dashed where extrapolated; band: 95 % bootstrap interval (cut at "
                    "ln(vocab), non-finite parts dropped); star: the target compute. Axes cover "
                    "the data and the target (at most 10× beyond).",
    "residuals.png": "Fitted against measured final losses.",
    "optimal.png": "Compute-optimal N and D against C with 95 % bootstrap bands and the "
                   "reference slopes of Kaplan et al. (N ∝ C^0.73) and Hoffmann et al. "
                   "(N ∝ C^0.5), drawn through the fitted curve at mid-range; dashed: "
                   "extrapolated.",
}


def render(d) -> dict[str, Any]:
    """file name → matplotlib Figure, in page order; limits drawn go to ``d.limits``."""
    import matplotlib

    makers = [("loss_curves.png", fig_curves)] if len(d.curves) else []
    if d.isoflop is not None:
        makers.append(("isoflop.png", fig_isoflop))
    makers += [("frontier.png", fig_frontier), ("residuals.png", fig_residuals),
               ("optimal.png", fig_optimal)]
    out = {}
    with matplotlib.rc_context(STYLE):
        for name, make in makers:
            fig = make(d)
            fig.tight_layout()
            out[name] = fig
            d.limits[name] = [(ax.get_xlim(), ax.get_ylim()) for ax in fig.axes]
    return out


def figure_files(html_path: Path) -> list[Path]:
    """The PNG files an index.html references (for tests and users)."""
    import re

    return [html_path.parent / m for m in re.findall(r'src="([^"]+\.png)"', html_path.read_text())]
