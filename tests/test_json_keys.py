"""Every command's --json prints exactly one object whose key sets are frozen in
tests/golden/json_keys.json (torchtitan freezes its CLI the same way): adding, renaming or
dropping a key is an interface change and must show up here. The keys of shared/README.md's
schemas are checked to be present as well. Regenerate after a deliberate change with
SWEEP_REGEN_GOLDEN=1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.report.synth import ISO, finish_runs

GOLDEN = Path(__file__).parent / "golden" / "json_keys.json"
SHARED = {  # the shared/README.md interfaces (sub-keys of a list are its items' keys)
    "fit": {"method", "n_points", "params", "ci95", "objective", "allocation", "predictions",
            "validation"},
    "fit.predictions": {"params", "tokens", "flops", "loss", "loss_lo95", "loss_hi95"},
    "recommend": {"compute", "params", "params_nonembed", "tokens", "flops", "predicted_loss",
                  "predicted_loss_lo95", "predicted_loss_hi95", "model", "train"},
    "status": {"sweep", "counts", "runs"},
    "status.runs": {"id", "state", "width", "depth", "params", "params_nonembed", "tokens",
                    "tokens_done", "flops", "final_loss", "error"},
}


def _keys(obj: dict, prefix: str, out: dict[str, list[str]]) -> None:
    """Key sets of obj and of the first item of each list of objects in it (one level down)."""
    out[prefix] = sorted(obj)
    for k, v in obj.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            out[f"{prefix}.{k}"] = sorted(v[0])
        elif isinstance(v, dict) and k in ("recommendation", "fit", "trust", "bootstrap"):
            _keys(v, f"{prefix}.{k}", out)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    from click.testing import CliRunner

    from sweep import runs
    from sweep.cli import cli

    root = tmp_path_factory.mktemp("keys") / "runs"
    runs.plan_sweep("iso", ISO, root)
    finish_runs(root, "iso")
    csv = tmp_path_factory.mktemp("csv") / "pts.csv"
    commands = {
        "plan": ["plan", "iso", *ISO],
        "status": ["status", "iso"],
        "fit": ["fit", "iso", "--bootstrap", "50", "--at", "params=1e6,tokens=1e8"],
        "recommend": ["recommend", "iso", "--compute", "1e14", "--bootstrap", "50"],
        "isoflop": ["isoflop", "iso"],
        "kaplan": ["kaplan", "iso"],
        "envelope": ["envelope", "iso", "--bootstrap", "20"],
        "compare": ["compare", "iso", "iso", "--bootstrap", "20"],
        "cost": ["cost", "iso"],
        "list": ["list"],
        "export": ["export", "iso", "--out", str(csv.parent / "exp")],
        "next": ["next", "iso", "--budget", "3e12", "--bootstrap", "50"],
    }
    out: dict[str, list[str]] = {}
    runner = CliRunner()
    for name, args in commands.items():
        res = runner.invoke(cli, [*args, "--json", "--root", str(root)],
                            env={"SWEEP_CPU_PEAK": "1.5e11"}, catch_exceptions=False)
        assert res.exit_code == 0, (name, res.output)
        lines = [line for line in res.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, (name, res.stdout)  # one JSON object, nothing else on stdout
        _keys(json.loads(lines[0]), name, out)
    return out


def test_json_key_sets_are_frozen(outputs):
    if os.environ.get("SWEEP_REGEN_GOLDEN"):
        GOLDEN.write_text(json.dumps(outputs, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert set(outputs) == set(golden)
    for k in golden:
        assert outputs[k] == golden[k], k


def test_the_shared_schemas_are_kept(outputs):
    for k, keys in SHARED.items():
        assert keys <= set(outputs[k]), (k, keys - set(outputs[k]))
    for k in ("fit.predictions", "recommend"):  # numbers travel with their trust
        assert {"trust", "warnings"} <= set(outputs[k])
    assert {"trust_a", "trust_b", "extrapolation_a", "extrapolation_b", "warnings"} <= set(
        outputs["compare"])
