"""Decomposed accuracy (no retraining) over a k1 x k2 grid: heatmap, CSV series, metrics."""

from _stage import run
from fclens.analysis import decompose
from fclens.core import io, streaming, tables
from fclens.plots import studies


def main(a, p):
    head = tables.read_fc_weights(a.weights)
    g = p.decompose.grid
    metrics, acc, rows = decompose.k_grid(*streaming.open_splits(a.data, head), head, g.k1, g.k2)
    io.write_json(a.metrics, metrics, digits=5)
    io.write_csv(a.csv, rows)
    studies.plot_k_grid(acc, g.k1, g.k2, metrics["acc_original"], a.plot)


if __name__ == "__main__":
    run("k_grid", main, "data weights metrics plot csv")
