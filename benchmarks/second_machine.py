"""Emulate a second, smaller machine: rerun the analysis stages with one thread and AVX2 kernels
only, from the same cached features, and compare every science metrics file byte for byte.

Run after `make repro` on a clean, committed workspace. Writes metrics/bench/second_machine.json
(stages, n_files, n_changed, changed) and restores the workspace to HEAD's outputs.
"""

import logging
import os
import subprocess
import sys
from pathlib import Path

from _common import OUT
from fclens.core.io import write_json

ANALYSIS = ["fit_ald", "build_trees", "select_influential", "decompose", "ablate", "k_grid",
            "depth_study", "sparsify"]
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
       "ONEDNN_MAX_CPU_ISA": "AVX2"}


def _science_metrics() -> dict[str, bytes]:
    return {str(f): f.read_bytes() for f in sorted(Path("metrics").rglob("*.json"))
            if f.parts[1] not in ("timing", "bench") and f.name not in ("pipeline.json",
                                                                       "reliability.json")}


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    before = _science_metrics()
    r = subprocess.run(["dvc", "repro", "-f", "-s", *ANALYSIS], env={**os.environ, **ENV})
    after = _science_metrics()
    changed = sorted(f for f in before if before[f] != after.get(f))
    # from HEAD, not the index: `dvc repro` may have staged its dvc.lock
    subprocess.run("git checkout -q HEAD -- metrics plots report dvc.lock && "
                   "dvc checkout -q --force", shell=True, check=True)
    if r.returncode:
        return r.returncode
    write_json(OUT / "second_machine.json", {"env": ENV, "stages": ANALYSIS,
                                             "n_files": len(before), "n_changed": len(changed),
                                             "changed": changed})
    logging.info("%d of %d metrics files changed: %s", len(changed), len(before), changed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
