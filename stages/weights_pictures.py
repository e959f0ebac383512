"""Parameters as images: first-layer filters, weight banding (scored per layer), FC matrix."""

from _stage import run
from fclens.core import io, tables
from fclens.explain import pictures
from fclens.models.registry import build_model


def main(a, p):
    model = build_model(p.model(a.model), p.seed)
    head = tables.read_fc_weights(a.weights)
    banding = pictures.draw_pictures(model, head, a.model, p.pictures.max_tiles, p.seed, a.out)
    io.write_json(a.banding, banding, digits=5)


if __name__ == "__main__":
    run("weights_pictures", main, "model weights out banding")
