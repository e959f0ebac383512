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

Control (`control_shuffled_labels`): NC1 and the nearest-centre accuracy of the same features
with their labels shuffled (the same class sizes, seeded). Features with no class structure give
figures like these; real collapse must sit far below the control's NC1 and far above its
accuracy (chance, 1/C).

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


def _cos_figures(rows: np.ndarray, where: str, what: str
                 ) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(std, mean |cos + 1/(C-1)|) of the pairwise cosines of `rows` (C, D), each row's largest
    cosine to another row (C,), and the rows' norms (C,), all positive. A zero row has no
    direction: an error, not a 0 cosine (which would pass for orthogonal)."""
    c = len(rows)
    norms = np.linalg.norm(rows, axis=1)
    if (zero := np.flatnonzero(norms == 0)).size:
        raise FclensError(f"{where}: the {what} of class {zero[:10].tolist()} is zero, so its "
                          f"angles to the other classes are undefined; expected non-zero "
                          f"class vectors")
    unit = rows / norms[:, None]
    cos = unit @ unit.T  # (C, C)
    off = cos[~np.eye(c, dtype=bool)]  # (C (C-1),)
    nearest = np.where(np.eye(c, dtype=bool), -np.inf, cos).max(1)
    return float(off.std()), float(np.abs(off + 1 / (c - 1)).mean()), nearest, norms


def _cv(norms: np.ndarray) -> float:
    """Coefficient of variation of positive norms (`_cos_figures` refuses zero rows)."""
    return float(norms.std() / norms.mean())


def weight_geometry(head: Head, where: str = "fc_weights") -> dict:
    """The W parts of NC2, and each class's weight-row norm (`per_class.w_norm`)."""
    if head.n_classes < 2:
        raise FclensError(f"{where}: {head.n_classes} class; neural collapse needs at least "
                          f"2 classes (the cosines of the class vectors are undefined)")
    std, shift, _, norms = _cos_figures(head.w.astype(np.float64), where, "weight row")
    return {"nc2_norm_cv_w": _cv(norms), "nc2_cos_std_w": std, "nc2_cos_shift_w": shift,
            "per_class": {"w_norm": norms.tolist()}}


def _labelled(source: Source, labels: np.ndarray | None):
    """(batch, its labels): the stored ones, or the slice of `labels` (N,) in file order."""
    start = 0
    for f in batches(source):
        yield f, f.labels if labels is None else labels[start:start + len(f.labels)]
        start += len(f.labels)


def _class_sums(source: Source, c: int, d: int, where: str, labels: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per class: count (C,) and feature sum (C, D), float64, in one pass."""
    n, s = np.zeros(c, np.int64), np.zeros((c, d))
    for f, y in _labelled(source, labels):
        n += np.bincount(y, minlength=c)
        np.add.at(s, y, f.x.astype(np.float64))
    if (n == 0).any():
        raise FclensError(f"{where}: no image of class {np.flatnonzero(n == 0).tolist()}; the "
                          f"class means of neural collapse need every class (expected at least "
                          f"one image per class)")
    return n, s


def _ncc(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Nearest class centre of each row of x (B, D) among means (C, D): (B,)."""
    d2 = (x * x).sum(1)[:, None] - 2 * x @ means.T + (means * means).sum(1)[None, :]  # (B, C)
    return d2.argmin(1)


def _within(source: Source, means: np.ndarray, centres: np.ndarray,
            labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Σ (x - μ_y)(x - μ_y)^T (D, D); per image (N,) its nearest centre among `centres`, and
    (2, N) the labels used and the model's predictions, in file order."""
    d = means.shape[1]
    scatter, nearest, seen = np.zeros((d, d)), [], []
    for f, y in _labelled(source, labels):
        x = f.x.astype(np.float64)
        z = x - means[y]  # (B, D)
        scatter += z.T @ z
        nearest.append(_ncc(x, centres))
        seen.append(np.stack([y, f.preds]))
    return scatter, np.concatenate(nearest), np.concatenate(seen, axis=1)


def _nc1(scatter: np.ndarray, n: int, m: np.ndarray) -> float:
    """Tr(Σ_W Σ_B⁺) / C from the within-class scatter of n images and the centred means M."""
    c = len(m)
    # Σ_B has rank <= C-1: its null directions are roundoff (~1e-16 relative on ResNet20's
    # features, just under pinv's default cutoff); an explicit 1e-10 keeps them out
    sigma_b_pinv = np.linalg.pinv(m.T @ m / c, rcond=1e-10, hermitian=True)
    return float(np.trace(scatter / n @ sigma_b_pinv) / c)


def shuffled_control(source: Source, labels: np.ndarray, c: int, d: int, where: str, seed: int
                     ) -> dict:
    """NC1 and nearest-centre accuracy with the labels (N,) shuffled: no class structure."""
    y = np.random.default_rng(seed).permutation(labels)
    n_c, sums = _class_sums(source, c, d, where, y)
    means = sums / n_c[:, None]
    scatter, nearest, _ = _within(source, means, means, y)
    return {"nc1": _nc1(scatter, len(y), means - sums.sum(0) / len(y)),
            "ncc_acc": float((nearest == y).mean())}


def _split_geometry(source: Source, head: Head, weights: dict, train_means: np.ndarray | None,
                    where: str, seed: int) -> tuple[dict, np.ndarray]:
    """NC1-NC4 of one split (with `weights`, the head's `weight_geometry`), its shuffled-label
    control, and its class means (C, D). `train_means` None: this split is the training split,
    whose own means serve the nearest-class-centre rule."""
    c, d = head.w.shape
    n_c, sums = _class_sums(source, c, d, where)
    n = int(n_c.sum())
    means = sums / n_c[:, None]  # (C, D)
    mu_g = sums.sum(0) / n  # (D,)
    scatter, ncc, (labels, preds) = _within(source, means,
                                            means if train_means is None else train_means)
    disagree, ncc_hits = int((ncc != preds).sum()), int((ncc == labels).sum())
    m = means - mu_g  # (C, D) centred means
    # first: class means that all coincide (M = 0, Σ_B = 0) must not read as NC1 = 0
    std_m, shift_m, nearest_m, m_norms = _cos_figures(m, where, "mean minus the global mean")
    nc1 = _nc1(scatter, n, m)
    w = head.w.astype(np.float64)
    nc3 = float(((w / np.linalg.norm(w) - m / np.linalg.norm(m)) ** 2).sum())
    return ({"n_images": n, "nc1": nc1, "nc2_norm_cv_means": _cv(m_norms),
             "nc2_cos_std_means": std_m, "nc2_cos_shift_means": shift_m,
             **{k: weights[k] for k in WEIGHT_KEYS}, "nc3": nc3, "nc4": disagree / n,
             "ncc_acc": ncc_hits / n,
             "control_shuffled_labels": shuffled_control(source, labels, c, d, where, seed),
             "per_class": {"mean_norm": m_norms.tolist(), "nearest_cos": nearest_m.tolist()}},
            means)


def geometry(train: Source, test: Source, head: Head, seed: int,
             where: tuple[str, str, str] = ("features_train", "features_test", "fc_weights")
             ) -> dict:
    """metrics/<m>/geometry.json: `train` and `test` (NC1-NC4; nearest class centre from the
    train means in both; the shuffled-label control, seeded by `seed`), and `weights` (the W
    parts, per class the row norms)."""
    weights = weight_geometry(head, where[2])  # first: one class is the head's fault
    tr, means = _split_geometry(train, head, weights, None, where[0], seed)
    te, _ = _split_geometry(test, head, weights, means, where[1], seed)
    return {"train": tr, "test": te, "weights": weights}
