"""Decode a dataset archive once into arrays, or index an image folder:
data/<dataset>/{train,test}.npz, and what was read: metrics/data/<dataset>.json."""

from pathlib import Path

from _stage import run

from fclens.data import prepare
from fclens.io import write_json


def main(a, p):
    info = prepare(p.datasets[a.dataset], f"params.yaml datasets.{a.dataset}", Path(a.out))
    write_json(a.metrics, info)


if __name__ == "__main__":
    run("prepare_data", main, "dataset out metrics")
