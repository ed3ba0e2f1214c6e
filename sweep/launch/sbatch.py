"""The sbatch script of one Slurm job array (pure text; sweep/launch/slurm.py submits it).

Every value is ``shlex``-quoted (submitit's ``_as_sbatch_flag``); sbatch parses those quotes in
``#SBATCH`` lines too. Task i reads line i of the manifest and ``exec``s the worker, so Slurm's
warning signal (``--signal=B:USR1@N``, sent to the batch shell) reaches it. A run with more than
one process (``train.nproc`` per node × ``launcher.nodes``) instead ``exec``s ``srun`` + one
``torchrun`` per node with a c10d rendezvous on the first node (its ``NodeAddr``).

GPUs: ``launcher.gpus`` is per process (rank). Each Slurm task asks ``--gpus-per-task`` =
gpus × the processes it runs (1, or train.nproc under torchrun: one task per node); Slurm sets
``CUDA_VISIBLE_DEVICES`` to the task's GPUs and rank r of a node uses ``cuda:LOCAL_RANK``
(the trainer's device=auto), so each rank has its own GPU.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from sweep.conf_schema import LauncherConf, parse_time
from sweep.errors import ConfigError, LaunchError
from sweep.records import PlannedRun
from sweep.train.dist import SIGNALS


def time_for(run: PlannedRun, conf: LauncherConf) -> str:
    """The run's time limit: the override with the largest ``min_params`` ≤ its params."""
    fits = [o for o in conf.size_overrides if o.time is not None and run.params >= o.min_params]
    return str(max(fits, key=lambda o: o.min_params).time) if fits else conf.time


def _flag(key: str, value: object = True) -> str:
    return f"#SBATCH --{key}" if value is True else f"#SBATCH --{key}={shlex.quote(str(value))}"


def _extra(flag: str) -> str:
    key, eq, value = flag[2:].partition("=")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", key):
        raise ConfigError(f"launcher.extra_sbatch: {flag!r} is not a --flag[=value]")
    return _flag(key, value if eq else True)


