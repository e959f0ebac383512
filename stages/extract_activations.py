"""Penultimate features of train and test images -> data/<model>/features_{train,test}.parquet."""

from _stage import run
from fclens.core import io
from fclens.extract.backend import extract_splits
from fclens.models.registry import build_model


def main(a, p):
    model = build_model(p.model(a.model), seed=p.seed)
    metrics, timing = extract_splits(model, a.data, a.out, p.extract, a.model)
    io.write_json(a.metrics, metrics, digits=5)
    io.write_json(a.timing, timing, digits=4)


if __name__ == "__main__":
    run("extract_activations", main, "model data out metrics timing")
