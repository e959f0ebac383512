"""Algorithm 1 of "Decomposing the Deep": each class's k2 most frequent top-k1 features."""

from _stage import run

from fclens import tables
from fclens.decompose import check_k, influential_indices


def main(a, p):
    head = tables.read_fc_weights(a.weights)
    check_k(p.decompose.k1, p.decompose.k2, head.dim)  # before reading 50k rows
    f = tables.read_features(a.features, head.n_classes, head.dim)
    infl = influential_indices(f.x, f.labels, head.n_classes, p.decompose.k1, p.decompose.k2)
    tables.write_influential(a.out, infl)


if __name__ == "__main__":
    run("select_influential", main, "features weights out")
