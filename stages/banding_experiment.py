"""Distill's claim that weight banding comes from global average pooling: the same small CNN
trained with GAP and with the final map flattened, per seed -> banding_experiment.json."""

from _stage import run
from fclens.analysis import banding
from fclens.core import io
from fclens.datasets.splits import load_split


def main(a, p):
    e = p.banding_experiment
    p.dataset(e.dataset)  # known to params.yaml; the library refuses an image folder
    train, test = (load_split(f"{a.data}/{s}.npz") for s in ("train", "test"))
    metrics = banding.banding_experiment(train, test, e)
    io.write_json(a.metrics, metrics, digits=4)


if __name__ == "__main__":
    run("banding_experiment", main, "data metrics")
