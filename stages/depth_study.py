"""Relative accuracy and ablation damage against depth for the CIFAR ResNets."""

import re
from pathlib import Path

from _stage import run

from fclens.io import read_json, write_json
from fclens.plots import plot_depth


def main(args, p):
    rows = []
    for m in p["depth_study"]["models"]:
        depth = int(re.search(r"(\d+)$", p["models"][m]["arch"]).group(1))
        dec = read_json(Path("metrics") / m / "decompose.json")
        abl = read_json(Path("metrics") / m / "ablate.json")
        rows.append({"model": m, "depth": depth, "acc_original": dec["acc_original"],
                     "rel_acc": dec["rel_acc"], "rel_acc_retrained": dec["rel_acc_retrained"],
                     "damage_influential": abl["damage_influential_per_class"],
                     "damage_noninfluential": abl["damage_noninfluential_per_class"]})
    rows.sort(key=lambda r: r["depth"])
    write_json(args.metrics, {"models": {r["model"]: r for r in rows}}, digits=5)
    plot_depth([r["depth"] for r in rows], [r["rel_acc"] for r in rows],
               [r["damage_influential"] for r in rows], [r["damage_noninfluential"] for r in rows],
               Path(args.plot))


if __name__ == "__main__":
    run("depth_study", main, lambda ap: [ap.add_argument(f"--{k}", required=True)
                                         for k in ("metrics", "plot")])
