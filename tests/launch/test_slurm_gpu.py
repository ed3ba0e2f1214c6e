"""GPUs under Slurm: ``launcher.gpus`` is per process. The rendered script (golden) asks
``--gpus-per-task`` = gpus × the ranks a task runs and hands srun the same, so Slurm's
CUDA_VISIBLE_DEVICES holds one GPU per rank of the node and rank r uses cuda:LOCAL_RANK; and run
by bash with stand-in `scontrol`/`srun`, srun gets exactly that.

Regenerate the golden script with SWEEP_UPDATE_GOLDEN=1 pytest tests/launch -k golden.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sweep.config import LauncherConf
from sweep.launch.slurm import render_sbatch

from .test_slurm import GOLDEN

GOLDEN_GPU = GOLDEN.with_name("slurm_gpu.sbatch")


def gpu_script(nodes: int = 2, nproc: int = 4, gpus: int = 1) -> str:
    conf = LauncherConf(name="slurm", jobs=2, partition="gpu", time="08:00:00", cpus_per_task=8,
                        nodes=nodes, gpus=gpus, mem="200G",
                        setup=["module load cuda/12.4", "source /opt/env/bin/activate"])
    top = Path("/scratch/sweeps/gpu")
    sub = top / "slurm" / "20250101-000000-abcd"
    return render_sbatch(sweep="gpu", n_tasks=6, throttle=2, conf=conf, time_limit="08:00:00",
                         manifest=sub / "manifest", log_dir=sub, workdir=top,
                         python="/opt/venv/bin/python", nproc=nproc)


def test_sbatch_golden_gpu():
    got = gpu_script()
    if os.environ.get("SWEEP_UPDATE_GOLDEN") == "1":
        GOLDEN_GPU.write_text(got)
    assert got == GOLDEN_GPU.read_text(), "rendered sbatch changed; SWEEP_UPDATE_GOLDEN=1 to accept"
    assert subprocess.run(["bash", "-n"], input=got, text=True, check=False).returncode == 0
    lines = got.splitlines()
    assert "#SBATCH --gpus-per-task=4" in lines and "#SBATCH --ntasks-per-node=1" in lines
    assert "#SBATCH --cpus-per-task=32" in lines  # 4 ranks × 8 CPUs on each node
    assert not any(ln.startswith("#SBATCH --gpus=") for ln in lines)
    assert "--gpus-per-task=4 " in lines[-1] and "--nproc-per-node 4" in lines[-1]


def test_one_process_gpu_script_and_cpu_script():
    one = gpu_script(nodes=1, nproc=1, gpus=1).splitlines()
    assert "#SBATCH --ntasks=1" in one and "#SBATCH --gpus-per-task=1" in one
    assert one[-1].startswith("exec /opt/venv/bin/python -m sweep.train.worker")
    cpu = gpu_script(nodes=1, nproc=1, gpus=0)
    assert "gpus" not in cpu and "cuda:LOCAL_RANK" not in cpu


def test_gpu_script_hands_srun_one_gpu_per_rank(tmp_path):
    """The rendered 2 nodes × 4 ranks script under bash with stand-ins: srun is asked for 4 GPUs
    per task (one task per node), and the rendezvous goes to the first node's NodeAddr."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(
        '#!/bin/sh\ncase "$1 $2" in\n"show hostnames") printf "gpu-a\\ngpu-b\\n";;\n'
        '"show node") echo "NodeName=gpu-a Arch=x86_64 NodeAddr=10.0.0.7 NodeHostName=gpu-a";;\n'
        'esac\n')
    (bin_dir / "srun").write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > {tmp_path}/srun.argv\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (tmp_path / "manifest").write_text(f"{run_dir}\n")
    script = gpu_script().replace("/scratch/sweeps/gpu/slurm/20250101-000000-abcd/manifest",
                                  str(tmp_path / "manifest"))
    script = "\n".join(ln for ln in script.splitlines()
                       if not ln.startswith(("module", "source")))
    script = script.replace("/opt/venv/bin/python -c", "python3 -c")
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_ARRAY_TASK_ID="0",
               SLURM_ARRAY_JOB_ID="9", SLURM_JOB_ID="9", SLURM_NNODES="2",
               SLURM_JOB_NODELIST="gpu-[a-b]", SLURM_CPUS_PER_TASK="32")
    p = subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path, capture_output=True,
                       text=True, check=False)
    assert p.returncode == 0, p.stderr
    argv = (tmp_path / "srun.argv").read_text().splitlines()
    assert "--gpus-per-task=4" in argv and "--cpus-per-task=32" in argv
    assert argv[argv.index("--rdzv-endpoint") + 1].startswith("10.0.0.7:")
