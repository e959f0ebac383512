"""Parameters as images: first-layer filters, weight banding of the last spatial conv, FC matrix."""

from _stage import run
from fclens import pictures, tables
from fclens.models.registry import build_model


def main(a, p):
    model = build_model(p.model(a.model), p.seed)
    head = tables.read_fc_weights(a.weights)
    pictures.draw_pictures(model, head, a.model, p.pictures.max_tiles, p.seed, a.out)


if __name__ == "__main__":
    run("weights_pictures", main, "model weights out", builds_models=True)
