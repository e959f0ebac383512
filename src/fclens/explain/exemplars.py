"""Dataset exemplars and activation distributions of the features that explain each class.

Class c's features are its Algorithm-1 influential indices I_c (k2, rank order) and its
`terminal+` neurons, its N_TERMINAL largest FC weights (`trees.chain_rank`: the '+' chain's
terminal is exactly the top of the weight row). On the training split, streamed batch by batch
in file order (row position = image index), so memory does not grow with the number of images N:

- exemplars: the N_TOP images of highest activation of each feature, over all classes. A running
  top-k (k, U) is merged with each batch (B, U): per feature, the k-th largest value t of the
  candidates (`np.partition`, O(B)), every value > t, then the values == t of the lowest rows
  until k are taken. The running entries come first and the batch rows in index order, so the
  result is exactly the first k of a stable descending sort of the whole column: **ties go to
  the lower image index**.
- selectivity of feature f for class c: (mu_c - mu_o) / (mu_c + mu_o), mu_c the mean activation
  of f over class c's images, mu_o over all other images (streamed per-class sums and counts).
  In [-1, 1] for post-ReLU (non-negative) features; a dead feature (mu_c + mu_o = 0) scores 0.
  If any scanned activation is negative the ratio means nothing: selectivity is NaN (null in the
  JSON) and `min_activation` says why.
- purity@k: the share of the feature's top k images whose label is c.
- histograms of each pictured (class, feature) over the class's images and the others', in fixed
  memory: HIST_BINS bins over [-R, R), R a power of two. When a value reaches R, R doubles and
  bin b moves to (b - n/2) // 2 + n/2; scaling by a power of two is exact, so the counts equal
  binning every value at the final R, the smallest power of two above max |value|, whatever the
  batches.

Scores cover every class; pictures the class group (the stage passes params explain.classes).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fclens.core.errors import FclensError
from fclens.core.tables import Features, Influential

if TYPE_CHECKING:
    from fclens.datasets.splits import FolderSplit, Split

SOURCES = ("influential", "terminal+")
SHORT = ("infl", "term+")  # row labels in the pictures
N_TOP = 9  # exemplars per feature (purity_at_9)
N_TERMINAL = 5  # terminal+ neurons per class: its 5 largest FC weights
HIST_BINS = 256  # a multiple of 4 (a doubling keeps the middle half)
BATCH_ROWS = 8192  # rows per streamed batch
THUMB = 64  # image-folder thumbnails: size x size pixels


@dataclass(frozen=True)
class Pairs:
    """The (class, feature) pairs scored: per class its influential features, then terminal+."""

    cls: np.ndarray  # (P,) int64
    feat: np.ndarray  # (P,) int64
    source: np.ndarray  # (P,) int64, index into SOURCES
    rank: np.ndarray  # (P,) int64, rank within its source (0 = first)


@dataclass(frozen=True)
class Scan:
    """What one pass over the features keeps: O(U k + C U + G bins) memory, U scanned features."""

    feats: np.ndarray  # (U,) int64, sorted distinct feature indices scanned
    top_idx: np.ndarray  # (U, k) int64 image indices, decreasing activation, ties: lower first
    top_val: np.ndarray  # (U, k) float32
    top_label: np.ndarray  # (U, k) int64
    sums: np.ndarray  # (C, U) float64 activation sums per class
    counts: np.ndarray  # (C,) int64 images per class
    hist: np.ndarray  # (G, 2, HIST_BINS) int64 counts [class, other classes] per pictured pair
    hist_r: np.ndarray  # (G,) float64 R: bins cover [-R, R); 0 while every value was 0
    min_activation: float
    n_images: int


@dataclass(frozen=True)
class Shown:
    """The pictured pairs: the classes of the group, each with its distinct features."""

    cls: np.ndarray  # (G,) int64
    feat: np.ndarray  # (G,) int64
    labels: list[str]  # (G,) row labels: feature, sources and ranks, purity, selectivity
    top_idx: np.ndarray  # (G, k) image indices of the exemplars
    selectivity: np.ndarray  # (G,)
    purity: np.ndarray  # (G,)
    hist: np.ndarray  # (G, 2, HIST_BINS) [class, other classes]
    hist_r: np.ndarray  # (G,)


@dataclass(frozen=True)
class Result:
    metrics: dict
    shown: Shown
    features: dict[str, np.ndarray]  # every feature's statistics: the feature_stats table


# ---------------------------------------------------------------- pairs

def feature_pairs(infl: Influential, terminal: np.ndarray, n_classes: int) -> Pairs:
    """infl.idx (C, k2) and terminal (C, n) -> the pairs, class by class, influential first."""
    for name, idx in (("influential table", infl.idx), ("terminal+ indices", terminal)):
        if idx.ndim != 2 or idx.shape[0] != n_classes:
            raise FclensError(f"{name}: {idx.shape[0] if idx.ndim else 0} classes; expected "
                              f"{n_classes} (the FC layer's classes): it comes from another "
                              f"model, rerun the stage that writes it")
    k2, n = infl.idx.shape[1], terminal.shape[1]
    if k2 + n == 0:
        raise FclensError("no influential nor terminal+ feature per class: nothing to show")
    feat = np.concatenate([infl.idx, terminal], axis=1).astype(np.int64)  # (C, k2 + n)
    src = np.r_[np.zeros(k2, np.int64), np.ones(n, np.int64)]
    rank = np.r_[np.arange(k2), np.arange(n)].astype(np.int64)
    return Pairs(np.repeat(np.arange(n_classes, dtype=np.int64), k2 + n), feat.ravel(),
                 np.tile(src, n_classes), np.tile(rank, n_classes))


def _shown_pairs(pairs: Pairs, classes: list[int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(cls (G,), feat (G,), source labels): each group class's distinct features, pair order."""
    cls, feat, names = [], [], []
    for c in classes:  # the small pictured group
        sel = np.flatnonzero(pairs.cls == c)
        for f in dict.fromkeys(pairs.feat[sel].tolist()):
            same = sel[pairs.feat[sel] == f]
            cls.append(c)
            feat.append(f)
            names.append(" ".join(f"{SHORT[pairs.source[i]]}#{pairs.rank[i] + 1}" for i in same))
    return np.array(cls, np.int64), np.array(feat, np.int64), names


