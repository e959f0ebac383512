"""Decomposed accuracy (no retraining) over a k1 x k2 grid: heatmap, CSV series, metrics."""

from pathlib import Path

from _stage import run

from fclens import tables
from fclens.decompose import k_grid
from fclens.io import write_csv, write_json
from fclens.plots import plot_heatmap


def main(a, p):
    head = tables.read_fc_weights(a.weights)
    g = p.decompose.grid
    metrics, acc, rows = k_grid(*tables.read_splits(a.data, head), head, g.k1, g.k2)
    write_json(a.metrics, metrics, digits=5)
    write_csv(a.csv, rows)
    plot_heatmap(acc, g.k2, g.k1, f"decomposed test accuracy (rows k1, cols k2; full "
                 f"{metrics['acc_original']:.3f})", Path(a.plot))


if __name__ == "__main__":
    run("k_grid", main, "data weights metrics plot csv")
