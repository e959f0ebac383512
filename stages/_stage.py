"""What every stage script shares: logging setup and params loading. Kept tiny on purpose."""

from __future__ import annotations

import argparse
import logging
import sys

from fclens.io import FclensError
from fclens.params import load_params


def run(name: str, main, add_args=None, builds_models: bool = False) -> None:
    """Parse `--model`-style flags, load and validate params, call main(args, params).

    builds_models: also check every model's architecture name against timm's registry. Only the
    stages that build models (and prepare_data, the first stage) pay for importing timm.
    A FclensError is a user-facing message: print it without a traceback, exit 1.
    """
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    ap = argparse.ArgumentParser(prog=name)
    if add_args:
        add_args(ap)
    args = ap.parse_args()
    try:
        params = load_params(check_archs=builds_models)
        main(args, params)
    except FclensError as e:
        logging.getLogger(name).error("%s", e)
        sys.exit(1)
