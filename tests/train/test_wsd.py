"""WSD schedules: the LR shape, planning of main runs and branches, branches trained by the main
run's worker (equal to standalone runs), resume, and fits on end-of-schedule points only."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from sweep import config, plan
from sweep.records import CurvePoint, PlannedRun, RunState, TrainResult
from sweep.store import Store
from sweep.train import wsd
from sweep.train.loop import lr_at, train

from test_loop import make_run  # tests/train is on sys.path (pytest rootdir-less import)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corpus-cache")


def wsd_run(steps: int, warmup: int = 6, main: str | None = None, **kw) -> PlannedRun:
    """A WSD run of ``steps`` steps (a branch of ``main`` when given)."""
    r = make_run(steps=steps, **kw)
    return dataclasses.replace(r, schedule="wsd", warmup_steps=warmup, branch_of=main,
                               run_id=f"{r.run_id}-{'branch' if main else 'main'}")


@pytest.mark.parametrize("steps,frac", [(100, 0.2), (37, 0.1), (5, 0.5)])
def test_wsd_schedule_shape(steps: int, frac: float) -> None:
    run = wsd_run(steps, warmup=2, lr=3e-3, min_lr_frac=0.1, decay_frac=frac)
    lrs = [lr_at(s, run) for s in range(steps)]
    start = wsd.branch_step(run)
    assert wsd.decay_steps(run) == max(1, round(frac * steps)) == steps - start
    assert all(a < b for a, b in zip(lrs[:2], lrs[1:3]))  # warmup rises ...
    assert lrs[2:start] == [3e-3] * (start - 2)  # ... then stays at the peak ...
    assert all(a > b for a, b in zip(lrs[start - 1:], lrs[start:]))  # ... then cools down
    assert lrs[-1] == pytest.approx(3e-4, rel=1e-12)  # to lr · min_lr_frac at the last step
    n = wsd.decay_steps(run)
    for k in range(n):  # 1 − sqrt shape
        assert lrs[start + k] == pytest.approx(3e-4 + 2.7e-3 * (1 - math.sqrt((k + 1) / n)))


def test_branch_follows_the_main_schedule_until_its_cooldown() -> None:
    main = wsd_run(100)
    br = wsd_run(40, main=main.run_id)
    s = wsd.branch_step(br)
    assert s == 32
    assert [lr_at(k, br) for k in range(s)] == [lr_at(k, main) for k in range(s)]
    assert lr_at(s, br) < lr_at(s, main)


def test_plan_groups_branches_under_the_longest_run_of_each_shape() -> None:
    cfg = config.load(["train.schedule=wsd", "model.widths=[32,64]", "model.depths=[1,2]",
                       "budget.tokens=[2.5e5,5e5,1e6]"])
    runs = plan.plan("w", cfg)
    again = plan.plan("w", cfg)
    assert [r.run_id for r in runs] == [r.run_id for r in again]  # deterministic ids
    assert len(runs) == 12 and len({r.run_id for r in runs}) == 12
    by_id = {r.run_id: r for r in runs}
    mains = [r for r in runs if r.branch_of is None]
    assert len(mains) == 4
    for m in mains:
        kids = [r for r in runs if r.branch_of == m.run_id]
        assert len(kids) == 2 and all((k.width, k.depth) == (m.width, m.depth) for k in kids)
        assert all(k.steps < m.steps for k in kids)
        shortest = min(k.steps for k in kids)
        assert {r.warmup_steps for r in [m, *kids]} == {round(0.15 * shortest)}
        assert m.steps == max(r.steps for r in runs if r.width == m.width and r.depth == m.depth)
    assert all(by_id[r.branch_of].branch_of is None for r in runs if r.branch_of)
    cos = plan.plan("w", config.load(["model.widths=[32,64]", "model.depths=[1,2]",
                                      "budget.tokens=[2.5e5,5e5,1e6]"]))
    assert all(r.branch_of is None and r.warmup_steps is None for r in cos)
    assert not {r.run_id for r in cos} & set(by_id)


def test_plan_refuses_a_cooldown_inside_the_warmup() -> None:
    from sweep.errors import ConfigError

    cfg = config.load(["train.schedule=wsd", "train.warmup_frac=0.5", "train.decay_frac=0.6",
                       "model.widths=[32]", "budget.tokens=[2.5e5,1e6]"])
    with pytest.raises(ConfigError, match="inside the .*-step warmup"):
        plan.plan("w", cfg)


def _train_with_branches(main: PlannedRun, branches, cache: Path, **kw):
    points: list[CurvePoint] = []
    results: dict[str, TrainResult | None] = {}
    started: list[str] = []
    res = train(main, points.append, cache_dir=cache, threads=1, branches=branches,
                on_branch_start=lambda b: started.append(b.run_id),
                on_branch_end=lambda b, r, why: results.__setitem__(b.run_id, r or why), **kw)
    return res, points, results, started


def test_branch_equals_a_standalone_run_of_its_schedule(cache: Path) -> None:
    """The correctness test: a branch's final loss (cooldown from the main run's state) equals
    a standalone run of the same WSD-to-D schedule (same seed and data order) to 1e-6, and the
    main run is not disturbed by its branches."""
    main = wsd_run(60)
    b1, b2 = wsd_run(20, main=main.run_id), wsd_run(40, main=main.run_id)
    res, points, results, started = _train_with_branches(main, [b2, b1], cache)
    assert started == [b1.run_id, b2.run_id]  # in order of their start steps
    plain = train(main, lambda p: None, cache_dir=cache, threads=1)
    assert res.final_loss == pytest.approx(plain.final_loss, abs=1e-6)
    for b in (b1, b2):
        r = results[b.run_id]
        alone = train(b, lambda p: None, cache_dir=cache, threads=1)
        assert isinstance(r, TrainResult)
        assert abs(r.final_loss - alone.final_loss) < 1e-6
        assert r.heldout_top1_acc == pytest.approx(alone.heldout_top1_acc, abs=1e-9)
        assert r.tokens == b.tokens and r.steps == b.steps and r.epochs > 0
        bp = [p for p in points if p.run_id == b.run_id]
        assert min(p.step for p in bp) >= wsd.branch_step(b)  # the cooldown only
        assert [p.end_of_schedule for p in bp] == [False] * (len(bp) - 1) + [True]
        assert bp[-1].eval_loss == r.final_loss and bp[-1].tokens == b.tokens
    mp = [p for p in points if p.run_id == main.run_id]
    assert sum(p.eval_loss is not None for p in mp) > 1  # mid-run evaluations ...
    assert [p.step for p in mp if p.end_of_schedule] == [59]  # ... only the last is final


def test_resume_mid_stable_phase_does_not_redo_done_branches(cache: Path, tmp_path: Path) -> None:
    main = wsd_run(60, checkpoint_every=10)
    b1, b2 = wsd_run(20, main=main.run_id), wsd_run(40, main=main.run_id)
    ref, _, ref_b, _ = _train_with_branches(main, [b1, b2], cache)
    seen: list[CurvePoint] = []
    from sweep.errors import TrainInterrupted

    def stop() -> bool:  # after branch 1 is done, in the stable phase before branch 2
        return any(p.run_id == main.run_id and p.step >= 24 for p in seen)

    results: dict[str, object] = {}
    with pytest.raises(TrainInterrupted):
        train(main, seen.append, cache_dir=cache, threads=1, branches=[b1, b2], should_stop=stop,
              checkpoint_dir=tmp_path,
              on_branch_end=lambda b, r, w: results.__setitem__(b.run_id, r))
    assert list(results) == [b1.run_id]
    # the store says b1 is completed: the worker passes only b2 now
    res, points, results2, started = _train_with_branches(main, [b2], cache,
                                                          checkpoint_dir=tmp_path)
    assert started == [b2.run_id]
    assert abs(res.final_loss - ref.final_loss) < 1e-6
    assert abs(results2[b2.run_id].final_loss - ref_b[b2.run_id].final_loss) < 1e-6
    assert min(p.step for p in points if p.run_id == main.run_id) > 24


@pytest.mark.slow
def test_wsd_sweep_through_launch_gives_three_final_points_per_main_run(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real launch of one WSD shape with 3 budgets: one worker, 3 completed runs, each with its
    own end-of-schedule point; the fit's points are exactly the runs' final losses."""
    from sweep import api
    from sweep.launch.base import pending_runs

    monkeypatch.setenv("SWEEP_CACHE", str(cache))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    root = tmp_path / "runs"
    p = api.plan_sweep("w", ["train.schedule=wsd", "model.widths=[32]", "model.depths=[1]",
                             "train.eval_tokens=4096", "budget.tokens=[1e4,2e4,4e4]"], root)
    main = next(r for r in p.runs if r.branch_of is None)
    with Store(root) as st:
        assert [r.run_id for r in pending_runs(st, "w")] == [main.run_id]
    res = api.launch("w", root, jobs=1, progress=False)
    assert res.trained == [main.run_id]
    with Store(root) as st:
        recs = {r.run.run_id: r for r in st.runs("w")}
        curves = st.curves_df(["w"])
        metrics = st.metrics_df(["w"])
        assert pending_runs(st, "w") == []
    assert {r.state for r in recs.values()} == {RunState.COMPLETED}
    for r in p.runs:
        c = curves[curves["run_id"] == r.run_id]
        end = c[c["end_of_schedule"] == 1]
        assert len(end) == 1 and int(end["step"].iloc[0]) == r.steps - 1
        assert float(end["eval_loss"].iloc[0]) == recs[r.run_id].final_loss
        assert float(end["eval_bpb"].iloc[0]) == pytest.approx(
            recs[r.run_id].final_loss / math.log(2))
        if r.branch_of:
            assert int(c["step"].min()) >= wsd.branch_step(r)  # its curve is its cooldown
    mid = curves[(curves["run_id"] == main.run_id) & curves["eval_loss"].notna()
                 & (curves["end_of_schedule"] == 0)]
    assert len(mid) >= 2  # the main run's mid-run evaluations exist, flagged not final
    pts = api.sweep_points("w", root)
    assert sorted(pts["loss"]) == sorted(r.final_loss for r in recs.values())
    assert not set(mid["eval_loss"]) & set(pts["loss"])
    assert set(metrics[metrics["name"] == "heldout_top1_acc"]["run_id"]) == set(recs)

    # a branch not completed while its main run is: launched on its own next time, where it
    # trains its whole schedule from scratch and ends at the loss its cooldown branch had
    br = next(r for r in p.runs if r.branch_of)
    with Store(root) as st:
        st.fail(br.run_id, "test")
        assert [r.run_id for r in pending_runs(st, "w")] == [br.run_id]
    assert api.launch("w", root, jobs=1, progress=False).trained == [br.run_id]
    with Store(root) as st:
        again = {r.run.run_id: r for r in st.runs("w")}[br.run_id]
        c = st.curves_df(["w"])
    assert again.state == RunState.COMPLETED
    assert abs(again.final_loss - recs[br.run_id].final_loss) < 1e-6
    assert int(c[c["run_id"] == br.run_id]["step"].min()) < wsd.branch_step(br)  # all of it


