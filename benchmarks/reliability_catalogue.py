"""The bad-input catalogue's figures -> metrics/reliability.json (`make catalogue`).

Runs every case of tests/test_reliability.py (several minutes) with FCLENS_CATALOGUE_OUT naming
a temporary file: the test module writes its counts there (overall and per category) once every
case has run. A plain test run (`make test`, `pytest -k ...`) writes nothing into the repo. The
figures count every outcome, failing cases included, so they are written even when a case fails
(the exit status is then pytest's); a run that stopped early writes nothing. `--out` changes
where they go.
"""

import argparse
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from fclens.core.io import read_json, write_json

ROOT = Path(__file__).resolve().parents[1]
OUT = Path("metrics/reliability.json")
TESTS = "tests/test_reliability.py"
log = logging.getLogger("catalogue")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / OUT)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = Path(tmp) / "reliability.json"
        rc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             TESTS], cwd=ROOT,
                            env={**os.environ, "FCLENS_CATALOGUE_OUT": str(figures)}).returncode
        if not figures.exists():
            log.error("%s: not written: not every case of the catalogue ran (pytest exit %d)",
                      a.out, rc)
            return rc or 1
        counts = read_json(figures)
    write_json(a.out, counts)
    log.info("%s: %d cases: %s", a.out, counts["n_cases"],
             ", ".join(f"{k[2:]} {v}" for k, v in counts.items()
                       if k.startswith("n_") and k != "n_cases"))
    return rc


if __name__ == "__main__":
    sys.exit(main())
