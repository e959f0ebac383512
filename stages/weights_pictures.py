"""Parameters as images: first-layer filters, weight banding of the last spatial conv, FC matrix."""

from pathlib import Path

import numpy as np
from _stage import run

from fclens.tables import read_fc_weights
from fclens.io import read_table
from fclens.models import build_model
from fclens.params import model_spec
from fclens.pictures import banding_tiles, class_order, filter_tiles, first_conv, last_spatial_conv
from fclens.plots import plot_fc_matrix, plot_tiles
from fclens.trees import chain_rank


def main(args, p):
    n_tiles = p["pictures"]["max_tiles"]
    model = build_model(model_spec(p, args.model), p["seed"])
    out = Path(args.out)
    w1 = first_conv(model).weight.detach().float().numpy()[:n_tiles]  # (O, 3, kh, kw)
    plot_tiles(filter_tiles(w1), f"{args.model}: first-layer filters (grey = 0)",
               out / "first_layer_filters.png")
    name, conv = last_spatial_conv(model)
    tiles, how = banding_tiles(conv.weight.detach().float().numpy(), n_tiles, p["seed"])
    plot_tiles(tiles, f"{args.model}: {name} {tuple(conv.weight.shape)}, {how}",
               out / "weight_banding.png")
    w, _, names = read_fc_weights(read_table(args.weights))
    nodes = read_table(args.trees).to_pandas()
    plot_fc_matrix(w, class_order(w), chain_rank(nodes, w), names, out / "fc_matrix.png")


if __name__ == "__main__":
    run("weights_pictures", main, lambda ap: [ap.add_argument(f"--{k}", required=True)
                                              for k in ("model", "weights", "trees", "out")],
        builds_models=True)
