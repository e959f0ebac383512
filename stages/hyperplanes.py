"""Fleuret's picture: the hidden units' lines of a 2-20-2 MLP while it learns two moons."""

from _stage import run
from fclens.analysis import hyperplanes
from fclens.core import io
from fclens.plots import studies


def main(a, p):
    h = p.hyperplanes
    r = hyperplanes.hyperplanes(h.n_points, h.steps, h.lr, h.seed)
    studies.plot_hyperplanes(r.x, r.y, r.snapshots, r.regions, r.extent, a.plot)
    io.write_json(a.metrics, r.metrics, digits=4)


if __name__ == "__main__":
    run("hyperplanes", main, "metrics plot")
