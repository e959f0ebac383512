"""Noise ablations of influential / non-influential / random sets, and a cross-method table."""

from _stage import run
from fclens.analysis import ablate
from fclens.core import io, streaming, tables


def main(a, p):
    head = tables.read_fc_weights(a.weights)
    train, test = streaming.open_splits(a.data, head)
    infl = tables.read_influential(a.influential, head.n_classes, head.dim)
    metrics, per_class = ablate.run_ablations(train, test, head, infl, p.ablate, p.seed)
    io.write_json(a.metrics, metrics, digits=5)
    tables.write_frame(a.per_class, per_class, tables.ABLATE_PER_CLASS, head.n_classes)


if __name__ == "__main__":
    run("ablate", main, "data weights influential metrics per_class")
