"""Algorithm 1 of "Decomposing the Deep": each class's k2 most frequent top-k1 features."""

from _stage import run
from fclens.analysis import decompose
from fclens.core import streaming, tables


def main(a, p):
    head = tables.read_fc_weights(a.weights)
    k1, k2 = p.decompose.k1, p.decompose.k2
    decompose.check_k(k1, k2, head.dim)  # before reading 50k rows
    train = streaming.FeatureTable(a.features, head.n_classes, head.dim)  # streamed, bounded memory
    tables.write_influential(a.out, decompose.influential_indices(train, head.n_classes, k1, k2))


if __name__ == "__main__":
    run("select_influential", main, "features weights out")
