"""`sweep import` is idempotent and honest (issue 12 item 4): the same content twice adds nothing
and says so; duplicate rows and unit slips are refused naming file:line (by `import` and
`fit --data` alike, nothing written); declared conventions are kept per import; `status` and
`list` show imported points; `export` → `import` round-trips without --map."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import invoke

from sweep import config
from sweep.plan import plan
from sweep.records import TrainResult
from sweep.store import Store

MAP = "params=Model Size,flops=Training FLOP,loss=loss"
STATUS_KEYS = {"sweep", "counts", "runs", "imported"}
IMPORT_KEYS = {"file", "rows", "params_convention", "flops_convention", "sha256", "created",
               "ranges"}


@pytest.fixture
def chin(shared_data) -> Path:
    return shared_data / "chinchilla_hoffmann2022_epoch.csv"


def n_external(root, name=None) -> int:
    with Store(root) as st:
        return len(st.external_df([name] if name else None))


def one_error_line(r) -> str:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and "internal error" not in r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    return lines[0]


def test_reimport_is_a_noop_and_says_so(runner, root, chin, tmp_path):
    r = invoke(runner, ["import", "chin", str(chin), "--map", MAP], root)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"chin: imported 245 points from {chin} (params as-given")
    assert "runs" not in r.stdout and "--params-convention" in r.stderr
    r = invoke(runner, ["import", "chin", str(chin), "--map", MAP], root)
    assert r.exit_code == 0, r.output
    assert "already imported (same content, 245 rows) on 20" in r.stdout
    assert "nothing added" in r.stdout
    assert n_external(root) == 245
    # the same points under our own column names, rows reversed: still the same content
    raw = pd.read_csv(chin)
    same = tmp_path / "renamed.csv"
    raw.rename(columns={"Model Size": "params", "Training FLOP": "flops"})[
        ["params", "flops", "loss"]].iloc[::-1].to_csv(same, index=False)
    out = json.loads(invoke(runner, ["import", "chin", str(same), "--json"], root).stdout)
    assert out["points"] == 0 and out["already_imported"] is True
    assert out["import"]["file"] == str(chin) and out["import"]["rows"] == 245
    # a different file adds its rows
    part = tmp_path / "part.csv"
    raw.iloc[:40].to_csv(part, index=False)
    out = json.loads(invoke(runner, ["import", "chin", str(part), "--map", MAP, "--json"],
                            root).stdout)
    assert out["points"] == 40 and out["already_imported"] is False and out["runs"] == 0
    assert n_external(root) == 285


def test_same_content_with_another_declared_convention_is_refused(runner, root, chin):
    invoke(runner, ["import", "c", str(chin), "--map", MAP, "--params-convention", "total"], root)
    r = invoke(runner, ["import", "c", str(chin), "--map", MAP, "--params-convention",
                        "nonembed"], root)
    assert "already imported into 'c' with params convention total" in one_error_line(r)
    assert n_external(root) == 245


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = ["1e6,2e7,3.1", "2e6,4e7,2.9", "4e6,8e7,2.7", "8e6,1.6e8,2.5", "1.6e7,3.2e8,2.3",
        "3.2e7,6.4e8,2.1", "6.4e7,1.28e9,2.0"]


def table(rows, header="params,tokens,loss") -> str:
    return "\n".join([header, *rows]) + "\n"


@pytest.mark.parametrize("command", ["import", "fit"])
@pytest.mark.parametrize("text, needles", [
    # every row twice: 7 copies, the first 5 listed by file line
    (table(GOOD + GOOD), ["dup.csv: 7 duplicate rows (same params, tokens and loss)",
                          "line 9 repeats line 2, line 10 repeats line 3", "line 13 repeats "
                          "line 6, …"]),
    # a blank line and a quoted header do not shift the line numbers
    (table(GOOD[:3] + [""] + GOOD[:1], '"params","tokens","loss"'),
     ["1 duplicate row (", "line 6 repeats line 2; remove them"]),
    # FLOPs in GFLOPs (tokens derived from them)
    (table([f"{n},{6 * float(n) * float(d) / 1e9},{lo}" for n, d, lo in
            (r.split(",") for r in GOOD)], "params,flops,loss"),
     ["tokens/params = 2e-08 at line 2 (outside [0.01, 1e6])", "GFLOPs", "convert first"]),
    # tokens in billions
    (table(GOOD[:2] + ["4e6,0.08,2.7"]), ["tokens/params = 2e-08 at line 4", "billions"]),
    # params in millions
    (table(["1,2e7,3.1"] + GOOD[1:]), ["tokens/params = 2e+07 at line 2", "params in millions"]),
    # FLOPs beside tokens that disagree with 6ND
    (table([r + f",{6 * float(r.split(',')[0]) * float(r.split(',')[1])}" for r in GOOD[:2]]
           + ["4e6,8e7,2.7,1.92e6"], "params,tokens,loss,flops"),
     ["FLOPs at line 4 are 1e-09x 6*params*tokens", "GFLOPs", "convert first"]),
    # bad values name file:line
    (table(GOOD[:2] + ["4e6,nan,2.7"]), ["dup.csv:4: data row 3, column 'tokens'", "NaN"]),
    (table(GOOD[:3] + ["8e6,1.6e8,-2.5"]), ["dup.csv:5: data row 4", "not positive"]),
    (table(GOOD[:1] + ["2e6,,2.9"]), ["dup.csv:3: data row 2", "missing"]),
    (table(GOOD[:1] + ["", "   ", ",,"]), ["dup.csv:5: data row 2", "missing"]),
])
def test_bad_tables_refused_in_one_line_by_import_and_fit(runner, root, tmp_path, command, text,
                                                           needles):
    p = write(tmp_path, "dup.csv", text)
    args = (["import", "x", str(p)] if command == "import"
            else ["fit", "--data", str(p), "--bootstrap", "0"])
    line = one_error_line(invoke(runner, args, root))
    for needle in needles:
        assert needle in line, line
    listed = json.loads(invoke(runner, ["list", "--json"], root).stdout)
    assert listed["sweeps"] == []  # nothing written, not even an empty sweep


def test_attn_flops_may_exceed_6nd(runner, root, tmp_path):
    rows = [r + f",{20 * 6 * float(r.split(',')[0]) * float(r.split(',')[1])}" for r in GOOD]
    p = write(tmp_path, "attn.csv", table(rows, "params,tokens,loss,flops"))
    assert "FLOPs at line 2 are 20x" in one_error_line(invoke(runner, ["import", "a", str(p)],
                                                              root))
    r = invoke(runner, ["import", "a", str(p), "--flops-convention", "attn", "--params-convention",
                        "nonembed"], root)
    assert r.exit_code == 0, r.output
    assert "params nonembed, FLOPs attn" in r.stdout and r.stderr == ""


def test_conventions_are_kept_per_import_and_shown_by_status(runner, root, chin, tmp_path):
    invoke(runner, ["import", "c", str(chin), "--map", MAP, "--params-convention", "total"], root)
    small = write(tmp_path, "small.csv", table(GOOD))
    invoke(runner, ["import", "c", str(small), "--params-convention", "nonembed",
                    "--flops-convention", "as-given"], root)
    with Store(root) as st:
        ext = st.external_df(["c"])
    assert ext.params_convention.tolist() == ["total"] * 245 + ["nonembed"] * 7
    assert ext.flops_convention.tolist() == ["6nd"] * 245 + ["as-given"] * 7
    assert ext.line.tolist() == list(range(2, 247)) + list(range(2, 9))
    r = invoke(runner, ["status", "c", "--json"], root)
    out = json.loads(r.stdout)
    assert set(out) == STATUS_KEYS and out["runs"] == [] and out["counts"] == {}
    assert [set(d) for d in out["imported"]] == [IMPORT_KEYS] * 2
    first, second = out["imported"]
    assert (first["file"], first["rows"], first["params_convention"]) == (str(chin), 245, "total")
    assert (second["rows"], second["params_convention"], second["flops_convention"]) == (
        7, "nonembed", "as-given")
    assert second["ranges"]["params"] == [1e6, 6.4e7] and second["ranges"]["loss"] == [2.0, 3.1]
    text = invoke(runner, ["status", "c"], root).stdout
    assert "imported: 252 points from 2 sources" in text
    assert f"{chin}: 245 points (params total, FLOPs 6nd), N 5.733e+07-1.618e+10" in text
    assert "C (6ND FLOPs) 1.397e+18-1.296e+22, loss 2.077-5.006" in text
    assert f"{small}: 7 points (params nonembed, FLOPs as-given)" in text


def test_status_of_a_native_sweep_has_no_imports(runner, root):
    invoke(runner, ["plan", "p"], root)
    out = json.loads(invoke(runner, ["status", "p", "--json"], root).stdout)
    assert set(out) == STATUS_KEYS and out["imported"] == [] and len(out["runs"]) == 12
    assert "imported" not in invoke(runner, ["status", "p"], root).stdout


def completed_sweep(root, name="nat"):
    """A planned sweep whose first 5 runs completed (losses falling with N·D)."""
    runs = plan(name, config.load([]))
    with Store(root) as st:
        st.put_plan(name, [], {}, runs)
        for i, r in enumerate(runs[:5]):
            st.start_attempt(r.run_id)
            st.finish(TrainResult(r.run_id, 3.0 - 0.1 * i, 2.9, r.tokens, r.steps, 1.0, 1.0))
    return runs[:5]


def test_export_then_import_round_trips_without_map(runner, root, chin, tmp_path):
    done = completed_sweep(root)
    invoke(runner, ["import", "nat", str(chin), "--map", MAP, "--params-convention", "total"],
           root)
    out = tmp_path / "exp"
    r = invoke(runner, ["export", "nat", "--out", str(out)], root)
    assert r.exit_code == 0, r.output
    # finals.csv: the completed runs, N without embeddings (as sweep fits), 6ND FLOPs checked
    r = invoke(runner, ["import", "copy", str(out / "finals.csv"), "--json"], root)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["points"] == 5 and res["import"]["params_convention"] == "nonembed"
    with Store(root) as st:
        ext = st.external_df(["copy"])
    assert ext.params.tolist() == [float(r.params_nonembed) for r in done]
    assert ext.tokens.tolist() == [float(r.tokens) for r in done]
    assert ext.loss.tolist() == pytest.approx([3.0, 2.9, 2.8, 2.7, 2.6])
    assert ext.line.tolist() == [2, 3, 4, 5, 6]
    # imported.csv: the imported points with their own conventions
    r = invoke(runner, ["import", "copy2", str(out / "imported.csv"), "--json"], root)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["points"] == 245
    assert (res["import"]["params_convention"], res["import"]["flops_convention"]) == (
        "total", "6nd")
    with Store(root) as st:
        a, b = st.external_df(["nat"]), st.external_df(["copy2"])
        assert st.imports("copy2")[0].sha256 == st.imports("nat")[0].sha256
    assert b.params.tolist() == a.params.tolist() and b.loss.tolist() == a.loss.tolist()
    assert b.tokens.tolist() == pytest.approx(a.tokens.tolist(), rel=1e-12)
    # and back into the sweep it came from: recognised, nothing added
    r = invoke(runner, ["import", "nat", str(out / "imported.csv")], root)
    assert "already imported (same content, 245 rows)" in r.stdout
    # a declared convention that contradicts the file's is refused
    r = invoke(runner, ["import", "c3", str(out / "imported.csv"), "--params-convention",
                        "nonembed"], root)
    assert "says params_convention total, not nonembed" in one_error_line(r)
    # fit --data reads an export as it is, too
    r = invoke(runner, ["fit", "--data", str(out / "imported.csv"), "--bootstrap", "0",
                        "--json"], root)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n_points"] == 245


def test_list_shows_every_sweep_with_counts(runner, root, chin):
    r = invoke(runner, ["list"], root)
    assert r.exit_code == 0 and r.stdout.strip() == f"no sweeps in {root}"
    assert not (root / "sweep.db").exists()
    completed_sweep(root)
    invoke(runner, ["import", "chin", str(chin), "--map", MAP], root)
    lines = invoke(runner, ["list"], root).stdout.splitlines()
    assert lines == ["chin  0 runs; 245 imported points (1 import)",
                     "nat   12 runs (5 completed, 7 planned)"]
    out = json.loads(invoke(runner, ["list", "--json"], root).stdout)
    assert out == {"root": str(root), "sweeps": [
        {"sweep": "chin", "counts": {}, "runs": 0, "imported": 245, "imports": 1},
        {"sweep": "nat", "counts": {"completed": 5, "planned": 7}, "runs": 12, "imported": 0,
         "imports": 0}]}


def test_wandb_points_are_checked_and_imported_once(runner, root, monkeypatch, tmp_path):
    from sweep import tracking
    from sweep.tracking import OfflineRun

    def fake(rows):
        return lambda d: [OfflineRun(tmp_path / f"r{i}", f"r{i}",
                                     config={"params": n, "tokens": t}, summary={"loss": lo})
                          for i, (n, t, lo) in enumerate(rows)]

    rows = [tuple(map(float, r.split(","))) for r in GOOD[:4]]
    monkeypatch.setattr(tracking, "read_offline_runs", fake(rows))
    for added in (4, 0):
        r = invoke(runner, ["import", "w", "--wandb", str(tmp_path), "--json"], root)
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["points"] == added
    assert n_external(root, "w") == 4
    monkeypatch.setattr(tracking, "read_offline_runs", fake(rows + rows[:1]))
    line = one_error_line(invoke(runner, ["import", "w2", "--wandb", str(tmp_path)], root))
    assert "1 duplicate row" in line and "row 5 repeats row 1" in line


def test_bad_wandb_points_write_nothing(runner, root, monkeypatch, tmp_path):
    from sweep import tracking
    from sweep.tracking import OfflineRun

    monkeypatch.setattr(tracking, "read_offline_runs", lambda d: [
        OfflineRun(tmp_path / "r0", "r0", config={"params": "abc", "tokens": 1e9},
                   summary={"loss": 3.0})])
    line = one_error_line(invoke(runner, ["import", "w", "--wandb", str(tmp_path)], root))
    assert "data row 1, column 'params'" in line and "not a number" in line
    assert json.loads(invoke(runner, ["list", "--json"], root).stdout)["sweeps"] == []