# ---------------------------------------------------------------- one streamed pass

def _top_rows(v: np.ndarray, k: int) -> np.ndarray:
    """v (R, U), rows in increasing image index -> (min(k, R), U) rows of each column's k largest
    values, ties to the lower row, in increasing row order."""
    r, u = v.shape
    if r <= k:
        return np.broadcast_to(np.arange(r)[:, None], (r, u))
    kth = -np.partition(-v, k - 1, axis=0)[k - 1]  # (U,) each column's k-th largest value
    above = v > kth  # (R, U): at most k - 1 per column
    at = v == kth
    take = above | (at & (np.cumsum(at, axis=0, dtype=np.int32) <= k - above.sum(0)))
    col, row = np.nonzero(take.T)  # column by column, rows increasing: exactly k per column
    return row.reshape(u, k).T


def _hist_add(counts: np.ndarray, r: np.ndarray, v: np.ndarray, other: np.ndarray) -> None:
    """Add v (B, G) to counts (G, 2, nb) [in class, other] with bins over [-r, r) (r (G,), a
    power of two or 0), doubling r first where |v| reaches it; both updated in place."""
    g, _, nb = counts.shape
    m = np.abs(v).max(0).astype(np.float64)  # (G,)
    need = np.where(m > 0, np.ldexp(1.0, np.frexp(m)[1]), 0.0)  # smallest power of 2 > m
    grow = need > r
    d = np.where(grow & (r > 0), np.frexp(need / np.where(r > 0, r, 1.0))[1] - 1, 0)  # doublings
    if (d > 0).any():
        d = np.minimum(d, 16)  # any d >= log2(nb) maps every bin to one of the middle two
        moved = (np.arange(nb) - nb // 2) // (1 << d)[:, None] + nb // 2  # (G, nb)
        row = np.arange(g)[:, None, None] * 2 + np.arange(2)[None, :, None]  # (G, 2, 1)
        merged = np.bincount((row * nb + moved[:, None]).ravel(), counts.ravel(), g * 2 * nb)
        counts[:] = merged.reshape(counts.shape).astype(np.int64)
    r[grow] = need[grow]
    scale = (nb // 2) / np.where(r > 0, r, 1.0)  # a power of two: v * scale is exact
    bins = np.floor(v * scale).astype(np.int64) + nb // 2  # (B, G) in 0..nb-1
    flat = (np.arange(g) * 2 + other) * nb + bins
    counts += np.bincount(flat.ravel(), minlength=g * 2 * nb).reshape(counts.shape)


def _merge(run: np.ndarray, batch: np.ndarray, rows: np.ndarray, kr: int) -> np.ndarray:
    """Per-image values (index, label) of the kept rows (k', U) of [running (kr, U); batch (B,)]."""
    in_b = batch[np.maximum(rows - kr, 0)]  # (k', U)
    return in_b if kr == 0 else np.where(
        rows < kr, np.take_along_axis(run, np.minimum(rows, kr - 1), 0), in_b)


def _check_labels(y: np.ndarray, labels: np.ndarray, start: int, where: str) -> None:
    """The batch's labels y (B,) are those of the dataset's images start..start+B-1."""
    exp = labels[start:start + len(y)]  # (<= B,)
    if len(exp) < len(y):
        raise FclensError(f"{where}: more than the dataset's {len(labels)} rows; expected one "
                          f"row per image (rerun extract_activations)")
    if (bad := np.flatnonzero(exp != y)).size:
        i = int(bad[0])
        raise FclensError(f"{where}: row {start + i} has label {y[i]}, the dataset's image "
                          f"{start + i} label {exp[i]} ({len(bad)} such rows in rows "
                          f"{start}..{start + len(y) - 1}); expected the dataset's images in its "
                          f"order: the features come from another dataset or split (rerun "
                          f"extract_activations)")


def scan(batches: Iterable[Features], feats: np.ndarray, n_classes: int,
         hist_cls: np.ndarray, hist_feat: np.ndarray, labels: np.ndarray | None = None,
         k: int = N_TOP, where: str = "features") -> Scan:
    """One pass over `batches` (in image-index order) for the distinct `feats` (U,): top-k
    exemplars, per-class sums and counts, and histograms of the pairs (hist_cls, hist_feat) (G,).
    labels: the dataset's labels (N,), to check that the rows are its images, in its order."""
    feats = np.unique(np.asarray(feats, np.int64))
    u, g = len(feats), len(hist_cls)
    hpos = np.searchsorted(feats, hist_feat)  # (G,) column of each pictured pair
    top_v, top_i, top_l = (np.zeros((0, u), t) for t in (np.float32, np.int64, np.int64))
    sums, counts = np.zeros((n_classes, u)), np.zeros(n_classes, np.int64)
    hist, hist_r = np.zeros((g, 2, HIST_BINS), np.int64), np.zeros(g)
    lo, start = np.inf, 0
    for b in batches:
        n_b, dim = b.x.shape
        if n_b == 0:
            continue
        if u and feats[-1] >= dim:
            raise FclensError(f"{where}: features of dimension {dim}; the influential and "
                              f"terminal+ indices reach {feats[-1]}: they come from another "
                              f"model")
        y = b.labels
        if labels is not None:
            _check_labels(y, labels, start, where)
        x = b.x[:, feats]  # (B, U)
        lo = min(lo, float(x.min())) if u else lo
        # running top-k, merged with the batch (running rows first: lower indices)
        kr = len(top_v)
        cand = np.concatenate([top_v, x])  # (kr + B, U)
        rows = _top_rows(cand, k)  # (k', U)
        top_i = _merge(top_i, start + np.arange(n_b), rows, kr)
        top_l = _merge(top_l, y, rows, kr)
        top_v = np.take_along_axis(cand, rows, 0)
        # per-class sums: the batch sorted by label, summed per run of equal labels
        order = np.argsort(y, kind="stable")
        ys = y[order]
        first = np.flatnonzero(np.r_[True, ys[1:] != ys[:-1]])
        sums[ys[first]] += np.add.reduceat(x[order].astype(np.float64), first, axis=0)
        counts += np.bincount(y, minlength=n_classes)
        if g:
            _hist_add(hist, hist_r, x[:, hpos], y[:, None] != hist_cls[None, :])
        start += n_b
    if start == 0:
        raise FclensError(f"{where}: no rows; expected the training images' features")
    if labels is not None and start != len(labels):
        raise FclensError(f"{where}: {start} rows, the dataset has {len(labels)} images; "
                          f"expected one row per image (rerun extract_activations)")
    if empty := np.flatnonzero(counts == 0).tolist():
        raise FclensError(f"{where}: no training images of classes {empty[:10]}; expected "
                          f"images of every class (means and exemplars need them)")
    order = np.lexsort((top_i, -top_v), axis=0)  # decreasing value, ties: lower index first
    return Scan(feats, *(np.take_along_axis(a, order, 0).T for a in (top_i, top_v, top_l)),
                sums, counts, hist, hist_r, lo, start)


# ---------------------------------------------------------------- scores and metrics

def scores(s: Scan, cls: np.ndarray, feat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(selectivity (P,), purity (P,)) of the pairs (cls, feat) (P,)."""
    pos = np.searchsorted(s.feats, feat)
    n_c = s.counts[cls].astype(np.float64)
    in_c = s.sums[cls, pos]
    mu_c, mu_o = in_c / n_c, (s.sums[:, pos].sum(0) - in_c) / (s.n_images - n_c)
    den = mu_c + mu_o
    sel = np.divide(mu_c - mu_o, den, out=np.zeros_like(den), where=den != 0)  # dead: 0
    if s.min_activation < 0:
        sel[:] = np.nan
    return sel, (s.top_label[pos] == cls[:, None]).mean(1)


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if len(x) else float("nan")


def summary(pairs: Pairs, sel: np.ndarray, pur: np.ndarray, s: Scan, k: int) -> dict:
    """exemplars.json: medians over all distinct (class, feature) pairs and per source."""
    _, first = np.unique(np.stack([pairs.cls, pairs.feat], 1), axis=0, return_index=True)
    dead = s.sums[:, np.searchsorted(s.feats, pairs.feat)].sum(0) == 0  # (P,) zero everywhere

    def block(i: np.ndarray) -> dict:
        return {"n_features": len(i), "selectivity_median": _median(sel[i]),
                f"purity_at_{k}_median": _median(pur[i]), "n_dead": int(dead[i].sum())}

    return {**block(np.sort(first)), "n_classes": len(s.counts), "n_images": s.n_images,
            "n_top": k, "n_shared": len(pairs.cls) - len(first),
            "min_activation": s.min_activation,
            "by_source": {name: block(np.flatnonzero(pairs.source == j))
                          for j, name in enumerate(SOURCES)}}


def feature_stats(s: Scan) -> dict[str, np.ndarray]:
    """Every scanned feature's exemplars, per-class mean activation, selectivity and purity for
    every class (U, C), and its histogram over all images (the scan's last U pairs, class -1)."""
    u, c = len(s.feats), len(s.counts)
    cls, feat = np.tile(np.arange(c), u), np.repeat(s.feats, c)  # (U C,) feature-major
    sel, pur = scores(s, cls, feat)
    return {"feature_index": s.feats.astype(np.int32), "top_index": s.top_idx,
            "top_value": s.top_val, "top_label": s.top_label.astype(np.int32),
            "class_mean": (s.sums / np.maximum(s.counts, 1)[:, None]).T,
            "selectivity": sel.reshape(u, c), "purity": pur.reshape(u, c),
            "hist": s.hist[-u:, 1], "hist_r": s.hist_r[-u:]}


def exemplars(batches: Iterable[Features], infl: Influential, terminal: np.ndarray,
              n_classes: int, classes: list[int], labels: np.ndarray | None = None,
              where: str = "features", k: int = N_TOP, dim: int | None = None) -> Result:
    """Scores of every class's influential and terminal+ features (terminal (C, n): the top
    weights, `trees.chain_rank(w)[:, :n]`), what to picture for the group `classes`, and the
    statistics of features 0..dim-1 (None: of the scored ones), in one pass over `batches`.
    labels: the dataset's (N,), checked against the rows'."""
    if bad := [c for c in classes if not 0 <= c < n_classes]:
        raise FclensError(f"classes {bad} out of range; expected 0..{n_classes - 1}")
    pairs = feature_pairs(infl, terminal, n_classes)
    if dim is not None and pairs.feat.size and pairs.feat.max() >= dim:
        raise FclensError(f"{where}: the influential and terminal+ indices reach "
                          f"{pairs.feat.max()}; expected indices below the FC layer's {dim} "
                          f"inputs: they come from another model")
    cls, feat, src = _shown_pairs(pairs, classes)
    every = np.unique(pairs.feat) if dim is None else np.arange(dim, dtype=np.int64)
    s = scan(batches, every, n_classes, np.r_[cls, np.full(len(every), -1)],  # class -1: every
             np.r_[feat, every], labels, k, where)  # image counts as "other"
    sel, pur = scores(s, pairs.cls, pairs.feat)
    g_sel, g_pur = scores(s, cls, feat)
    labels_g = [f"f{f} {t}\npurity {p:.2f}, sel. {v:+.2f}"
                for f, t, p, v in zip(feat, src, g_pur, g_sel)]
    top = s.top_idx[np.searchsorted(s.feats, feat)]
    metrics = {**summary(pairs, sel, pur, s, k), "classes_pictured": list(classes)}
    g = len(cls)
    return Result(metrics, Shown(cls, feat, labels_g, top, g_sel, g_pur, s.hist[:g],
                                 s.hist_r[:g]), feature_stats(s))


# ---------------------------------------------------------------- the pictured images

def thumbnails(split: Split | FolderSplit, idx: np.ndarray, size: int = THUMB) -> np.ndarray:
    """idx (G, k) image indices -> (G, k, h, w, 3) uint8: an archive's own images, or the picked
    files of an image folder, center-cropped and resized to size x size (only those are read)."""
    n = len(split.labels)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise FclensError(f"image indices {idx.min()}..{idx.max()}; the dataset has {n} images: "
                          f"the features come from another dataset (rerun extract_activations)")
    if hasattr(split, "images"):
        return split.images[idx]
    from PIL import Image, ImageOps

    def load(i: int) -> np.ndarray:
        path = split.path(i)
        try:
            with Image.open(path) as im:
                return np.asarray(ImageOps.fit(im.convert("RGB"), (size, size)))
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise FclensError(f"{path}: cannot be read as an image ({e}); expected the "
                              f"dataset's files unchanged since prepare_data") from None

    uniq, inv = np.unique(idx, return_inverse=True)
    images = np.stack([load(int(i)) for i in uniq]) if len(uniq) else np.zeros(
        (0, size, size, 3), np.uint8)  # only the picked files: at most G * k
    return images[inv.reshape(-1)].reshape(*idx.shape, size, size, 3)
