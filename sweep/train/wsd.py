"""Warmup-stable-decay (WSD) schedules and cooldown branches (Hägele et al. 2024, "Scaling Laws
and Compute-Optimal Training Beyond Fixed Training Durations"; OLMo-core's WSD-S).

A WSD run warms up linearly over ``run.warmup_steps`` steps, holds the peak LR, then cools down
over its last ``decay_steps(run)`` steps (``train.decay_frac`` of its own steps) to
``lr · min_lr_frac``, reached exactly at its last step. The cooldown is 1 − sqrt: Hägele et al.
(Fig. 4) find it beats a linear cooldown of the same length and matches cosine to a fixed
budget, so a branch's loss is a fair (N, D) point beside a cosine sweep's.

Since the LR before a cooldown does not depend on where the run ends, every shorter budget of a
model shape is a *branch* of the longest run of that shape: at the branch's decay start the
main run's worker saves its state, trains the branch's cooldown, evaluates, restores and goes
on. A branch so trained ends exactly where a standalone run of the same schedule would (same
seed, same data order), which is how a branch whose main run is already done is trained.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from sweep import shapes
from sweep.errors import ConfigError
from sweep.records import PlannedRun


def decay_steps(run: PlannedRun) -> int:
    """Cooldown length in steps: round(decay_frac · steps), at least 1."""
    return max(1, min(run.steps, round(run.train.decay_frac * run.steps)))


def branch_step(run: PlannedRun) -> int:
    """The 0-based step at which the run's cooldown starts (its first decaying step)."""
    return run.steps - decay_steps(run)


def wsd_lr(step: int, run: PlannedRun, warmup: int) -> float:
    """LR at 0-based ``step``: linear warmup over ``warmup`` steps (as the cosine schedule),
    constant ``run.lr``, then lo + (lr − lo)·(1 − sqrt(p)) with p = (step − start + 1)/decay,
    so the last step has exactly lo = lr · min_lr_frac."""
    lo = run.lr * run.train.min_lr_frac
    start, n = branch_step(run), decay_steps(run)
    if step < warmup and step < start:
        return run.lr * (step + 1) / (warmup + 1)
    if step < start:
        return run.lr
    p = min(1.0, (step - start + 1) / n)
    return lo + (run.lr - lo) * (1.0 - math.sqrt(p))


def group_branches(runs: Sequence[PlannedRun], with_id) -> list[PlannedRun]:
    """Turn the WSD runs of a plan into main runs and branches: per (width, depth) the run with
    the most tokens is the main run, every other one a branch of it (``branch_of``). All runs of
    a shape share one warmup: ``warmup_frac`` of the shortest run's steps. ``with_id`` gives a
    run its content-hash id (the main's id is made first, branches hash it: no cycle)."""
    groups: dict[tuple[int, int], list[PlannedRun]] = {}
    for r in runs:
        groups.setdefault((r.width, r.depth), []).append(r)
    out: dict[str, PlannedRun] = {}
    for members in groups.values():
        shortest = min(r.steps for r in members)
        warmup = round(members[0].train.warmup_frac * shortest)
        main = with_id(dataclasses.replace(max(members, key=lambda r: r.steps),
                                           warmup_steps=warmup))
        for r in members:
            new = main if r.steps == main.steps else with_id(
                dataclasses.replace(r, warmup_steps=warmup, branch_of=main.run_id))
            if branch_step(new) < warmup:
                raise ConfigError(
                    f"wsd: the cooldown of width {r.width} × depth {r.depth} at {r.tokens:.3g} "
                    f"tokens starts at step {branch_step(new)}, inside the {warmup}-step warmup; "
                    "lower train.warmup_frac or train.decay_frac")
            out[r.run_id] = new
    return [out[r.run_id] for r in runs]


def cooldown_tokens(run: PlannedRun) -> int:
    """Tokens a run costs to train: its cooldown for a branch, all of them otherwise."""
    if run.branch_of is None:
        return run.tokens
    return decay_steps(run) * run.batch_tokens


def describe(runs: Sequence[PlannedRun]) -> list[str]:
    """Lines for `sweep plan`: each branch, where it starts and what it costs (its cooldown)."""
    branches = [r for r in runs if r.branch_of is not None]
    if not branches:
        return []
    frac = branches[0].train.decay_frac
    lines = [f"\nwsd: {len(branches)} branch runs, each trained by its main run's worker as a "
             f"1-sqrt cooldown over its last {frac:.0%} of steps (cost: cooldown tokens only)"]
    for b in branches:
        lines.append(f"  {b.run_id:<24} branch of {b.branch_of} at step {branch_step(b)}: "
                     f"{decay_steps(b)} steps = {cooldown_tokens(b):.4g} tokens, "
                     f"{shapes.flops_6nd(b.params_nonembed, cooldown_tokens(b)):.3g} FLOPs(6ND)")
    total = sum(cooldown_tokens(r) for r in runs)
    lines.append(f"tokens trained: {total:.4g} for {len(runs)} points (each run on its own: "
                 f"{sum(r.tokens for r in runs):.4g})")
    return lines
