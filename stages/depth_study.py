"""Relative accuracy, ablation damage and neural collapse against depth for the CIFAR ResNets."""

from _stage import check_declared, run
from fclens.core import io
from fclens.plots import studies
from fclens.report.depth import depth_study, geometry_series


def main(a, p):
    models = p.depth_study.models
    check_declared("depth_study", [f"metrics/{m}" for m in models])
    metrics, series = depth_study("metrics", models, {m: p.models[m].arch for m in models})
    io.write_json(a.metrics, metrics, digits=5)
    studies.plot_depth(*series, a.plot)
    studies.plot_geometry_depth(*geometry_series(metrics), a.geometry_plot)


if __name__ == "__main__":
    run("depth_study", main, "metrics plot geometry_plot")
