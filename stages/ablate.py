"""Noise ablations of influential / non-influential / random sets, and a cross-method table."""

from _stage import run

from fclens import tables
from fclens.ablate import run_ablations
from fclens.io import write_json


def main(a, p):
    head = tables.read_fc_weights(a.weights)
    train, test = tables.read_splits(a.data, head)
    infl = tables.read_influential(a.influential, head.n_classes, head.dim)
    q = p.ablate
    metrics, per_class = run_ablations(train, test, head, infl, q.noise, q.noise_modes,
                                       q.n_random, p.seed)
    write_json(a.metrics, metrics, digits=5)
    tables.write_frame(a.per_class, per_class, tables.ABLATE_PER_CLASS, head.n_classes)


if __name__ == "__main__":
    run("ablate", main, "data weights influential metrics per_class")
