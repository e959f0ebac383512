"""Parameters as images: first-layer filters, weight banding of the last spatial conv, FC matrix."""

from pathlib import Path

from _stage import run

from fclens import tables
from fclens.models.registry import build_model
from fclens.pictures import draw_pictures


def main(a, p):
    model = build_model(p.model(a.model), p.seed)
    draw_pictures(model, tables.read_fc_weights(a.weights), a.model, p.pictures.max_tiles, p.seed,
                  Path(a.out))


if __name__ == "__main__":
    run("weights_pictures", main, "model weights out", builds_models=True)
