"""Import and export: external tables fit like native runs; exports are complete."""

import json

import pandas as pd

from conftest import invoke
from sweep.store import Store

MAP = "params=Model Size,flops=Training FLOP,loss=loss"


def test_import_csv_fits_like_fit_data(runner, root, shared_data):
    csv = shared_data / "chinchilla_hoffmann2022_epoch.csv"
    r = invoke(runner, ["import", "chin", str(csv), "--map", MAP, "--json"], root)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"sweep": "chin", "runs": 0, "points": 245}
    a = json.loads(invoke(runner, ["fit", "chin", "--bootstrap", "0", "--json"], root).stdout)
    b = json.loads(invoke(runner, ["fit", "--data", str(csv), "--map", MAP, "--bootstrap", "0",
                               "--json"], root).stdout)
    assert a["n_points"] == b["n_points"] == 245
    for k in ("E", "alpha", "beta"):
        assert abs(a["params"][k] - b["params"][k]) < 1e-6


def test_import_bad_inputs(runner, root, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("params,tokens,loss\n1e6,1e9,abc\n")
    for args in (["import", "x", str(bad)], ["import", "x"],
                 ["import", "x", str(tmp_path / "missing.csv")],
                 ["import", "x", "--wandb", str(tmp_path / "nowhere")]):
        r = invoke(runner, args, root)
        assert r.exit_code == 2 and r.stderr.startswith("Error:"), r.output
        assert "Traceback" not in r.output


def test_export_csv_and_parquet(runner, root, shared_data, tmp_path):
    csv = shared_data / "chinchilla_hoffmann2022_epoch.csv"
    invoke(runner, ["plan", "p"], root)
    invoke(runner, ["import", "p", str(csv), "--map", MAP], root)
    for fmt in ("csv", "parquet"):
        out = tmp_path / fmt
        r = invoke(runner, ["export", "p", "--format", fmt, "--out", str(out), "--json"], root)
        files = json.loads(r.stdout)["files"]
        assert [f.split("/")[-1] for f in files] == [f"runs.{fmt}", f"curves.{fmt}",
                                                     f"finals.{fmt}"]
        runs = pd.read_csv(files[0]) if fmt == "csv" else pd.read_parquet(files[0])
        assert len(runs) == 12 and set(runs.state) == {"planned"}
    with Store(root) as st:
        assert len(st.external_df(["p"])) == 245
