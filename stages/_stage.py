"""What every stage script shares: logging setup and params loading. Kept tiny on purpose."""

from __future__ import annotations

import argparse
import logging
import sys

from fclens.io import FclensError
from fclens.params import load_params


def run(name: str, main, add_args=None) -> None:
    """Parse `--model`-style flags, load and validate params, call main(args, params).

    A FclensError is a user-facing message: print it without a traceback, exit 1.
    """
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    ap = argparse.ArgumentParser(prog=name)
    if add_args:
        add_args(ap)
    args = ap.parse_args()
    try:
        params = load_params()
        main(args, params)
    except FclensError as e:
        logging.getLogger(name).error("%s", e)
        sys.exit(1)
