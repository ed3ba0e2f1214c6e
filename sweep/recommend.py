"""Fit + compute budget → the next compute-optimal run (a concrete model shape and schedule).

Under C = 6·N·D and L = E + A/N^α + B/D^β, the optimum is N_opt = G·(C/6)^a with
G = (αA/(βB))^(1/(α+β)), a = β/(α+β) (Hoffmann et al. 2022, eq. 4). N_opt is turned into a real
shape by the sweep's own shape rule; the tokens are then C/(6·N) for that shape's N, so the
recommended run spends exactly C. A sweep of imported points has no shape rule: its
recommendation is N and D only (``model`` and ``train`` None).

Every recommendation carries its prediction's place in the fit's trust region (``trust``,
``extrapolation``, ``warnings``). Targets the law cannot reach are refused: a loss some run
already reached, a loss at or below the floor E (any loss when E is not identified: the floor
is unknown), a --params/--loss target whose run falls outside the trust region, a compute budget
too small for one optimizer batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from sweep import hparams, shapes
from sweep.config import SweepConfig
from sweep.diagnostics import e_identified, load_study, note
from sweep.errors import FitError, InputError
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


def fit_params(width: int, depth: int, cfg: SweepConfig, convention: str) -> int:
    """N of a shape in the fit's convention (nonembed | total)."""
    if convention == "total":
        return shapes.params_total(width, depth, cfg.model.vocab, cfg.model.seq_len)
    return shapes.params_nonembed(width, depth)


_fit_params = fit_params  # the name earlier releases used


def min_compute_for_tokens(fit: Fit, tokens: float) -> float:
    """The compute (6ND FLOPs) whose compute-optimal D is ``tokens``: D_opt = (C/6)^(1-a)/G."""
    c6 = optimal_params(fit, 6.0)  # G
    a = fit.params["beta"] / (fit.params["alpha"] + fit.params["beta"])
    return 6.0 * (tokens * c6) ** (1.0 / (1.0 - a))


def recommend(fit: Fit, compute: float, cfg: SweepConfig | None, *,
              target: str = "compute") -> Recommendation:
    """The compute-optimal run for ``compute`` FLOPs (6ND, N in the fit's convention).

    ``cfg`` None: no shape rule (imported points): N and D only. ``target`` says what the user
    asked for (compute | params | loss): a --params/--loss recommendation outside the fit's
    trust region is refused, a --compute one is flagged; any with D < one batch is refused."""
    if not (compute > 0 and math.isfinite(compute)):
        raise InputError(f"compute must be a positive number of FLOPs, got {compute!r}")
    n_opt = optimal_params(fit, compute)
    model = train = None
    batch = fit.trust.min_tokens if fit.trust is not None else None
    if cfg is not None:
        convention = cfg.fit.params
        rule = shape_rule(cfg)
        tgt = n_opt
        for _ in range(4):  # the total-params convention counts embeddings: fixed point
            width, depth, heads = shapes.shape_for_params(
                max(tgt, 1.0), cfg.model.head_dim, depth=rule["depth"], aspect=rule["aspect"])
            if convention != "total":
                break
            tgt = max(1.0, n_opt - (cfg.model.vocab + cfg.model.seq_len) * width)
        n = fit_params(width, depth, cfg, convention)
        tokens = shapes.tokens_for_flops(compute, n)
        hp = hparams.choose(cfg, width, depth, tokens)
        batch = hp.batch_size * cfg.model.seq_len
        model = {"width": width, "depth": depth, "heads": heads}
        train = {"lr": hp.lr, "batch_tokens": batch, "steps": max(1, math.ceil(tokens / batch))}
        params = float(shapes.params_total(width, depth, cfg.model.vocab, cfg.model.seq_len))
        nonembed = float(shapes.params_nonembed(width, depth))
        conv = {"flops": f"6ND with N = params{'' if convention == 'total' else '_nonembed'}",
                "params": "params: all trainable; params_nonembed: without embeddings"}
    else:
        n = params = nonembed = n_opt
        tokens = shapes.tokens_for_flops(compute, n)
        conv = {"flops": "6ND with N as the imported data count it",
                "params": "N only (no shape rule for imported data): params = params_nonembed"
                          " = N"}
    if batch is not None and tokens < batch:
        raise InputError(
            f"{compute:.3g} FLOPs buys {tokens:.3g} tokens at N = {n:.4g}, less than one "
            f"optimizer batch ({batch:.4g} tokens): use at least "
            f"{max(min_compute_for_tokens(fit, batch), shapes.flops_6nd(n, batch)):.3g} FLOPs")
    pred = fit.predict(n, tokens)
    extra = []
    if fit.trust is not None and n_opt < fit.trust.params[0] and n >= fit.trust.params[0]:
        extra.append(f"N_opt = {n_opt:.4g} is below the smallest fitted model "
                     f"({fit.trust.params[0]:.4g}): the compute-optimal size was rounded up to "
                     "the smallest shape")
    warns = tuple(dict.fromkeys([*extra, *pred.warnings, *fit.warnings]))
    if target != "compute" and pred.trust == "outside":
        why = "; ".join(w for w in pred.warnings if w not in fit.warnings)
        raise FitError(f"the run for this --{target} target is outside what the fit can say: "
                       f"{why}")
    return Recommendation(
        compute=compute, params=params, params_nonembed=nonembed, tokens=tokens,
        flops=shapes.flops_6nd(n, tokens), predicted_loss=pred.loss,
        predicted_loss_lo95=pred.loss_lo95, predicted_loss_hi95=pred.loss_hi95,
        model=model, train=train,
        conventions={**conv, "loss": "nats/token", "n_opt_continuous": f"{n_opt:.6g}",
                     **({"law": f"allocation by {fit.method}, loss predicted by "
                                f"{fit.predicted_by}"} if getattr(fit, "predicted_by", "")
                        else {})},
        trust=pred.trust, extrapolation=pred.extrapolation, warnings=warns)


