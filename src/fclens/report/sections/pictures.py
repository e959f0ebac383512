"""Parameters as pictures: every PNG of plots/pictures/<m>/, in a fixed order."""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import figure

PICTURE_CAPTIONS = {
    "first_layer_filters": "first-layer convolution filters.",
    "weight_banding": "weight banding: per-neuron NMF of the most horizontally banded spatial "
                      "convolution's weights (Distill 2021; its score in the title).",
    "banding_by_depth": "banding score (share of kernel energy in row / column means) of every "
                        "spatial convolution, by depth; the dashed line is chance.",
    "fc_matrix": "the FC matrix, classes clustered; left: columns by mean split-tree rank, "
                 "right: each class's row in its own split-tree order, i.e. sorted by weight.",
}


def section_pictures(inp: Inputs) -> list[str]:
    lines = []
    order = list(PICTURE_CAPTIONS)
    for m in inp.models:
        lines += [f"### {m}", ""]
        pics = sorted(inp.pngs(f"plots/pictures/{m}"),
                      key=lambda p: (order.index(p[0]) if p[0] in order else len(order), p[0]))
        for stem, src in pics:
            lines += figure(src, f"{m}: {PICTURE_CAPTIONS.get(stem, stem)}")
    return lines
