"""Decode a dataset archive once, or index an image folder -> data/<ds>/{train,test}.npz."""

from _stage import run
from fclens.core import io
from fclens.datasets.prepare import prepare


def main(a, p):
    info = prepare(p.dataset(a.dataset), f"params.yaml datasets.{a.dataset}", a.out)
    io.write_json(a.metrics, info)


if __name__ == "__main__":
    run("prepare_data", main, "dataset out metrics")
