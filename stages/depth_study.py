"""Relative accuracy and ablation damage against depth for the CIFAR ResNets."""

from pathlib import Path

import yaml

from _stage import run
from fclens.errors import FclensError
from fclens.io import write_json
from fclens.plots import plot_depth
from fclens.report.depth import depth_rows

METRICS = Path("metrics")


def check_declared(models: list[str], dvc_yaml: Path = Path("dvc.yaml")) -> None:
    """Each model's metrics folder must be a dep of this stage in dvc.yaml.

    DVC cannot turn `depth_study.models` into deps, so dvc.yaml lists the folders by hand; a
    model added to the params without its folder would read files DVC does not track here.
    """
    deps = yaml.safe_load(dvc_yaml.read_text())["stages"]["depth_study"]["deps"]
    declared = {str(d).rstrip("/") for d in deps}
    missing = [f"{METRICS}/{m}" for m in models if f"{METRICS}/{m}" not in declared]
    if missing:
        raise FclensError(f"{dvc_yaml} stages.depth_study.deps: add {', '.join(missing)} "
                          f"(depth_study.models lists them)")


def main(args, p):
    models = list(p.depth_study.models)
    archs = {m: p.models[m].arch for m in models}
    check_declared(models)
    rows = depth_rows(METRICS, models, archs)
    write_json(args.metrics, {"models": {r["model"]: r for r in rows}}, digits=5)
    plot_depth([r["depth"] for r in rows], [r["rel_acc"] for r in rows],
               [r["damage_influential"] for r in rows], [r["damage_noninfluential"] for r in rows],
               Path(args.plot))


if __name__ == "__main__":
    run("depth_study", main, "metrics plot")