def render_sbatch(*, sweep: str, n_tasks: int, throttle: int, conf: LauncherConf, time_limit: str,
                  manifest: Path, log_dir: Path, workdir: Path, python: str,
                  task_times: Mapping[str, Sequence[int]] | None = None, nproc: int = 1) -> str:
    """The sbatch script of one array (pure; the golden tests pin it). ``nproc`` processes per
    node (train.nproc) on ``conf.nodes`` nodes: more than one in all → srun + torchrun."""
    if n_tasks < 1 or throttle < 1:
        raise LaunchError("an array needs at least one run and a throttle ≥ 1")
    for path in (manifest, log_dir, workdir, python):
        if "\n" in str(path) or "\r" in str(path):
            raise LaunchError(f"path {str(path)!r} contains a newline: Slurm cannot take it")
    limit = parse_time(time_limit)
    if limit is None or limit <= conf.signal_seconds:
        raise ConfigError(f"launcher.signal_seconds ({conf.signal_seconds}) must be below the "
                          f"time limit {time_limit!r}")
    lines = ["#!/bin/bash",
             f"# sweep {sweep}: {n_tasks} runs as one job array, at most {throttle} at once.",
             "# Task i trains the run directory on line i+1 of the manifest.",
             _flag("job-name", f"sweep-{sweep}"),
             _flag("array", f"0-{n_tasks - 1}%{throttle}"),
             _flag("output", str(log_dir).replace("%", "%%") + "/%A_%a.log"),
             _flag("open-mode", "append"),
             _flag("requeue"),
             _flag("signal", f"B:USR1@{conf.signal_seconds}"),
             _flag("chdir", str(workdir)),
             _flag("time", time_limit)]
    multi = nproc > 1 or conf.nodes > 1
    if multi:  # one torchrun per node, each starting nproc ranks with cpus_per_task CPUs each
        lines += [_flag("nodes", conf.nodes), _flag("ntasks-per-node", 1),
                  _flag("cpus-per-task", conf.cpus_per_task * nproc)]
    else:
        lines += [_flag("ntasks", 1), _flag("cpus-per-task", conf.cpus_per_task)]
    if conf.gpus:
        lines.append(_flag("gpus-per-task", conf.gpus * nproc))
    if multi or conf.gpus:
        gpus = f", {conf.gpus} GPU(s)" if conf.gpus else ""
        lines.append(f"# each run: {conf.nodes} node(s) × {nproc} process(es)"
                     f"{' (DDP)' if multi else ''}, {conf.cpus_per_task} CPU(s){gpus} per "
                     "process" + ("; rank r uses cuda:LOCAL_RANK of CUDA_VISIBLE_DEVICES"
                                  if conf.gpus else ""))
    for key, value in (("partition", conf.partition), ("mem", conf.mem),
                       ("account", conf.account), ("qos", conf.qos),
                       ("constraint", conf.constraint)):
        if value:
            lines.append(_flag(key, value))
    lines += [_extra(f) for f in conf.extra_sbatch]
    for t, tasks in sorted((task_times or {}).items()):
        lines.append(f"# time limit {t} for tasks {_ranges(tasks)} (scontrol update at submit)")
    lines += ["set -eo pipefail", *conf.setup,
              f"mapfile -t RUN_DIRS < {shlex.quote(str(manifest))}",
              'RUN_DIR=${RUN_DIRS[$SLURM_ARRAY_TASK_ID]:-}',
              ('[ -n "$RUN_DIR" ] || { echo "task $SLURM_ARRAY_TASK_ID: not in the manifest" >&2; '
               'exit 2; }'),
              ('echo "$(date -Is) ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}'
               ' restart ${SLURM_RESTART_COUNT:-0} on $(hostname): $RUN_DIR"'),
              *(_torchrun(python, nproc, conf.gpus) if multi else
                [f'exec {shlex.quote(python)} -m sweep.train.worker "$RUN_DIR" {_LOG}']), ""]
    return "\n".join(lines)


_LOG = '>>"$RUN_DIR/worker.log" 2>&1'
_FREE_PORT = 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'


def _torchrun(python: str, nproc: int, gpus: int = 0) -> list[str]:
    """The multi-process tail: the rendezvous runs on the first node (where this script runs,
    so a port free here is free there), at its NodeAddr (the name itself when Slurm has none);
    srun starts one torchrun per node, which forwards SIGUSR1/SIGTERM to its ranks (torchrun's
    --signals-to-handle)."""
    py = shlex.quote(python)
    gpu = f"--gpus-per-task={gpus * nproc} " if gpus else ""
    return ['mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")',
            'head=${NODES[0]:-}',
            '[ -n "$head" ] || { echo "no nodes in SLURM_JOB_NODELIST" >&2; exit 2; }',
            ('addr=$(scontrol show node -o "$head" 2>/dev/null | grep -o "NodeAddr=[^ ]*" '
             '| cut -d= -f2) || addr=""'),
            f'port=$({py} -c {shlex.quote(_FREE_PORT)})',
            (f'exec srun --nodes="$SLURM_NNODES" --ntasks-per-node=1 '
             f'--cpus-per-task="$SLURM_CPUS_PER_TASK" {gpu}--kill-on-bad-exit=1 '
             f'{py} -m torch.distributed.run --nnodes "$SLURM_NNODES" --nproc-per-node {nproc} '
             f'--rdzv-backend c10d --rdzv-endpoint "${{addr:-$head}}:$port" '
             f'--rdzv-id "$SLURM_JOB_ID" '
             f'--signals-to-handle {SIGNALS} -m sweep.train.worker "$RUN_DIR" {_LOG}')]


def _ranges(ids: Sequence[int]) -> str:
    """[0, 1, 2, 5] → '0-2,5' (Slurm's array index syntax)."""
    spans: list[list[int]] = []
    for i in sorted(ids):
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