def test_sweep_plan_shows_branches_and_their_cooldown_cost(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from conftest import invoke

    r = invoke(CliRunner(), ["plan", "w", "train.schedule=wsd", "model.widths=[32]"],
               tmp_path / "runs")
    assert r.exit_code == 0, r.output
    runs = plan.plan("w", config.load(["train.schedule=wsd", "model.widths=[32]"]))
    main = next(x for x in runs if x.branch_of is None)
    for b in (x for x in runs if x.branch_of):
        cost = wsd.decay_steps(b) * b.batch_tokens
        assert (f"{b.run_id:<24} branch of {main.run_id} at step {wsd.branch_step(b)}: "
                f"{wsd.decay_steps(b)} steps = {cost:.4g} tokens") in r.stdout
    total = main.tokens + sum(wsd.cooldown_tokens(x) for x in runs if x.branch_of)
    assert f"tokens trained: {total:.4g} for 3 points" in r.stdout


def test_worker_passes_only_branches_the_store_has_not_completed(tmp_path: Path) -> None:
    from sweep.train.worker import _branches

    main = wsd_run(60)
    b1, b2 = wsd_run(20, main=main.run_id), wsd_run(40, main=main.run_id)
    other = wsd_run(30)
    with Store(tmp_path) as st:
        st.put_plan("test", [], {}, [main, b1, b2, other])
        assert {b.run_id for b in _branches(str(tmp_path), main)} == {b1.run_id, b2.run_id}
        st.start_attempt(b1.run_id, "local:1")
        st.finish(TrainResult(b1.run_id, 2.0, 2.1, b1.tokens, b1.steps, 1.0, 1.0))
        st.start_attempt(b2.run_id, "local:1")
        st.fail(b2.run_id, "interrupted", RunState.CANCELLED)
    assert [b.run_id for b in _branches(str(tmp_path), main)] == [b2.run_id]
