"""`dvc repro` with wall time per stage, then a timed no-op `dvc repro` -> metrics/pipeline.json.

`make repro` runs this. A stage's time runs from DVC's "Running stage" line to the next one (or
the end), so it includes DVC's own hashing and caching of that stage's outputs. Stages that did
not run keep their time from the run that last ran them (`last_run` says which ran this time).
Extra arguments go to `dvc repro` (e.g. a stage name, `-f`).
"""

import logging
import re
import subprocess
import sys
import time
from pathlib import Path

from fclens.core.io import read_json, write_json

OUT = Path("metrics/pipeline.json")
RUNNING = re.compile(r"^Running stage '([^']+)'")


def timed_repro(args: list[str]) -> tuple[int, dict[str, float]]:
    proc = subprocess.Popen(["dvc", "repro", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    starts: list[tuple[str, float]] = []
    for line in proc.stdout:
        sys.stdout.write(line)
        if m := RUNNING.match(line):
            starts.append((m.group(1), time.perf_counter()))
    rc = proc.wait()
    end = time.perf_counter()
    bounds = [t for _, t in starts[1:]] + [end]
    return rc, {name: b - t for (name, t), b in zip(starts, bounds)}


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rc, seconds = timed_repro(sys.argv[1:])
    if rc:
        return rc
    t0 = time.perf_counter()
    noop = subprocess.run(["dvc", "repro"], capture_output=True, text=True)
    noop_s = time.perf_counter() - t0
    if noop.returncode or "Running stage" in noop.stdout:
        logging.error("the second `dvc repro` was not a no-op:\n%s", noop.stdout[-2000:])
        return 1
    stages = subprocess.run(["dvc", "stage", "list", "--name-only"], capture_output=True,
                            text=True, check=True).stdout.split()
    old = read_json(OUT) if OUT.exists() else {}
    by_stage = {s: v for s, v in {**old.get("seconds_by_stage", {}), **seconds}.items()
                if s in stages}
    write_json(OUT, {"n_stages": len(stages), "seconds_by_stage": by_stage,
                     "seconds_total": sum(by_stage.values()), "last_run": sorted(seconds),
                     "repro_noop_seconds": noop_s}, digits=3)
    logging.info("%d stages ran in %.0f s; no-op repro %.1f s -> %s", len(seconds),
                 sum(seconds.values()), noop_s, OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
