"""ALD MLE per class vs Gaussian/Laplace/Student-t/logistic -> tables, metrics, plots."""

import time

from _stage import run
from fclens.analysis import ald
from fclens.core import io, tables
from fclens.plots import weights


def main(a, p):
    head = tables.read_fc_weights(a.weights)
    classes = p.class_indices("ald.plot_classes", head.n_classes, a.weights)
    t0 = time.perf_counter()
    res = ald.compare_families(head.w)
    io.write_json(a.timing, {"fit_seconds": time.perf_counter() - t0}, digits=3)
    tables.write_ald(a.out, res, head.names, tuple(ald.FAMILIES))
    io.write_json(a.metrics, ald.summary(res), digits=4)
    weights.plot_ald(ald.class_curves(head.w, res, classes), res["ald_fit"]["kappa"], head.names,
                     a.plots)


if __name__ == "__main__":
    run("fit_ald", main, "weights out metrics plots timing")
