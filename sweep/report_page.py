"""`sweep report` (``report``) and its HTML page: headline (the target's predicted loss with its
trust, the fit's warnings), the fit, the recommendation, the figures of sweep/report.py, the
allocation of k× more compute and cost/energy/carbon. Written atomically (sweep.fsutil).
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sweep import fsutil
from sweep.report import CAPTIONS, STYLE, render
from sweep.report_data import ReportData


# ---- page ----------------------------------------------------------------------------------
def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], bold: Sequence[bool] = ()
           ) -> str:
    def cell(x: Any) -> str:
        return html.escape("-" if x is None else f"{x:.4g}" if isinstance(x, float) else str(x))

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


def _rec_rows(d: ReportData) -> list[list[Any]]:
    r = d.rec
    rows = [["compute (FLOPs, 6ND)", r.compute]]
    if r.model is None or r.train is None:
        rows += [["N (as imported)", r.params], ["tokens", r.tokens],
                 ["shape", "N and D only (no shape rule for imported data)"]]
    else:
        rows += [["params (non-embedding)", r.params_nonembed], ["params (all)", r.params],
                 ["tokens", r.tokens],
                 ["shape", f"width {r.model['width']}, depth {r.model['depth']}, "
                           f"heads {r.model['heads']}"],
                 ["LR / batch tokens / steps",
                  f"{r.train['lr']:.3g} / {r.train['batch_tokens']} / {r.train['steps']}"]]
    return rows + [["predicted loss (95 %, nats/token)",
                    f"{r.predicted_loss:.4f} [{r.predicted_loss_lo95:.4g}, "
                    f"{r.predicted_loss_hi95:.4g}]"],
                   ["trust", f"{r.trust} (×{r.extrapolation:.3g} past the fitted data)"]]


def write_report(d: ReportData, out: Path) -> Path:
    """Write out/index.html and its PNGs for a report_data.ReportData; returns the HTML path."""
    import io

    import matplotlib

    out.mkdir(parents=True, exist_ok=True)
    made = []
    with matplotlib.rc_context(STYLE):
        for name, fig in render(d).items():
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
            made.append((fsutil.atomic_write_bytes(out / name, buf.getvalue()), CAPTIONS[name]))
    f, p, ci = d.fit, d.fit.params, d.fit.ci95
    fit_rows = [[k, p[k], *(ci.get(k) or ["-", "-"])] for k in ("E", "A", "B", "alpha", "beta")]
    fit_rows += [[k, f.allocation[k], *(ci.get(k) or ["-", "-"])] for k in ("a", "b")]
    al = d.allocation
    n_pts = f"{len(d.finals)} points ({int(d.finals['native'].sum())} completed runs)"
    parts = [f"<h1>Scaling study <code>{html.escape(d.name)}</code></h1>",
             f"<p>{n_pts}; generated {time.strftime('%Y-%m-%d %H:%M')}. "
             f"N = {html.escape(d.param_label)}, D = tokens, C = 6ND FLOPs, "
             "loss = held-out nats/token at the end of each run's schedule.</p>",
             "<h2>Headline</h2><ul>"
             + "".join(f"<li>{html.escape(x)}</li>" for x in d.headline())
             + "".join(f'<li class="warn">warning: {html.escape(w)}</li>' for w in f.warnings)
             + "</ul>",
             "<h2>Fit: L(N, D) = E + A/N<sup>α</sup> + B/D<sup>β</sup></h2>",
             _table(["parameter", "estimate", "95 % lo", "95 % hi"], fit_rows),
             f"<h2>Recommended run at C = {d.target:.3g} FLOPs</h2>",
             _table(["", ""], _rec_rows(d))]
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
              f"C0 = {b.flops:.4g} FLOPs. Best option per k in bold, only where its 95 % "
              "interval spans at most 2× and it is not outside the fit. L(N, D) has no "
              "batch-size term, so “k× batch” equals “k× steps” here; it holds only below the "
              "critical batch size.</p>",
              _table(["k", "option", "N", "D", "steps", "batch tokens", "loss", "95 % lo",
                      "95 % hi", "trust"],
                     [[x.k, x.option, x.params, x.tokens, x.steps, x.batch_tokens, x.loss,
                       x.loss_lo95, x.loss_hi95,
                       x.trust + (f" ×{x.extrapolation:.3g}" if x.trust != "inside" else "")]
                      for x in al], [x.best for x in al])]
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
    return fsutil.atomic_write_text(out / "index.html", page)


def report(name: str, root: Path = Path("runs"), out: Path | None = None, *,
           target: float | None = None, hardware: Sequence[object] = (),
           ks: Sequence[float] = (2, 4, 10, 100), bootstrap: int | None = None) -> Path:
    """Write runs/NAME/report/index.html (or ``out``/index.html) with its PNG figures; returns
    the HTML path. ``hardware``: sweep.cost.Assumptions to cost the study and the target run."""
    data = ReportData.collect(name, Path(root), target=target, hardware=list(hardware), ks=ks,
                              bootstrap=bootstrap)
    return write_report(data, Path(out) if out else Path(root) / name / "report")
