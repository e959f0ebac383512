"""Neural collapse of the last layer: NC1-NC4 from the features (with --data), or the figures of
the weight rows alone (a model without a dataset)."""

from _stage import run
from fclens.analysis import geometry
from fclens.core import io, streaming, tables


def main(a, p):
    head = tables.read_fc_weights(a.weights)
    if a.data:
        train, test = streaming.open_splits(a.data, head)
        metrics = geometry.geometry(train, test, head, p.seed, (
            f"{a.data}/features_train.parquet", f"{a.data}/features_test.parquet", a.weights))
    else:
        metrics = {"weights": geometry.weight_geometry(head, a.weights)}
    io.write_json(a.metrics, {"n_classes": head.n_classes, **metrics}, digits=5)


if __name__ == "__main__":
    run("geometry", main, "weights metrics", "data")