def compute_for_params(fit: Fit, params: float) -> float:
    """The compute (6ND FLOPs) for which ``params`` is the compute-optimal N: inverts
    N_opt = G·(C/6)^a."""
    if not (params > 0 and math.isfinite(params)):
        raise InputError(f"params must be a positive number, got {params!r}")
    p = fit.params
    a = p["beta"] / (p["alpha"] + p["beta"])
    g = optimal_params(fit, 6.0)  # G·1^a
    return 6.0 * (params / g) ** (1.0 / a)


def check_loss_target(fit: Fit, loss: float, points=None) -> None:
    """Refuse a --loss target the law cannot promise: one a fitted run already reached (no need
    to extrapolate), one at or below the floor E, and any other when E is not identified (the
    floor is then unknown). ``points``: params, tokens, loss, run_id."""
    e = fit.params["E"]
    if points is not None and len(points) and loss >= float(points["loss"].min()):
        reached = points[points["loss"] <= loss]
        best = reached.loc[(reached["params"] * reached["tokens"]).idxmin()]
        raise InputError(
            f"loss {loss:g} nats/token is already reached by "
            f"{'point' if best.get('source') == 'import' else 'run'} "
            f"{best.get('provenance', best['run_id'])} "
            f"({best['loss']:.4g} at N = {best['params']:.4g}, D = {best['tokens']:.4g}, "
            f"C = {shapes.flops_6nd(best['params'], best['tokens']):.3g} FLOPs): no need to "
            "extrapolate")
    if fit.trust is not None and points is None and loss >= fit.trust.loss[0]:
        raise InputError(f"loss {loss:g} nats/token is above the smallest fitted loss "
                         f"({fit.trust.loss[0]:.4g}): a fitted run already reached it")
    if not loss > e:
        raise FitError(f"loss {loss:g} is not above the fitted floor E = {e:.4g}:"
                       " no compute reaches it")
    if not e_identified(fit):
        lo_seen = float(points["loss"].min()) if points is not None and len(points) else (
            fit.trust.loss[0] if fit.trust is not None else math.nan)
        ci = fit.ci95.get("E") or [e, e]
        raise FitError(f"E is not identified by these points (95% CI [{ci[0]:.3g}, {ci[1]:.3g}]"
                       f"): the loss floor is unknown, so no compute can be promised to reach "
                       f"{loss:g} nats/token (below the smallest measured {lo_seen:.4g}); use "
                       "--compute or --params, whose predictions carry their warnings")


