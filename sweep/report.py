"""`sweep report`: one HTML page with PNG figures (matplotlib, Agg) beside it, from the store.

Figures: loss curves by size; isoFLOP profiles with their parabolas (sweeps with FLOP budgets);
the frontier L(C) with its 95 % extrapolation band and the target; fitted vs measured losses;
N_opt(C) and D_opt(C) with Kaplan's (0.73) and Chinchilla's (0.5) reference slopes. Tables: the
fit, the recommendation at the target, the allocation of k× more compute, cost/energy/carbon.
Units: N = parameters in the fit's convention, D = tokens, C = 6ND FLOPs, loss in nats/token.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sweep.records import Fit, Recommendation


@dataclass
class ReportData:
    name: str
    fit: Fit
    finals: Any  # DataFrame: store.finals_df + "params_fit" (N in the fit's convention)
    curves: Any  # DataFrame: store.curves_df
    rec: Recommendation
    target: float
    param_label: str
    isoflop: Any = None  # sweep.fit.isoflop.IsoFlopFit or None
    isoflop_note: str = ""
    allocation: list = field(default_factory=list)  # allocation.AllocationRow
    baseline: Any = None  # allocation.Baseline
    costs: list = field(default_factory=list)  # (assumptions, [(label, Cost)])
    checks: list = field(default_factory=list)  # predictions.PredictionCheck

    @classmethod
    def collect(cls, name: str, root: Path, *, target: float | None = None,
                hardware: Sequence[Any] = (), ks: Sequence[float] = (2, 4, 10, 100),
                bootstrap: int | None = None) -> ReportData:
        from sweep import api
        from sweep.allocation import Baseline, allocation_table
        from sweep.errors import FitError
        from sweep.recommend import recommend
        from sweep.store import Store

        with Store(root, create=False) as store:
            cfg = api.sweep_config(store, name)
            finals = store.finals_df([name])
            curves = store.curves_df([name])
        fit = api.fit_sweep(name, root, bootstrap=bootstrap)
        col = "params_nonembed" if cfg.fit.params == "nonembed" else "params"
        finals = finals.assign(params_fit=finals[col].astype(float))
        target = target or 10.0 * float(finals["flops_6nd"].max())
        rec = recommend(fit, target, cfg)
        iso, note = None, ""
        if cfg.budget.flops:
            from sweep.fit.isoflop import fit_isoflop

            import pandas as pd

            pts = pd.DataFrame({"params": finals["params_fit"], "tokens": finals["tokens"],
                                "loss": finals["final_loss"],
                                "budget": _budgets(finals["params_fit"], finals["tokens"])})
            try:
                iso = fit_isoflop(pts, bootstrap=200)
            except FitError as exc:
                note = f"no isoFLOP fit: {exc}"
        else:
            note = ("this sweep has token budgets (the same tokens for every size), not isoFLOP "
                    "budgets: no isoFLOP profiles. Plan with budget=flops for them.")
        big = finals.loc[finals["flops_6nd"].idxmax()]
        base = Baseline(float(big["params_fit"]), float(big["tokens"]),
                        cfg.train.batch_size * cfg.model.seq_len, f"run {big['run_id']}")
        costs = [(a, api.study_costs(name, root, [(f"recommended run (C={target:.3g})",
                                                   rec.flops)], a)) for a in hardware]
        return cls(name, fit, finals, curves, rec, target, col, iso, note,
                   allocation_table(fit, base, ks), base, costs, api.prediction_checks(name, root))


def _budgets(params, tokens):
    """6ND snapped to 0.05 dex: the isoFLOP budget of each run."""
    return 10 ** (np.round(np.log10(6.0 * params * tokens) * 20) / 20)


# ---- figures -------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.grid": True, "grid.alpha": 0.3,
                         "axes.spines.top": False, "axes.spines.right": False,
                         "legend.frameon": False, "savefig.dpi": 150})
    return plt


def _size_colors(sizes: Sequence[float]):
    plt = _plt()
    cmap = plt.get_cmap("viridis")
    s = sorted(set(sizes))
    return {n: cmap(0.05 + 0.85 * i / max(len(s) - 1, 1)) for i, n in enumerate(s)}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    _plt().close(fig)
    return path


def fig_curves(d: ReportData, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    col = _size_colors(d.finals["params_fit"])
    sizes = d.finals.set_index("run_id")["params_fit"]
    seen = set()
    for rid, g in d.curves.groupby("run_id"):
        if rid not in sizes:
            continue
        n = sizes[rid]
        tr = g.dropna(subset=["train_loss"])
        if len(tr) > 4:  # light smoothing of the noisy train loss
            y = tr["train_loss"].rolling(5, min_periods=1, center=True).mean()
            ax.plot(tr["tokens"], y, color=col[n], lw=1.0, alpha=0.55)
        ev = g.dropna(subset=["eval_loss"])
        ax.plot(ev["tokens"], ev["eval_loss"], "o", color=col[n], ms=4,
                label=f"N = {n:.3g}" if n not in seen else None)
        seen.add(n)
    ax.set_xscale("log")
    ax.set_xlabel("training tokens D")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(f"{d.name}: loss curves (lines: train, smoothed; dots: held-out)")
    h, lab = ax.get_legend_handles_labels()
    order = np.argsort([float(s.split("= ")[1]) for s in lab])
    ax.legend([h[i] for i in order], [lab[i] for i in order], fontsize=8,
              title=f"size ({d.param_label})", title_fontsize=8)
    return _save(fig, path)


def fig_isoflop(d: ReportData, path: Path) -> Path:
    plt = _plt()
    iso = d.isoflop
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    f = d.finals
    groups = _budgets(f["params_fit"], f["tokens"])
    cmap = plt.get_cmap("plasma")
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
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel(f"parameters N ({d.param_label})")
    ax.set_ylabel("final loss (nats/token)")
    ax.set_title(f"isoFLOP profiles (Approach 2): a = {iso.a:.2f}; ★ = parabola minimum")
    ax.legend(fontsize=8, title="budget (FLOPs, 6ND)", title_fontsize=8)
    return _save(fig, path)


def _frontier(fit: Fit, cs: np.ndarray):
    from sweep.fit.chinchilla import compute_optimal

    preds = [fit.predict(*compute_optimal(fit, c)) for c in cs]
    return (np.array([p.loss for p in preds]), np.array([p.loss_lo95 for p in preds]),
            np.array([p.loss_hi95 for p in preds]))


def fig_frontier(d: ReportData, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    f = d.finals
    col = _size_colors(f["params_fit"])
    for n, g in f.groupby("params_fit"):
        ax.plot(g["flops_6nd"], g["final_loss"], "o", color=col[n], ms=5, label=f"N = {n:.3g}")
    cmin, cmax = float(f["flops_6nd"].min()), float(f["flops_6nd"].max())
    hi = max(d.target, cmax) * 3
    cs = np.logspace(math.log10(cmin) - 0.2, math.log10(hi), 80)
    loss, lo, up = _frontier(d.fit, cs)
    inside = cs <= cmax
    ax.fill_between(cs, lo, up, color="C3", alpha=0.18, lw=0, label="95 % bootstrap band")
    ax.plot(cs[inside], loss[inside], "-", color="C3", lw=2, label="fitted frontier L(C)")
    ax.plot(cs[~inside], loss[~inside], "--", color="C3", lw=2, label="extrapolation")
    r = d.rec
    ax.errorbar([d.target], [r.predicted_loss],
                yerr=[[r.predicted_loss - r.predicted_loss_lo95],
                      [r.predicted_loss_hi95 - r.predicted_loss]],
                fmt="*", color="k", ms=12, capsize=3,
                label=f"target C = {d.target:.2g}: {r.predicted_loss:.3f}")
    for ch in d.checks:
        if ch.measured_loss is not None:
            ax.plot([ch.record.flops], [ch.measured_loss], "D", mfc="none", mec="C1", ms=8,
                    mew=1.5, label="appended run (measured)")
    ax.axvline(cmax, color="grey", lw=0.8, ls=":")
    ax.text(cmax, ax.get_ylim()[0], " largest run", va="bottom", fontsize=8, color="grey")
    ax.set_xscale("log")
    ax.set_xlabel("training compute C (FLOPs, 6ND)")
    ax.set_ylabel("final loss (nats/token)")
    p = d.fit.params
    ax.set_title(f"compute frontier: E={p['E']:.3g}, α={p['alpha']:.3g}, β={p['beta']:.3g}")
    h, lab = ax.get_legend_handles_labels()
    uniq = dict(zip(lab, h))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7, ncol=2, loc="upper right")
    return _save(fig, path)


def fig_residuals(d: ReportData, path: Path) -> Path:
    plt = _plt()
    f = d.finals
    pred = np.array([d.fit.loss(n, t) for n, t in zip(f["params_fit"], f["tokens"])])
    obs = f["final_loss"].to_numpy()
    col = _size_colors(f["params_fit"])
    colors = [col[n] for n in f["params_fit"]]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8.6, 3.8))
    a1.scatter(obs, pred, c=colors, s=25, zorder=3)
    lim = [min(obs.min(), pred.min()), max(obs.max(), pred.max())]
    pad = 0.03 * (lim[1] - lim[0])
    a1.plot([lim[0] - pad, lim[1] + pad], [lim[0] - pad, lim[1] + pad], "k-", lw=0.8)
    a1.set_xlabel("measured loss (nats/token)")
    a1.set_ylabel("fitted loss (nats/token)")
    a1.set_title("fitted vs measured")
    rel = (pred - obs) / obs * 100
    a2.scatter(f["flops_6nd"], rel, c=colors, s=25, zorder=3)
    a2.axhline(0, color="k", lw=0.8)
    a2.set_xscale("log")
    a2.set_xlabel("training compute C (FLOPs, 6ND)")
    a2.set_ylabel("(fitted − measured) / measured (%)")
    a2.set_title(f"residuals: RMS {np.sqrt(np.mean(rel ** 2)):.2f} %")
    return _save(fig, path)


def fig_optimal(d: ReportData, path: Path) -> Path:
    from sweep.fit.chinchilla import compute_optimal

    plt = _plt()
    f = d.finals
    cmin = float(f["flops_6nd"].min())
    cs = np.logspace(math.log10(cmin) - 0.2, math.log10(max(d.target, f["flops_6nd"].max()) * 3),
                     60)
    opt = np.array([compute_optimal(d.fit, c) for c in cs])
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.9))
    s = d.fit.samples
    for j, (ax, what) in enumerate(zip(axes, ("N_opt (parameters)", "D_opt (tokens)"))):
        ax.plot(cs, opt[:, j], "-", color="C3", lw=2,
                label=f"fit: ∝ C^{d.fit.allocation['ab'[j]]:.2f}")
        if s is not None and len(s):
            s_ = np.asarray(s)
            al, be, A, B = s_[:, 3], s_[:, 4], s_[:, 1], s_[:, 2]
            with np.errstate(all="ignore"):
                g = (al * A / (be * B)) ** (1 / (al + be))
                n = g[:, None] * (cs[None] / 6) ** (be / (al + be))[:, None]
                v = n if j == 0 else cs[None] / 6 / n
            lo, hi = np.nanpercentile(v, [2.5, 97.5], axis=0)
            ax.fill_between(cs, lo, hi, color="C3", alpha=0.15, lw=0, label="95 % bootstrap")
        c0, y0 = cs[len(cs) // 2], opt[len(cs) // 2, j]
        for slope, ls, lab in (((0.73, 0.27)[j], ":", "Kaplan"), (0.5, "--", "Chinchilla")):
            ax.plot(cs, y0 * (cs / c0) ** slope, ls, color="grey", lw=1.2,
                    label=f"{lab} slope {slope}")
        if d.isoflop is not None:
            b = [x for x in d.isoflop.budgets if x.used]
            ax.plot([x.budget for x in b], [x.params_opt if j == 0 else x.tokens_opt for x in b],
                    "s", color="C0", ms=6, label="isoFLOP minima")
        ax.axvline(d.target, color="k", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training compute C (FLOPs, 6ND)")
        ax.set_ylabel(what)
        ax.legend(fontsize=7)
    axes[0].set_title("compute-optimal model size")
    axes[1].set_title("compute-optimal tokens")
    return _save(fig, path)


# ---- page ----------------------------------------------------------------------------------
def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], bold: Sequence[bool] = ()
           ) -> str:
    def cell(x: Any) -> str:
        return html.escape(f"{x:.4g}" if isinstance(x, float) else str(x))

    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>"]
    for i, r in enumerate(rows):
        cls = ' class="best"' if i < len(bold) and bold[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{cell(x)}</td>" for x in r) + "</tr>")
    return "\n".join(out + ["</table>"])


CSS = """body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}
td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
tr.best td{font-weight:bold;background:#eef7ee} figure{margin:1em 0}
figcaption{font-size:0.85em;color:#555} img{max-width:100%} .warn{color:#a40}"""


def write_report(d: ReportData, out: Path) -> Path:
    """Write out/index.html and its PNGs; returns the HTML path."""
    out.mkdir(parents=True, exist_ok=True)
    figs = [("loss_curves.png", fig_curves, "Loss curves by model size."),
            ("frontier.png", fig_frontier, "Compute frontier L(C) = min over N of the fitted "
             "L(N, C/6N); solid within the sweep, dashed where extrapolated; band: 95 % "
             "bootstrap interval; star: the target compute."),
            ("residuals.png", fig_residuals, "Fitted against measured final losses."),
            ("optimal.png", fig_optimal, "Compute-optimal N and D against C with 95 % bootstrap "
             "bands and the reference slopes of Kaplan et al. (N ∝ C^0.73) and Hoffmann et al. "
             "(N ∝ C^0.5), drawn through the fitted curve at mid-range.")]
    if d.isoflop is not None:
        figs.insert(1, ("isoflop.png", fig_isoflop, "IsoFLOP profiles: loss against N at fixed "
                                                     "compute, with least-squares parabolas in ln N."))
    made = [(fn(d, out / name), cap) for name, fn, cap in figs]
    f, p, ci = d.fit, d.fit.params, d.fit.ci95
    fit_rows = [[k, p[k], *(ci.get(k) or ["-", "-"])] for k in ("E", "A", "B", "alpha", "beta")]
    fit_rows += [[k, f.allocation[k], *(ci.get(k) or ["-", "-"])] for k in ("a", "b")]
    r = d.rec
    rec_rows = [["compute (FLOPs, 6ND)", r.compute], ["params (non-embedding)", r.params_nonembed],
                ["params (all)", r.params], ["tokens", r.tokens],
                ["shape", f"width {r.model['width']}, depth {r.model['depth']}, "
                          f"heads {r.model['heads']}"],
                ["LR / batch tokens / steps",
                 f"{r.train['lr']:.3g} / {r.train['batch_tokens']} / {r.train['steps']}"],
                ["predicted loss (95 %)", f"{r.predicted_loss:.4f} [{r.predicted_loss_lo95:.4f}, "
                                          f"{r.predicted_loss_hi95:.4f}]"]]
    al = d.allocation
    parts = [f"<h1>Scaling study <code>{html.escape(d.name)}</code></h1>",
             f"<p>{len(d.finals)} completed runs; generated {time.strftime('%Y-%m-%d %H:%M')}. "
             f"N = {html.escape(d.param_label)}, D = tokens, C = 6ND FLOPs, "
             "loss = held-out nats/token at the end of each run's schedule.</p>",
             "<h2>Fit: L(N, D) = E + A/N<sup>α</sup> + B/D<sup>β</sup></h2>",
             _table(["parameter", "estimate", "95 % lo", "95 % hi"], fit_rows)]
    parts += [f'<p class="warn">warning: {html.escape(w)}</p>' for w in f.warnings]
    parts += [f"<h2>Recommended run at C = {d.target:.3g} FLOPs</h2>",
              _table(["", ""], rec_rows)]
    if d.checks:
        parts += ["<h2>Predictions of appended runs</h2>",
                  "<ul>" + "".join(f"<li>{html.escape(c.text())}</li>" for c in d.checks)
                  + "</ul>"]
    for path, cap in made:
        parts.append(f'<figure><img src="{path.name}" alt="{html.escape(cap)}">'
                     f"<figcaption>{html.escape(cap)}</figcaption></figure>")
    if d.isoflop_note:
        parts.append(f"<p><em>{html.escape(d.isoflop_note)}</em></p>")
    b = d.baseline
    parts += ["<h2>Spending k× more compute (T5-style comparison)</h2>",
              f"<p>Baseline: {html.escape(b.label)}, N0 = {b.params:.4g}, D0 = {b.tokens:.4g}, "
              f"C0 = {b.flops:.4g} FLOPs. Best option per k in bold. L(N, D) has no batch-size "
              "term, so “k× batch” equals “k× steps” here; it holds only below the critical "
              "batch size.</p>",
              _table(["k", "option", "N", "D", "steps", "batch tokens", "loss", "95 % lo",
                      "95 % hi"], [[x.k, x.option, x.params, x.tokens, x.steps, x.batch_tokens,
                                    x.loss, x.loss_lo95, x.loss_hi95] for x in al],
                     [x.best for x in al])]
    if d.costs:
        parts.append("<h2>Cost, energy and carbon</h2><p>Energy = device-hours × power × PUE; "
                     "tCO2e = energy × grid intensity (Patterson et al. 2021). Prices are "
                     "documented assumptions.</p>")
        for a, rows in d.costs:
            parts += [f"<p><b>{html.escape(a.describe())}</b><br><small>"
                      f"{html.escape(a.hardware.source)}; price: "
                      f"{html.escape(a.hardware.price_source)}</small></p>",
                      _table(["what", "FLOPs", "device-hours", "wall hours", "USD", "MWh",
                              "tCO2e", "basis"],
                             [[lab, c.flops, c.device_hours, c.wall_hours, c.usd, c.mwh,
                               c.tco2e, c.basis] for lab, c in rows])]
    conv = "; ".join(f"{k}: {v}" for k, v in f.conventions.items())
    parts.append(f"<p><small>conventions: {html.escape(conv)}</small></p>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>sweep report: "
            f"{html.escape(d.name)}</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>")
    target = out / "index.html"
    tmp = out / "index.html.tmp"
    tmp.write_text(page)
    tmp.replace(target)
    return target


def figure_files(html_path: Path) -> list[Path]:
    """The PNG files an index.html references (for tests and users)."""
    import re

    return [html_path.parent / m for m in re.findall(r'src="([^"]+\.png)"', html_path.read_text())]
