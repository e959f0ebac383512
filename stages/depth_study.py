"""Relative accuracy and ablation damage against depth for the CIFAR ResNets."""

from pathlib import Path

from _stage import run
from fclens.io import write_json
from fclens.plots import plot_depth
from fclens.report.depth import depth_study


def main(a, p):
    models = p.depth_study.models
    metrics, series = depth_study(Path("metrics"), models, {m: p.models[m].arch for m in models})
    write_json(a.metrics, metrics, digits=5)
    plot_depth(*series, Path(a.plot))


if __name__ == "__main__":
    run("depth_study", main, "metrics plot")
