"""The selection methods by name, one module each, all of the shape
`select(ctx: selection.Context) -> selection.Sets`. A new method: one file here and one line
below; params.yaml `sparsify.methods` may then name it."""

from __future__ import annotations

from collections.abc import Callable

from fclens.analysis.sparsify.methods import (
    algorithm1,
    csg,
    elastic_net,
    random,
    top_abs_weight,
    top_contribution,
    top_signed_weight,
)
from fclens.analysis.sparsify.selection import Context, Sets

METHODS: dict[str, Callable[[Context], Sets]] = {
    "algorithm1": algorithm1.select,
    "top_signed_weight": top_signed_weight.select,
    "top_abs_weight": top_abs_weight.select,
    "top_contribution": top_contribution.select,
    "random": random.select,
    "elastic_net": elastic_net.select,
    "csg": csg.select,
}