def compute_for_loss(fit: Fit, loss: float, points=None) -> float:
    """The least compute (6ND FLOPs) whose compute-optimal run reaches ``loss`` (nats/token) by
    the fitted law: bisection in log C. Unreachable targets are refused (``check_loss_target``)."""
    check_loss_target(fit, loss, points)

    def frontier(c: float) -> float:
        n = optimal_params(fit, c)
        return fit.loss(n, shapes.tokens_for_flops(c, n))

    lo, hi = 1.0, 1e40
    if frontier(hi) > loss:
        raise FitError(f"loss {loss:g} needs more than 1e40 FLOPs by the fitted law")
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if frontier(mid) > loss else (lo, mid)
        if hi / lo < 1 + 1e-12:
            break
    return hi


def recommend_for(name: str, root: Path = Path("runs"), overrides: Sequence[str] = (), *,
                  compute: float | None = None, params: float | None = None,
                  loss: float | None = None, bootstrap: int | None = None,
                  fit: Fit | None = None, law: str = "chinchilla") -> Recommendation:
    """`sweep recommend`: exactly one of ``compute`` (FLOPs), ``params`` (the N to be optimal)
    or ``loss`` (nats/token to reach), from the sweep's one fit (``law`` other than
    chinchilla: the Chinchilla-form law of sweep.study_law's selection)."""
    if sum(x is not None for x in (compute, params, loss)) != 1:
        raise InputError("give exactly one of --compute, --params or --loss")
    if fit is None and law != "chinchilla":
        from sweep.study_law import sweep_selected_fit

        fit = sweep_selected_fit(name, root, overrides, law=law, bootstrap=bootstrap)
    st = load_study(name, root, overrides, bootstrap=bootstrap, fit=fit)
    target = "compute"
    if params is not None:
        tr = st.fit.trust
        if tr is not None and params < tr.params[0]:
            raise FitError(f"--params {params:.4g} is outside what the fit can say: N is below "
                           f"the smallest fitted model ({tr.params[0]:.4g})")
        compute, target = compute_for_params(st.fit, params), "params"
    elif loss is not None:
        compute, target = compute_for_loss(st.fit, loss, st.points), "loss"
    return recommend(st.fit, compute, st.cfg if st.has_shape else None, target=target)


def recommendation_text(r: Recommendation) -> str:
    """The text output of `sweep recommend`: numbers with their units, trust and warnings."""
    m, t = r.model, r.train
    lines = [f"compute {r.compute:.4g} FLOPs ({r.conventions.get('flops', '6ND')})"]
    if m is None or t is None:
        lines += [f"  model   N = {r.params_nonembed:.4g} params: N and D only (no shape rule "
                  "for imported data)", f"  tokens  {r.tokens:.4g}"]
    else:
        lines += [f"  model   width {m['width']}, depth {m['depth']}, heads {m['heads']}: "
                  f"{r.params_nonembed:.4g} params (non-embedding), {r.params:.4g} with "
                  "embeddings",
                  f"  tokens  {r.tokens:.4g}   ({t['steps']} steps × {t['batch_tokens']} tokens,"
                  f" peak lr {t['lr']:.3g})"]
    lines.append(f"  loss    {r.predicted_loss:.4g} [{r.predicted_loss_lo95:.4g}, "
                 f"{r.predicted_loss_hi95:.4g}] nats/token (95% interval)"
                 + note(r.trust, r.extrapolation, r.warnings))
    if "law" in r.conventions:
        lines.append(f"  law     {r.conventions['law']}")
    lines += [f"  warning: {w}" for w in r.warnings]
    return "\n".join(lines)
