"""The CLI through click's CliRunner: exit codes, one-line errors, nothing written on bad input."""

import json

import pytest

from conftest import WEIRD_NAMES, invoke


def _one_line_error(result, code=2):
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output and "internal error" not in result.output
    errs = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errs) == 1, result.stderr
    return errs[0]


def test_help_lists_commands(runner):
    r = invoke(runner, ["--help"])
    for cmd in ("plan", "launch", "status", "fit", "recommend", "demo"):
        assert cmd in r.stdout
    for cmd in ("plan", "launch", "status", "fit", "recommend", "demo"):
        r = invoke(runner, [cmd, "--help"])
        assert r.exit_code == 0 and "--root" in r.stdout


def test_plan_table_and_json(runner, root):
    r = invoke(runner, ["plan", "small", "model.widths=[64,128]", "model.depths=[2,4]",
                        "budget.tokens=[2e6,8e6]"], root)
    assert r.exit_code == 0, r.output
    assert "FLOPs(6ND)" in r.stdout and "params(non-emb)" in r.stdout
    assert len([ln for ln in r.stdout.splitlines() if ln.startswith("w")]) == 8
    r = invoke(runner, ["plan", "small", "model.widths=[64,128]", "model.depths=[2,4]",
                        "budget.tokens=[2e6,8e6]", "--json"], root)
    out = json.loads(r.stdout)
    assert out["kept"] == 8 and out["added"] == 0 and len(out["runs"]) == 8
    run = out["runs"][0]
    for key in ("params", "params_nonembed", "tokens", "flops_6nd", "flops_attn", "steps",
                "batch_tokens", "lr"):
        assert key in run
    assert (root / "small" / "plan.json").is_file()


def test_replan_different_grid_refuses_then_force(runner, root):
    assert invoke(runner, ["plan", "s"], root).exit_code == 0
    before = (root / "s" / "plan.json").read_text()
    r = invoke(runner, ["plan", "s", "model.widths=[64]"], root)
    assert r.exit_code != 0 and "--force" in _one_line_error(r, r.exit_code)
    assert (root / "s" / "plan.json").read_text() == before
    r = invoke(runner, ["plan", "s", "model.widths=[64]", "--force", "--json"], root)
    assert r.exit_code == 0 and json.loads(r.stdout)["dropped"] == 9


@pytest.mark.parametrize("name", WEIRD_NAMES)
def test_hostile_names_rejected_nothing_written(runner, root, tmp_path, name, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for cmd in (["plan", name], ["status", name], ["launch", name], ["fit", name],
                ["recommend", name, "--compute", "1e15"]):
        r = invoke(runner, cmd, root)
        _one_line_error(r, 2)
    assert not root.exists() and not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("override", ["model.widths=[]", "model.widht=3", "budget.tokens=[-1]",
                                      "budget.tokens=[abc]", "model.widths=[0,64]",
                                      "train.lr=0", "model.depths=[2,"])
def test_bad_grid_is_usage_error(runner, root, override):
    r = invoke(runner, ["plan", "s", override], root)
    line = _one_line_error(r, 2)
    assert "Usage" not in r.stderr
    assert not (root / "s").exists()
    assert len(line) < 200


def test_unknown_sweep(runner, root):
    invoke(runner, ["plan", "other"], root)
    for cmd in (["status", "nope"], ["launch", "nope"], ["fit", "nope"],
                ["recommend", "nope", "--compute", "1e15"]):
        r = invoke(runner, cmd, root)
        assert "unknown sweep 'nope'" in _one_line_error(r, 1)


def test_missing_root_is_clean(runner, tmp_path):
    r = invoke(runner, ["status", "demo"], tmp_path / "none")
    assert "no sweep store" in _one_line_error(r, 1)
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("compute", ["-1", "0", "abc", "inf", "nan"])
def test_bad_compute(runner, root, compute):
    _one_line_error(invoke(runner, ["recommend", "s", "--compute", compute], root), 2)


def test_fit_needs_points(runner, root):
    invoke(runner, ["plan", "s"], root)
    r = invoke(runner, ["fit", "s"], root)
    assert "at least 5" in _one_line_error(r, 1)


def test_fit_name_or_data(runner, root, tmp_path):
    _one_line_error(invoke(runner, ["fit"], root), 2)
    csv = tmp_path / "x.csv"
    csv.write_text("params,tokens,loss\n1,2,3\n")
    _one_line_error(invoke(runner, ["fit", "s", "--data", str(csv)], root), 2)


def test_status_shows_progress_loss_so_far_and_eta(runner, root):
    from sweep.records import CurvePoint
    from sweep.store import Store

    invoke(runner, ["plan", "s"], root)
    with Store(root) as st:
        run = st.runs("s")[0].run
        st.start_attempt(run.run_id, "local:1")
        st.add_points([CurvePoint(run.run_id, 9, run.tokens // 2, 1.0, 2.75, None, 1e-3)])
    r = invoke(runner, ["status", "s"], root)
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith(run.run_id))
    assert "running" in line and "50%" in line and "2.75 (train)" in line
    assert line.count("m") >= 2  # wall and ETA columns are filled
    out = json.loads(invoke(runner, ["status", "s", "--json"], root).stdout)
    assert out["counts"] == {"running": 1, "planned": 11}


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`sweep plan … | head -0`: the reader is gone; exit 141 (128 + SIGPIPE), no internal error."""
    import os
    import subprocess
    import sys

    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "sweep", "plan", "x", "--root", str(tmp_path)],
                           stdout=w, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(w)
    assert p.returncode == 141, p.stderr
    assert "internal error" not in p.stderr and "Traceback" not in p.stderr
