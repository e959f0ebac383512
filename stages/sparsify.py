"""Sparse heads: which features does each class need? Seven per-class selection methods over a
k grid, without and with head refit; ALD's natural cut; global pruning of the FC matrix."""

import pandas as pd

from _stage import run
from fclens.analysis import sparsify
from fclens.core import io, streaming, tables
from fclens.plots import studies


def main(a, p):
    sparsify.check_methods(p.sparsify.methods)  # params names vs the registry, before any work
    head = tables.read_fc_weights(a.weights)
    sparsify.resolve_grid(p.sparsify.k_grid, head.dim, a.model)  # k grid vs D, before the scan
    train, test = streaming.open_splits(a.data, head)
    ald = tables.read_frame(a.ald, tables.ALD_PARAMS, head.n_classes)
    infl = tables.read_influential(a.influential, head.n_classes, head.dim)
    r = sparsify.run(train, test, head, {k: ald[k].to_numpy() for k in ("loc", "scale", "kappa")},
                     p.sparsify, p.seed, infl, a.model)
    io.write_json(a.metrics, r.metrics, digits=5)
    io.write_json(a.timing, r.timing, digits=3)
    io.write_csv(a.csv, r.rows)
    tables.write_frame(a.sets, pd.DataFrame(r.sets), tables.SPARSE_SETS, head.n_classes)
    tables.write_frame(a.heads, pd.DataFrame(r.heads), tables.SPARSE_HEADS, head.n_classes)
    studies.plot_sparsify(r.metrics, f"{a.model}: sparse heads", a.plot)
    studies.plot_global_pruning(r.metrics, f"{a.model}: global pruning of the FC weights",
                                a.global_plot)


if __name__ == "__main__":
    run("sparsify", main,
        "model data weights ald influential metrics timing plot global_plot csv sets heads")
