"""The last layer's geometry: neural collapse (Papyan, Han & Donoho, PNAS 2020), per split.

With μ_c the mean feature of class c, μ_G the mean of all features and M (C, D) the centred means
μ_c - μ_G, the figures are:

- NC1 = Tr(Σ_W Σ_B⁺) / C: Σ_W the within-class covariance over all samples, Σ_B = M^T M / C the
  covariance of the class means (variability collapse: 0 when every feature sits on its mean);
- NC2: the coefficient of variation of the norms ‖μ_c - μ_G‖ and ‖w_c‖ (equinorm), and of the
  pairwise cosines of the rows of M and of W their std and their mean |cos + 1/(C-1)|
  (equiangular and maximally apart: a simplex ETF has every cosine at -1/(C-1));
- NC3 = ‖W/‖W‖_F - M/‖M‖_F‖²_F (self-duality: the classifier aligns with the means);
- NC4: the share of images where the FC prediction (the model's own `pred`) and the
  nearest-class-centre rule (the *train* means) disagree, and that rule's accuracy.

Every sum is accumulated per batch in float64 (bounded memory whatever N: a (C, D) sum and a
(D, D) scatter), the scatter around the means found in a first pass, so a collapsed split gives 0,
not a cancellation residue.
"""

from __future__ import annotations

import numpy as np

from fclens.analysis.decompose import Source, batches
from fclens.core.errors import FclensError
from fclens.core.tables import Head

# figures of W alone: the weight-only models (no dataset) get these
WEIGHT_KEYS = ("nc2_norm_cv_w", "nc2_cos_std_w", "nc2_cos_shift_w")


def _cos_figures(rows: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(std, mean |cos + 1/(C-1)|) of the pairwise cosines of `rows` (C, D), and each row's
    largest cosine to another row (C,)."""
    c = len(rows)
    norms = np.linalg.norm(rows, axis=1)
    unit = rows / np.where(norms > 0, norms, 1)[:, None]
    cos = unit @ unit.T  # (C, C)
    off = cos[~np.eye(c, dtype=bool)]  # (C (C-1),)
    nearest = np.where(np.eye(c, dtype=bool), -np.inf, cos).max(1)
    return float(off.std()), float(np.abs(off + 1 / (c - 1)).mean()), nearest


def _cv(x: np.ndarray) -> float:
    return float(x.std() / x.mean()) if x.mean() > 0 else float("nan")


def weight_geometry(head: Head) -> dict:
    """The W parts of NC2, and each class's weight-row norm (`per_class.w_norm`)."""
    if head.n_classes < 2:
        raise FclensError(f"fc_weights: {head.n_classes} class; neural collapse needs at least "
                          f"2 classes (the cosines of the class vectors are undefined)")
    w = head.w.astype(np.float64)  # (C, D)
    std, shift, _ = _cos_figures(w)
    norms = np.linalg.norm(w, axis=1)
    return {"nc2_norm_cv_w": _cv(norms), "nc2_cos_std_w": std, "nc2_cos_shift_w": shift,
            "per_class": {"w_norm": norms.tolist()}}


def _class_sums(source: Source, c: int, d: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Per class: count (C,) and feature sum (C, D), float64, in one pass."""
    n, s = np.zeros(c, np.int64), np.zeros((c, d))
    for f in batches(source):
        n += np.bincount(f.labels, minlength=c)
        np.add.at(s, f.labels, f.x.astype(np.float64))
    if (n == 0).any():
        raise FclensError(f"{where}: no image of class {np.flatnonzero(n == 0).tolist()}; the "
                          f"class means of neural collapse need every class (expected at least "
                          f"one image per class)")
    return n, s


def _ncc(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Nearest class centre of each row of x (B, D) among means (C, D): (B,)."""
    d2 = (x * x).sum(1)[:, None] - 2 * x @ means.T + (means * means).sum(1)[None, :]  # (B, C)
    return d2.argmin(1)


def split_geometry(source: Source, head: Head, train_means: np.ndarray | None, where: str
                   ) -> tuple[dict, np.ndarray]:
    """NC1-NC4 of one split, and its class means (C, D). `train_means` None: this split is the
    training split, whose own means serve the nearest-class-centre rule."""
    c, d = head.w.shape
    if c < 2:
        raise FclensError(f"{where}: {c} class; neural collapse needs at least 2 classes")
    n_c, sums = _class_sums(source, c, d, where)
    n = int(n_c.sum())
    means = sums / n_c[:, None]  # (C, D)
    mu_g = sums.sum(0) / n  # (D,)
    centres = means if train_means is None else train_means
    scatter = np.zeros((d, d))  # Σ (x - μ_y)(x - μ_y)^T
    disagree = ncc_hits = 0
    for f in batches(source):
        z = f.x.astype(np.float64) - means[f.labels]  # (B, D)
        scatter += z.T @ z
        ncc = _ncc(f.x.astype(np.float64), centres)
        disagree += int((ncc != f.preds).sum())
        ncc_hits += int((ncc == f.labels).sum())
    sigma_w = scatter / n
    m = means - mu_g  # (C, D) centred means
    sigma_b = m.T @ m / c
    nc1 = float(np.trace(sigma_w @ np.linalg.pinv(sigma_b, hermitian=True)) / c)
    std_m, shift_m, nearest_m = _cos_figures(m)
    w = head.w.astype(np.float64)
    nc3 = float(((w / np.linalg.norm(w) - m / np.linalg.norm(m)) ** 2).sum())
    m_norms = np.linalg.norm(m, axis=1)
    wg = weight_geometry(head)
    return ({"n_images": n, "nc1": nc1, "nc2_norm_cv_means": _cv(m_norms),
             "nc2_cos_std_means": std_m, "nc2_cos_shift_means": shift_m,
             **{k: wg[k] for k in WEIGHT_KEYS}, "nc3": nc3, "nc4": disagree / n,
             "ncc_acc": ncc_hits / n,
             "per_class": {"mean_norm": m_norms.tolist(), "nearest_cos": nearest_m.tolist()}},
            means)


def geometry(train: Source, test: Source, head: Head) -> dict:
    """metrics/<m>/geometry.json: `train` and `test` (NC1-NC4; nearest class centre from the
    train means in both), and `weights` (the W parts, per class the row norms)."""
    tr, means = split_geometry(train, head, None, "features_train")
    te, _ = split_geometry(test, head, means, "features_test")
    return {"train": tr, "test": te, "weights": weight_geometry(head)}
