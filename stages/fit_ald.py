"""ALD MLE + comparison with Gaussian/Laplace/Student-t/logistic per class -> tables, metrics, plots."""

import time
from pathlib import Path

from _stage import run

from fclens import ald, tables
from fclens.io import write_json
from fclens.plots import plot_ald_classes, plot_kappa_hist


def main(a, p):
    head = tables.read_fc_weights(a.weights)
    classes = p.class_indices("ald.plot_classes", head.n_classes, a.weights)
    t0 = time.perf_counter()
    res = ald.compare_families(head.w)
    write_json(a.timing, {"fit_seconds": time.perf_counter() - t0}, digits=3)
    tables.write_ald(a.out, res, head.names)
    write_json(a.metrics, ald.summary(res), digits=4)
    plot_ald_classes(head.w, res, head.names, classes, Path(a.plots) / "classes.png")
    plot_kappa_hist(res["ald_fit"]["kappa"], Path(a.plots) / "kappa.png")


if __name__ == "__main__":
    run("fit_ald", main, "weights out metrics plots timing")
