"""What the per-class figure draws, computed here so that plots stay free of the fits: each
family's fitted density on a grid, and the fitted ALD's quantiles for a QQ plot."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from fclens.analysis.ald.families import FAMILIES
from fclens.analysis.ald.families.ald import ald_ppf

PLOT_FAMILIES = ("ald", "gaussian", "laplace")  # the densities drawn over each histogram


def densities(res: dict, rows: np.ndarray, grid: np.ndarray,
              families: Iterable[str] = PLOT_FAMILIES) -> dict[str, np.ndarray]:
    """Fitted density of each family at grid (K, G) for the classes `rows` (K,) of
    `compare_families`'s result `res`: family name -> (K, G), NaN for a row without a fit (and
    for the ALD's density of a boundary fit, a shifted exponential starting at a weight).

    The ALD's shape kappa is in res['ald_fit'] (res['ald'] holds the table's columns only).
    """
    out = {}
    for name in families:
        part = res["ald_fit"] if name == "ald" else res[name]
        fit = {k: np.asarray(v)[rows] for k, v in part.items() if k != "status"}  # each (K,)
        out[name] = np.exp(FAMILIES[name].logpdf(grid, fit))
    return out


def class_curves(w: np.ndarray, res: dict, classes: Sequence[int], n_grid: int = 400,
                 families: Iterable[str] = PLOT_FAMILIES) -> dict:
    """The arrays `plots.weights.plot_ald_classes` draws for `classes` (K,) of w (C, D).

    classes: class indices ([] draws class 0, so the figure is never empty). Returns classes
    (K,), x (K, D) each class's sorted weights (w's dtype), grid (K, n_grid) from its smallest to
    its largest weight, fitted (K,) whether the ALD was fitted, kappa (K,), density {family:
    (K, n_grid)} (see `densities`) and qq (K, D) the fitted ALD's quantiles at (i - 0.5) / D.
    """
    rows = np.asarray(list(classes) or [0], dtype=np.int64)  # (K,)
    x = np.sort(np.asarray(w)[rows], axis=1)  # (K, D)
    # one linspace per row (K is a handful): with float32 weights np.linspace over arrays rounds
    # differently from the scalar call the published figures were drawn with
    grid = np.stack([np.linspace(lo, hi, n_grid) for lo, hi in zip(x[:, 0], x[:, -1])])
    d = x.shape[1]
    q = (np.arange(1, d + 1) - 0.5) / d  # (D,) plotting positions
    fit = res["ald_fit"]
    return {"classes": rows, "x": x, "grid": grid, "fitted": np.isfinite(fit["loglik"][rows]),
            "kappa": fit["kappa"][rows], "density": densities(res, rows, grid, families),
            "qq": ald_ppf(np.broadcast_to(q, x.shape), fit["loc"][rows], fit["scale"][rows],
                          fit["kappa"][rows])}
