"""What every stage script shares: flags, typed params, logging, all-or-nothing outputs."""

import argparse
import logging
import sys

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
