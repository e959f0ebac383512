"""Decomposed head (logit_c = x[I_c] . W[c, I_c] + b_c), without and with retraining."""

from _stage import run
from fclens.analysis import decompose
from fclens.core import io, streaming, tables


def main(a, p):
    head = tables.read_fc_weights(a.weights)
    train, test = streaming.open_splits(a.data, head)
    infl = tables.read_influential(a.influential, head.n_classes, head.dim)
    metrics = decompose.decompose_with_live_curves(train, test, head, infl, p.decompose, p.seed,
                                                   a.live)
    io.write_json(a.metrics, {**metrics, "k1": p.decompose.k1}, digits=5)


if __name__ == "__main__":
    run("decompose", main, "data weights influential metrics live")
