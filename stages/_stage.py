"""What every stage script shares: flags, typed params, logging, all-or-nothing outputs."""

import argparse
import logging
import sys
from pathlib import Path

import yaml

from fclens.core.errors import FclensError
from fclens.core.io import atomic_group
from fclens.core.params import load_params


def run(name: str, main, required: str, optional: str = "") -> None:
    """Parse `--<flag>` paths, validate params.yaml, call main(args, params); outputs land
    together when it returns. FclensError: one line, exit 1."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    ap = argparse.ArgumentParser(prog=name)
    for flag in required.split() + optional.split():
        ap.add_argument(f"--{flag}", required=flag in required.split())
    args = ap.parse_args()
    try:
        params = load_params()
        with atomic_group():
            main(args, params)
    except FclensError as e:
        logging.getLogger(name).error("%s", e)
        sys.exit(1)


def check_declared(stage: str, paths: list[str], dvc_yaml: Path = Path("dvc.yaml")) -> None:
    """Each path this stage reads must be one of its deps in dvc.yaml.

    For inputs named by a params list (DVC cannot turn a list into deps): a list entry added
    without its dep would read files DVC does not track for this stage, so a change to them
    would not rerun it. This is glue between DVC and the stages; the library never reads
    dvc.yaml.
    """
    if not dvc_yaml.is_file():
        raise FclensError(f"{dvc_yaml}: not found; run the stage from the project root")
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages") or {}
    declared = {str(d).rstrip("/") for d in (stages.get(stage) or {}).get("deps") or []}
    if missing := [p for p in paths if p.rstrip("/") not in declared]:
        raise FclensError(f"{dvc_yaml} stages.{stage}.deps: add {', '.join(missing)} "
                          f"(params.yaml {stage} lists them)")
