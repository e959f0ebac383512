"""What every stage script shares: flags, typed params, logging, all-or-nothing outputs."""

import argparse
import logging
import sys

from fclens.errors import FclensError
from fclens.io import atomic_group
from fclens.params import load_params


def run(name: str, main, required: str, optional: str = "", builds_models: bool = False) -> None:
    """Parse `--<flag>` paths, validate params.yaml, call main(args, params); the outputs land
    together when main returns, or none do. A FclensError is logged without a traceback, exit 1.
    builds_models: also look each timm arch up in timm's registry (imports timm)."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    ap = argparse.ArgumentParser(prog=name)
    for flag in required.split() + optional.split():
        ap.add_argument(f"--{flag}", required=flag in required.split())
    args = ap.parse_args()
    try:
        params = load_params(check_archs=builds_models)
        with atomic_group():
            main(args, params)
    except FclensError as e:
        logging.getLogger(name).error("%s", e)
        sys.exit(1)
