"""Is the DAG still usable with N weight-only models? (`zoo_sweep.py --dag N`)

In a throwaway clone of this repository's last commit (with ../shared linked beside it and this
repository's DVC cache hard-linked in, so committed outputs are checked out, not recomputed):

1. `dvc commit -f` records the clone's current code in its dvc.lock, so that only what this check
   adds is stale (the last commit's lock may lag its code; nothing is rerun for that);
2. N random-weight timm models (plain nn.Linear heads, so any committed version handles them)
   are added to params.yaml `models:` in one edit;
3. `dvc repro` runs their weight stages (extract_weights, fit_ald, build_trees,
   weights_pictures) and the report, which must name every model;
4. a no-op `dvc repro` of the whole DAG is timed three times: wall seconds (the median), and the
   CPU seconds of the dvc process (user + sys), which a busy shared machine distorts less.

Every command runs with `nice -n 10`, this venv's python and dvc first on PATH, and PYTHONPATH
set to the clone's src (the editable install points at this checkout's src).
"""

from __future__ import annotations

import logging
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

log = logging.getLogger("zoo.dag")
REPO = Path(__file__).resolve().parents[1]
DAG_MODELS = (
    "resnet18", "resnet34", "resnet50", "mobilenetv3_small_050", "mobilenetv3_small_100",
    "mobilenetv3_large_100", "efficientnet_b0", "efficientnet_b1", "regnetx_002", "regnety_002",
    "ghostnet_100", "densenet121", "mnasnet_100", "mobilenetv2_050", "mobilenetv2_100",
    "vit_tiny_patch16_224", "deit_tiny_patch16_224", "convnext_atto", "lcnet_050", "tinynet_e")


def _run(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float, str]:
    """(wall seconds, child CPU seconds, output) of one command; raises with its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(["nice", "-n", "10", *cmd], cwd=cwd, env=env, capture_output=True,
                       text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed ({p.returncode}):\n"
                           f"{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return wall, cpu, p.stdout + p.stderr


def add_models(params: Path, names: list[str]) -> None:
    """One edit: a `name: {arch: name, weights: random}` line per model under `models:`."""
    text = params.read_text()
    lines = "".join(f"  {n}: {{arch: {n}, weights: random}}\n" for n in names)
    new, n = re.subn(r"^models:\n", "models:\n" + lines, text, count=1, flags=re.M)
    if n != 1:
        raise RuntimeError(f"{params}: no top-level `models:` key")
    params.write_text(new)


def dag_check(n: int, workdir: Path | None = None) -> dict:
    """Run the check in `workdir` (kept; a clone already there is reused and only what is
    missing is redone) or in a temporary folder (deleted)."""
    if not 1 <= n <= len(DAG_MODELS):
        raise SystemExit(f"--dag: 1..{len(DAG_MODELS)} models")
    names = list(DAG_MODELS[:n])
    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="fclens_dag_"))
    clone = tmp / "main"
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "PYTHONPATH": str(clone / "src"), "TQDM_DISABLE": "1"}
    dvc = [str(Path(bin_dir) / "dvc")]
    try:
        if not clone.exists():
            tmp.mkdir(parents=True, exist_ok=True)
            _run(["git", "clone", "-q", str(REPO), str(clone)], tmp, env)
            (tmp / "shared").symlink_to((REPO.parent / "shared").resolve())
            _run(["cp", "-al", str(REPO / ".dvc" / "cache"), str(clone / ".dvc" / "cache")],
                 tmp, env)
            _run([*dvc, "config", "cache.type", "hardlink,copy"], clone, env)
            _run([*dvc, "checkout", "-q"], clone, env)
            _run([*dvc, "commit", "-f", "-q"], clone, env)
        have = yaml.safe_load((clone / "params.yaml").read_text())["models"]
        add_models(clone / "params.yaml", [m for m in names if m not in have])
        # the clone is otherwise up to date: this runs the new models' 4 stages and the report
        log.info("dvc repro in %s", clone)
        r_wall, r_cpu, out = _run([*dvc, "repro"], clone, env)
        n_ran = out.count("Running stage")
        report = (clone / "report" / "README.md").read_text()
        missing = [m for m in names if m not in report]
        noop = [_run([*dvc, "repro"], clone, env) for _ in range(3)]
        if any("Running stage" in out for *_, out in noop):
            raise RuntimeError("the no-op dvc repro ran a stage: the clone was not up to date")
        n_stages = len(yaml.safe_load((clone / "dvc.lock").read_text())["stages"])
    finally:
        if not workdir:
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        f"noop_repro_seconds_{n}_models": statistics.median(w for w, _, _ in noop),
        "noop_repro_how": (
            f"median wall time of 3 no-op `dvc repro` (nice -n 10) in a clone of the last commit "
            f"with {n} random-weight timm models added to params.yaml models ({n_stages} stages "
            f"in dvc.lock), after their weight stages and the report were reproduced; "
            f"benchmarks/zoo_dag.py. cpu_seconds: user+sys of the dvc process"),
        f"dag_{n}_models": {
            "models": names, "n_stages_in_lock": n_stages,
            "noop_wall_seconds": [round(w, 2) for w, _, _ in noop],
            "noop_cpu_seconds": [round(c, 2) for _, c, _ in noop],
            "first_repro_stages_run": n_ran, "first_repro_wall_seconds": r_wall,
            "first_repro_cpu_seconds": r_cpu,
            "report_names_every_model": not missing, "report_missing_models": missing,
            "report_bytes": len(report.encode())},
    }
