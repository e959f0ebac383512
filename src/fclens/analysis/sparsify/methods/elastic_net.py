"""elastic_net: the sparse decision layer of Wong, Santurkar and Madry (ICML 2021): glm-saga's
elastic-net path on standardized fit features. Grid k takes the largest lambda whose mean
non-zeros per class (NEC) is at least k; sets vary by class and `nec` is the actual mean. Its
no-refit heads are glm-saga's own weights. The paper's rule picks one lambda on the validation
part (metrics `elastic_net`). The solver holds its rows (N x D) and its gradient table (N x C)
in memory: it runs on a seeded subsample above `max_rows` and says so."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fclens.analysis.sparsify.glm_saga import (
    EN_SELECT_DROP,
    EnPath,
    elastic_net_path,
    elastic_net_rows,
)
from fclens.analysis.sparsify.rows import Part, materialize
from fclens.analysis.sparsify.selection import Context, Sets

if TYPE_CHECKING:
    from fclens.analysis.sparsify.bank import Point
    from fclens.core.params import SparsifyElasticNet


def select(ctx: Context) -> Sets:
    cfg, is_fit = ctx.params.elastic_net, ~ctx.is_val
    rows = elastic_net_rows(is_fit, cfg.max_rows, ctx.seed)
    path = elastic_net_path(materialize(Part(ctx.train, rows)),
                            materialize(Part(ctx.train, ctx.is_val)), ctx.head.n_classes, cfg,
                            ctx.seed, int(is_fit.sum()))
    lams = [i for i in {path.at_k(k) for k in ctx.ks} | {path.selected()} if i is not None]
    return Sets([path.w[i] != 0 for i in lams],
                [[None if path.at_k(k) is None else lams.index(path.at_k(k)) for k in ctx.ks]],
                weights=[(path.w[i], path.b[i]) for i in lams],
                section=lambda pts: section(path, pts[lams.index(path.selected())], cfg),
                selected=lams.index(path.selected()))


def section(path: EnPath, sel: Point, cfg: SparsifyElasticNet) -> dict:
    """metrics `elastic_net`: the selected lambda's point and the path."""
    i = path.selected()
    return {"selected_nec": sel.nec, "selected_acc": sel.acc,
            "selected_acc_refit": sel.acc_refit, "lambda": float(path.lam[i]),
            "selected_val_acc": float(path.val_acc[i]),
            "best_val_acc": float(np.nanmax(path.val_acc)),
            "select_within": EN_SELECT_DROP, "alpha": cfg.alpha,
            "n_lambda": cfg.n_lambda, "n_rows": path.n_rows, "n_fit_rows": path.n_fit,
            "subsampled": path.n_rows < path.n_fit, "max_rows": cfg.max_rows,
            "path": {"lambda": path.lam.tolist(), "nec": path.nec.tolist(),
                     "val_acc": path.val_acc.tolist()}}
