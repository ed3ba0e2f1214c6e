"""Fitting commands beyond `sweep fit`: isoflop (Approach 2), envelope (Approach 1), kaplan,
compare; plus the options and the point loading `sweep fit` shares with them.

Parse → load points (sweep.study: a sweep's valid points, or a CSV) → fit → print. Results on
stdout (a table, or one JSON object with --json); warnings on stderr.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from sweep.cli.options import (SWEEP, bootstrap_options, emit, json_option, overrides_argument,
                               root_option)
from sweep.errors import DataError

POINTS = ["params", "tokens", "flops", "loss"]


@dataclass
class Source:
    """Fit input of one sweep or CSV: its valid points and, for a CSV, its own columns."""

    label: str
    points: Any  # DataFrame: params, tokens, flops (6ND), loss (nats/token) (sweep.study)
    raw: Any  # DataFrame: the CSV's own columns as text (same rows), or the sweep's points
    conventions: dict[str, str]


def load_source(name: str | None, data: str | None, mapping: str | None, root: str,
                overrides: Sequence[str] = ()) -> Source:
    """The valid points of sweep NAME (sweep.study.sweep_points, N per the sweep's fit.params)
    or of --data CSV (sweep.study.csv_points)."""
    from sweep import study
    from sweep.fit.points import parse_map

    _check_name_or_data(name, data, mapping)
    if data is not None:
        from sweep.fit.points import read_table

        pts = study.csv_points(data, parse_map(mapping) if mapping else None)
        return Source(str(data), pts, read_table(data), dict(pts.attrs["conventions"]))
    from sweep.store import Store

    with Store(Path(root), create=False) as store:
        cfg = study.sweep_config(store, name, overrides)
    pts = study.sweep_points(name, Path(root), cfg.fit.params)
    conv = dict(pts.attrs["conventions"])
    pts = pts[pts["valid"]].reset_index(drop=True)
    return Source(f"sweep '{name}'", pts, pts, conv)


def _check_name_or_data(name: str | None, data: str | None, mapping: str | None) -> None:
    if data is not None and name is not None:
        raise DataError("give either a sweep NAME or --data FILE, not both")
    if data is None and name is None:
        raise DataError("give a sweep NAME or --data FILE.csv")
    if data is None and mapping:
        raise DataError("--map applies only with --data")


def _pairs(values: Sequence[str], what: str, parse: Callable[[str], Any]) -> dict[str, Any]:
    out = {}
    for v in values:
        k, sep, val = v.partition("=")
        if not sep:
            raise DataError(f"{what} {v!r} is not NAME=VALUE")
        try:
            out[k.strip()] = parse(val.strip())
        except ValueError:
            raise DataError(f"{what} {v!r}: {val.strip()!r} is not a valid value") from None
    return out


def _bound(text: str) -> tuple[float, float]:
    lo, sep, hi = text.partition(":")
    if not sep:
        raise ValueError(text)
    return float(lo), float(hi)


def fit_options(f: Callable) -> Callable:
    """The Approach 3 options of `sweep fit` (method, dropped rows, fixed, bounds, weights...)."""
    opts = [
        click.option("--method", type=click.Choice(["chinchilla", "hoffmann"]),
                     default="chinchilla", show_default=True,
                     help="chinchilla: variable projection + Newton (fast, robust); hoffmann: "
                          "L-BFGS-B from Hoffmann et al.'s grid of starts, tight tolerances."),
        click.option("--starts", type=click.IntRange(1, 4500), default=20, show_default=True,
                     help="hoffmann: L-BFGS-B from this many best of the 4500 grid starts."),
        click.option("--drop-highest-loss", "drop", type=click.IntRange(0), default=0,
                     metavar="K", help="Drop the K rows with the highest loss before fitting "
                     "(Besiroglu et al.'s 240 Chinchilla rows are the 245 minus the 5 highest)."),
        click.option("--delta", type=float, default=None,
                     help="Huber threshold on log-loss residuals (default: fit.delta = 1e-3)."),
        click.option("--fix", multiple=True, metavar="NAME=VALUE",
                     help="Fix a parameter (E, A, B, alpha, beta), e.g. --fix E=1.69; repeatable."),
        click.option("--bound", multiple=True, metavar="NAME=LO:HI",
                     help="Bound E, alpha or beta, e.g. --bound alpha=0.1:1; repeatable."),
        click.option("--weights", "weight_col", metavar="COL",
                     help="--data: per-point weights from this CSV column."),
        click.option("--penalty", type=click.FloatRange(0), default=0.0, show_default=True,
                     help="Over-estimation penalty: residuals with predicted > observed loss "
                          "weigh 1 + PENALTY times more."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def run_fit(name: str | None, data: str | None, mapping: str | None, root: str,
            overrides: Sequence[str], at: list[tuple[float, float]], bootstrap: int | None,
            seed: int | None, method: str, starts: int, drop: int, delta: float | None,
            fix: Sequence[str], bound: Sequence[str], weight_col: str | None, penalty: float):
    """The (cached) Approach 3 fit of sweep NAME (sweep.study.sweep_fit) or of --data CSV
    (sweep.study.fit_csv): both through sweep.study.fit_points. Returns a records.Fit."""
    from sweep import study
    from sweep.fit.points import parse_map

    _check_name_or_data(name, data, mapping)
    opts: dict[str, Any] = dict(method=method, starts=starts, drop=drop, penalty=penalty,
                                fixed=_pairs(fix, "--fix", float) or None,
                                bounds=_pairs(bound, "--bound", _bound) or None)
    if data is None:
        if weight_col is not None:
            raise DataError("--weights COL applies only with --data")
        return study.sweep_fit(name, Path(root), overrides, at=at, bootstrap=bootstrap,
                               seed=seed, delta=delta, **opts)
    if weight_col is not None:
        import pandas as pd

        from sweep.fit.points import read_table

        raw = read_table(data)
        if weight_col not in raw.columns:
            raise DataError(f"{data}: no column {weight_col!r} for --weights")
        opts["weights"] = tuple(pd.to_numeric(raw[weight_col], errors="coerce").astype(float))
    return study.fit_csv(data, parse_map(mapping) if mapping else None, at=at,
                         bootstrap=1000 if bootstrap is None else bootstrap,
                         seed=0 if seed is None else seed,
                         delta=1e-3 if delta is None else delta, **opts)


LAW_CHOICES = ["chinchilla", "auto", "chinchilla-equal", "kaplan", "mpl", "curve"]  # study_law

law_option = click.option(
    "--law", type=click.Choice(LAW_CHOICES), default="chinchilla", show_default=True,
    help="chinchilla: the plain Approach 3 fit. auto rollout-validates every candidate "
         "(chinchilla, chinchilla-equal with alpha = beta, kaplan, and mpl, the multi-power "
         "whole-curve law, on a sweep) by leave-largest-compute-out prediction error and "
         "predicts with a validation-weighted average (says which); curve is Tissue's "
         "whole-curve law; a named law is rollout-validated alone. "
         "Intervals: bootstrap widened by the rollout's out-of-sample error. Too few budgets "
         "for a rollout: auto falls back to chinchilla, unvalidated (a warning says so).")

_PLAIN_ONLY = {"method": "chinchilla", "starts": 20, "delta": None, "fix": (), "bound": (),
               "weight_col": None, "penalty": 0.0}


def run_law_fit(name: str | None, data: str | None, mapping: str | None, root: str,
                overrides: Sequence[str], at: list[tuple[float, float]], bootstrap: int | None,
                seed: int | None, law: str, drop: int = 0, **plain: Any):
    """`sweep fit --law LAW` (not chinchilla) → sweep.study_law.LawFit; the options of the
    plain fit only (--method, --fix, ...) are refused in one line."""
    from sweep import study_law
    from sweep.fit.points import parse_map

    _check_name_or_data(name, data, mapping)
    for k, v in plain.items():
        if k in _PLAIN_ONLY and v != _PLAIN_ONLY[k]:
            opt = {"weight_col": "weights", "fix": "fix", "bound": "bound"}.get(k, k)
            raise DataError(f"--{opt} applies only with --law chinchilla")
    if data is None:
        return study_law.sweep_law_fit(name, Path(root), overrides, law=law, at=at,
                                       bootstrap=bootstrap, seed=seed, drop=drop)
    return study_law.csv_law_fit(data, parse_map(mapping) if mapping else None, law=law, at=at,
                                 bootstrap=bootstrap, seed=0 if seed is None else seed,
                                 drop=drop)


def _f(x: Any, fmt: str = ".4f") -> str:
    return "-" if x is None or x != x else format(x, fmt)


def law_text(lf) -> str:
    """Text of `sweep fit --law LAW`: the rollout table, what predicts, the predictions."""
    from sweep.diagnostics import note

    sel = lf.sel
    steps = [c for c in sel.table.columns if c.startswith("step")]
    n_steps = max(len(sel.steps) - 1, 0)
    how = (f"leave-largest-compute-out rollout, {n_steps} steps (+1 calibration)" if n_steps
           else "NOT rollout-validated (too few budgets)")
    lines = [f"law selection (--law {lf.law}), {lf.base.n_points} points: {how}, budgets "
             "C = 6ND FLOPs; error = mean |L_hat/L - 1| on held-out points (L in nats/token)",
             "  " + f"{'law':<17}" + "".join(f"{s:>8}" for s in steps)
             + f"{'mean':>8}{'coverage':>10}{'weight':>8}"]
    for r in sel.table.to_dict(orient="records"):
        lines.append("  " + f"{r['law']:<17}" + "".join(f"{_f(r[s]):>8}" for s in steps)
                     + f"{_f(r['mean_abs_rel_error']):>8}{_f(r['coverage'], '.0%'):>10}"
                     f"{_f(r['weight'], '.2f'):>8}")
    if sel.steps and lf.law == "auto":
        lines.append(f"  auto ({sel.combine}, weights from earlier steps only): error "
                     f"{_f(sel.nested_error)}, coverage {_f(sel.nested_coverage, '.0%')}; "
                     f"plain chinchilla: error {_f(sel.chinchilla_error)}")
    lines.append(f"  predicts with: {lf.predicts_with()} (95% intervals: bootstrap over "
                 "points" + (", widened by the rollout's out-of-sample error)" if n_steps
                             else " only)"))
    for k, f in sel.fits.items():
        lines.append(f"  {k}: " + "  ".join(f"{p}={v:.4g}" for p, v in f.params.items()))
    alloc = lf.fit if lf.fit is not None else lf.base
    a = alloc.allocation
    lines.append(f"  allocation ({alloc.method}{'' if lf.fit is not None else ', the plain fit'}"
                 f"): N_opt ∝ C^{a['a']:.3f}, D_opt ∝ C^{a['b']:.3f} (recommend/next --law "
                 f"{lf.law} choose runs by it and predict their loss with {lf.predicts_with()})")
    for p in lf.predictions:
        lines.append(f"  predict N={p.params:.4g} D={p.tokens:.4g} (C={p.flops:.4g} FLOPs "
                     f"6ND): {p.loss:.4f} [{p.loss_lo95:.4f}, {p.loss_hi95:.4f}] nats/token"
                     + note(p.trust, p.extrapolation, p.warnings))
    if lf.base.conventions:
        lines.append("  conventions: " + "; ".join(f"{k}: {v}"
                                                   for k, v in lf.base.conventions.items()))
    lines += [f"  warning: {w}" for w in sel.warnings]
    lines += [f"  warning (plain chinchilla fit, whose data range places predictions): {w}"
              for w in lf.base.warnings if w not in sel.warnings]
    return "\n".join(lines)


def isoflop_text(label: str, f) -> str:
    ci = f.ci95
    rng = lambda k: f"95% CI [{ci[k][0]:.3f}, {ci[k][1]:.3f}]" if k in ci else "no CI"  # noqa
    lines = [f"{label or 'isoFLOP'}: Approach 2, {f.n_points} points, "
             f"{sum(b.used for b in f.budgets)}/{len(f.budgets)} budgets used "
             f"(C: FLOPs, {f.conventions.get('flops')}; N: params {f.conventions.get('params')})",
             f"  N* ∝ C^a  a = {f.a:.3f}  {rng('a')}  (OLS s.e. {f.se['a']:.3f})",
             f"  D* ∝ C^b  b = {f.b:.3f}  {rng('b')}  (OLS s.e. {f.se['b']:.3f})"]
    for b in f.budgets:
        if b.used:
            lines.append(f"    C={b.budget:.3g} FLOPs: {b.n_points} pts, N*={b.params_opt:.4g} "
                         f"params, D*={b.tokens_opt:.4g} tokens, L*={b.loss_opt:.4f} nats/token")
    lines += [f"  warning: {w}" for w in f.warnings]
    return "\n".join(lines)


@click.command()
@click.argument("name", type=SWEEP, required=False)
@overrides_argument
@click.option("--data", type=click.Path(dir_okay=False),
              help="IsoFLOP points from a CSV (params, loss, tokens or flops; budget optional).")
@click.option("--map", "mapping", help="Map columns: params=COL,tokens=COL,flops=COL,loss=COL.")
@click.option("--by", default=None, metavar="COL",
              help="Fit each value of this column separately (default: 'experiment' if present).")
@click.option("--include-outliers", is_flag=True,
              help="Keep rows whose 'outlier' column is true (dropped by default).")
@click.option("--compute", type=float, multiple=True, metavar="C",
              help="Also give N*(C) and D*(C) at C FLOPs (data's convention); repeatable.")
@bootstrap_options(over="points within budgets")
@json_option
@root_option
def isoflop(name: str | None, overrides: tuple[str, ...], data: str | None, mapping: str | None,
            by: str | None, include_outliers: bool, compute: tuple[float, ...], bootstrap: int,
            seed: int, as_json: bool, root: str) -> None:
    """Approach 2: isoFLOP parabolas of loss in ln N per budget → N*(C) ∝ C^a, D*(C) ∝ C^b.

    Points of sweep NAME (C = 6ND, budgets grouped to 0.05 dex) or of --data FILE.csv (its
    'budget' column when present). Warns per budget about too few points, weak or negative
    curvature, minima at the grid edge or off-centre.
    """
    from sweep.fit.isoflop import fit_isoflop

    src = load_source(name, data, mapping, root, overrides)
    pts = src.points[POINTS].copy()
    raw = src.raw.reset_index(drop=True)
    if data is not None and "budget" in raw:
        pts["budget"] = raw["budget"].astype(float)
    by = by if by is not None else ("experiment" if "experiment" in raw else None)
    if by is not None and by not in raw:
        raise DataError(f"{src.label}: no column {by!r} for --by")
    keep = (~raw["outlier"].astype(str).str.strip().str.lower().isin(("true", "1", "yes"))
            if "outlier" in raw and not include_outliers else None)
    groups = {"": pts} if by is None else {str(k): g for k, g in pts.groupby(raw[by].astype(str))}
    fits = {}
    for label, g in groups.items():
        g = g[keep.loc[g.index]] if keep is not None else g
        fits[label] = fit_isoflop(g, bootstrap=bootstrap, seed=seed, label=label)
        fits[label].conventions.update(src.conventions if data is None else {})
    if as_json:
        emit({"method": "isoflop", "by": by, "outliers_dropped": keep is not None,
              "fits": {k: dict(f.to_dict(), optima=[f.optimum(c) for c in compute])
                       for k, f in fits.items()}})
        return
    for label, f in fits.items():
        click.echo(isoflop_text(label or src.label, f))
        for c in compute:
            o = f.optimum(c)
            click.echo(f"  at C={c:.3g} FLOPs: N* = {o['params']:.4g} params "
                       f"[{o.get('params_lo95', float('nan')):.4g}, "
                       f"{o.get('params_hi95', float('nan')):.4g}], D* = {o['tokens']:.4g} tokens")


def _fit_arg(value: str, root: str, bootstrap: int | None, seed: int | None):
    """The fit of a sweep name (cached, its config's settings unless given) or of a CSV path
    (ends in .csv or is an existing file)."""
    from sweep import study

    if value.endswith(".csv") or Path(value).is_file():
        return study.fit_csv(value, bootstrap=1000 if bootstrap is None else bootstrap,
                             seed=0 if seed is None else seed, validate=False)
    return study.sweep_fit(SWEEP.convert(value, None, None), Path(root), bootstrap=bootstrap,
                           seed=seed)


@click.command()
@click.argument("a")
@click.argument("b")
@click.option("--compute", type=float, multiple=True, metavar="C",
              help="Budgets in FLOPs (6ND); repeatable (default: 1e18 ... 1e24, every decade).")
@click.option("--bootstrap", type=click.IntRange(0, 100000), default=None,
              help="Bootstrap resamples (default: a sweep's fit.bootstrap; 1000 for a CSV).")
@click.option("--seed", type=int, default=None,
              help="Bootstrap seed (default: a sweep's fit.seed; 0 for a CSV).")
@json_option
@root_option
def compare(a: str, b: str, compute: tuple[float, ...], bootstrap: int | None, seed: int | None,
            as_json: bool, root: str) -> None:
    """B's compute multiplier over A: the compute A needs to reach B's loss at budget C, / C.

    A and B are sweep names or CSV files (columns params, loss, tokens or flops). Both get an
    Approach 3 fit with bootstrap intervals (a sweep's is the one `sweep fit` cached); > 1
    means B is better ("worth more than scale").
    """
    from sweep.diagnostics import note
    from sweep.fit.chinchilla import compute_optimal
    from sweep.fit.compare import compare as compare_fits

    fits = [_fit_arg(s, root, bootstrap, seed) for s in (a, b)]
    res = compare_fits(fits[0], fits[1], list(compute) or [10.0**k for k in range(18, 25)])
    # where each fit's compute-optimal loss at C stands in that fit's data
    preds = [[f.predict(*compute_optimal(f, c)) for c in res.compute] for f in fits]
    warns = list(res.warnings) + [f"{s}: {w}" for s, f in zip((a, b), fits) for w in f.warnings]
    if as_json:
        emit(dict(res.to_dict(), a=a, b=b, fit_a=fits[0].to_dict(), fit_b=fits[1].to_dict(),
                  warnings=warns, **{f"{k}_{s}": [getattr(p, k) for p in ps]
                                     for s, ps in zip("ab", preds)
                                     for k in ("trust", "extrapolation")}))
        return
    click.echo(f"compute multiplier of {b} over {a} (C in FLOPs, 6ND; loss in nats/token)")
    for i, (c, m, lo, hi, la, lb) in enumerate(zip(
            res.compute, res.multiplier, res.multiplier_lo95, res.multiplier_hi95, res.loss_a,
            res.loss_b, strict=True)):
        ci = f"95% CI [{lo:.3g}, {hi:.3g}]" if lo is not None else ""
        na, nb = (f" (outside: {p.warnings[0]})" if p.trust == "outside" else
                  note(p.trust, p.extrapolation, p.warnings[:1])
                  for p in (preds[0][i], preds[1][i]))
        click.echo(f"  C={c:.3g}: x{m:.3g} {ci}   L*_A={la:.4f}{na}   L*_B={lb:.4f}{nb}")
    for w in warns:
        click.echo(f"warning: {w}", err=True)


@click.command()
@click.argument("name", type=SWEEP, required=False)
@click.option("--data", type=click.Path(dir_okay=False), help="Points from a CSV instead.")
@click.option("--map", "mapping", help="Map columns: params=COL,tokens=COL,flops=COL,loss=COL.")
@click.option("--law", type=click.Choice(["N", "D", "C"]), default="N", show_default=True,
              help="L(N) = (N_c/N)^a, L(D) = (D_c/D)^a, or the compute frontier L(C).")
@click.option("--no-floor", is_flag=True, help="Without the irreducible term E.")
@click.option("--bootstrap", type=click.IntRange(0, 100000), default=200, show_default=True)
@json_option
@root_option
def kaplan(name: str | None, data: str | None, mapping: str | None, law: str, no_floor: bool,
           bootstrap: int, as_json: bool, root: str) -> None:
    """Kaplan et al. single-variable law L(N), L(D) or L(C), with or without a floor E."""
    from sweep.fit.kaplan import fit_kaplan

    src = load_source(name, data, mapping, root)
    f = fit_kaplan(src.points[POINTS], law, irreducible=not no_floor, bootstrap=bootstrap)
    if as_json:
        emit(f.to_dict())
        return
    unit = {"N": "params", "D": "tokens", "C": "FLOPs (6ND)"}[law]
    ci = lambda k: f"[{f.ci95[k][0]:.4g}, {f.ci95[k][1]:.4g}]" if k in f.ci95 else ""  # noqa
    click.echo(f"{f.law} = E + ({law}_c/{law})^alpha, {f.n_points} points ({law} in {unit}, "
               f"L in nats/token)\n  alpha {f.alpha:.4g} {ci('alpha')}\n  {law}_c {f.x_c:.4g} "
               f"{ci('x_c')}\n  E {f.E:.4g} {ci('E') if f.irreducible else '(fixed at 0)'}")
    for w in f.warnings:
        click.echo(f"  warning: {w}")
