"""The adversarial study of one model: PGD at every radius on the dense head and on each sparse
head, the stronger attack, the margin decomposition of every broken image, the transfer of the
dense head's adversarial images to the sparse heads (primitives: `explain.adversarial`).

Robust accuracy counts every image: one misclassified when clean is broken at any radius. Only
the images the head gets right are attacked, with early stop (`adversarial.pgd`). The margin
figures are over the images the dense head gets right and PGD breaks, per radius, on the first
misclassified iterate (the crossing: which features carry the flip); per image a share, the
median over images (a share is a ratio and can be far from [0, 1] when the total is small).
Transfer rate: the dense head's images from the full PGD run (all steps, no early stop: a
barely crossing image would understate transfer), of those that break the dense head, the
share the sparse head also misclassifies, among the images the sparse head gets right clean.
The stronger attack runs at `strong_eps` on what PGD left correct (`acc_strong`), and, so that
the check has something to test, at the smallest radius on up to N_STRONG_CHECK images PGD
left correct there.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from fclens.core.errors import FclensError
from fclens.core.tables import Head
from fclens.explain.adversarial import check_eps, margin_stats, pgd, strong_attack
from fclens.explain.pixels import HeadNet

if TYPE_CHECKING:
    from torch import nn

    from fclens.core.params import Adversarial

log = logging.getLogger(__name__)
N_STRONG_CHECK = 100  # images PGD left correct at the smallest radius, given to FMN too
WHERE_N = "params.yaml adversarial.n_per_class"


@dataclass
class Attacked:
    adv: torch.Tensor  # (N, 3, H, W) the adversarial image (the clean one where not attacked)
    wrong: np.ndarray  # (N,) bool: misclassified at the end (clean mistakes included)
    pred: np.ndarray  # (N,) the head's class for `adv`
    h: np.ndarray  # (N, D) the pooled features of `adv`


@dataclass
class Result:
    metrics: dict
    timing: dict
    examples: dict  # for the picture: images, adversarial images, terms, labels


def _batched_pgd(net: nn.Module, x: torch.Tensor, y: torch.Tensor, clean_ok: np.ndarray,
                 eps: float, s: Adversarial, seed: int, early_stop: bool = True) -> Attacked:
    """PGD on the images the head gets right; `wrong` from one pass over the returned images
    (`_predict`), the same pass the margin figures read."""
    adv = x.clone()
    idx = np.flatnonzero(clean_ok)
    e = eps / 255
    for i in range(0, len(idx), s.batch_size):
        j = torch.from_numpy(idx[i:i + s.batch_size])
        adv[j], _ = pgd(net, x[j], y[j], e, s.steps, s.step_factor * e / s.steps, seed + i,
                        early_stop=early_stop)
    pred, h = _predict(net, adv, s.batch_size)
    return Attacked(adv, ~clean_ok | (pred != y.cpu().numpy()), pred, h)


def _predict(net: nn.Module, x: torch.Tensor, bs: int) -> tuple[np.ndarray, np.ndarray]:
    """(pred (N,), features (N, D)) under torch.inference_mode, in batches."""
    preds, feats = [], []
    with torch.inference_mode():
        for i in range(0, len(x), bs):
            h = net.features(x[i:i + bs])
            feats.append(h.cpu().numpy())
            preds.append((h @ net.w.T + net.b).argmax(1).cpu().numpy())
    return np.concatenate(preds), np.concatenate(feats)


def _mean(v: np.ndarray | None) -> float | None:
    return None if v is None or len(v) == 0 else float(np.mean(v))


def _median(v: np.ndarray | None) -> float | None:
    return None if v is None or len(v) == 0 else float(np.median(v))


def study(model: nn.Module, head: Head, x: torch.Tensor, y: np.ndarray, alg1: np.ndarray,
          terminals: np.ndarray, sparse: dict[str, tuple[np.ndarray, np.ndarray]],
          s: Adversarial, seed: int) -> Result:
    """x (N, 3, H, W) pixels in [0, 1]; y (N,) true classes; alg1, terminals (C, D) bool sets
    of each class; sparse: head name -> (w (C, D), b (C,)), the elastic net's as
    `elastic_net` (its support is the margin-share set)."""
    check_eps(s.eps)
    check_eps([s.strong_eps], "strong_eps")
    if len(x) == 0:
        raise FclensError(f"{WHERE_N}: no test image picked; expected at least one per class")
    t0, timing = time.perf_counter(), {}
    yt = torch.from_numpy(y.astype(np.int64)).to(x.device)
    dense = HeadNet(model, head.w, head.b).to(x.device).eval()
    pred0, h0 = _predict(dense, x, s.batch_size)
    ok = pred0 == y
    en = sparse.get("elastic_net")
    en_sets = None if en is None else en[0] != 0
    per_eps: dict[str, list] = {k: [] for k in (
        "acc", "n_broken", "k90_median", "margin_share_algorithm1",
        "margin_share_algorithm1_random", "margin_share_elastic_net",
        "margin_share_elastic_net_random", "terminal_in_k90_rate", "terminal_in_k90_rate_random")}
    dense_adv, examples = {}, {}
    show_at = s.eps[len(s.eps) // 2]
    for e in tqdm(s.eps, desc="pgd dense", leave=False):
        att = _batched_pgd(dense, x, yt, ok, e, s, seed)
        dense_adv[e] = att
        broke = ok & att.wrong  # right when clean, wrong now: pred != y on the same pass
        pred = att.pred[broke]
        m = margin_stats(head.w, h0[broke], att.h[broke], y[broke], pred, alg1, terminals,
                         en_sets)
        per_eps["acc"].append(float(1 - att.wrong.mean()))
        per_eps["n_broken"].append(int(broke.sum()))
        per_eps["k90_median"].append(_median(m.k90))
        per_eps["margin_share_algorithm1"].append(_median(m.share_alg1))
        per_eps["margin_share_algorithm1_random"].append(_median(m.share_alg1_random))
        per_eps["margin_share_elastic_net"].append(_median(m.share_en))
        per_eps["margin_share_elastic_net_random"].append(_median(m.share_en_random))
        per_eps["terminal_in_k90_rate"].append(_mean(m.terminal_hit))
        per_eps["terminal_in_k90_rate_random"].append(_mean(m.terminal_hit_random))
        if e == show_at:
            examples = _examples(x, att.adv, broke, y, pred, m.c, m.k90, s.n_examples, e)
            examples["alg1"] = alg1[examples["y"]]
    timing["seconds_pgd_dense"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    strong = _strong(dense, x, yt, ok, dense_adv, s, seed)
    timing["seconds_strong"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    heads, full = {}, {}
    for name, (w, b) in sparse.items():
        net = HeadNet(model, w, b).to(x.device).eval()
        pred_s, _ = _predict(net, x, s.batch_size)
        ok_s = pred_s == y
        acc, transfer = [], []
        for e in tqdm(s.eps, desc=f"pgd {name}", leave=False):
            acc.append(float(1 - _batched_pgd(net, x, yt, ok_s, e, s, seed).wrong.mean()))
            if e not in full:  # the dense head's full-run images, once for every sparse head
                full[e] = _batched_pgd(dense, x, yt, ok, e, s, seed, early_stop=False)
            moved = ok & full[e].wrong & ok_s  # dense broken, sparse right when clean
            if moved.any():
                p_t, _ = _predict(net, full[e].adv[moved], s.batch_size)
                transfer.append(float(np.mean(p_t != y[moved])))
            else:
                transfer.append(None)
        heads[name] = {"clean_acc": float(ok_s.mean()), "acc": acc, "transfer_rate": transfer,
                       "nec": float((w != 0).sum(1).mean())}
    timing["seconds_sparse_heads"] = time.perf_counter() - t1
    timing["seconds"] = time.perf_counter() - t0
    metrics = {
        "eps": list(s.eps), "eps_units": "1/255", "n_images": len(x),
        "n_classes": head.n_classes, "feature_dim": head.dim,
        "clean_acc": float(ok.mean()), **per_eps, **strong, "sparse_heads": heads,
        # the full runs (no early stop) behind the transfer rates: their own robust accuracy
        "acc_full_pgd": [float(1 - full[e].wrong.mean()) for e in s.eps] if full else None,
        "algorithm1_size": int(alg1.sum(1).max()),
        "attack": {"name": "pgd_linf", "steps": s.steps, "step_factor": s.step_factor,
                   "random_start": True, "early_stop": True, "seed": seed,
                   "n_per_class": s.n_per_class, "space": "pixels in [0, 1]"},
        "examples_eps": show_at,
    }
    return Result(metrics, timing, examples)


def _fmn(dense: nn.Module, x: torch.Tensor, yt: torch.Tensor, left: np.ndarray, eps: float,
         s: Adversarial) -> np.ndarray:
    """(len(left),) bool: which of the images `left` FMN breaks at radius eps (units 1/255)."""
    out = np.zeros(len(left), bool)
    for i in range(0, len(left), s.batch_size):
        j = torch.from_numpy(left[i:i + s.batch_size])
        _, broken = strong_attack(dense, x[j], yt[j], eps / 255, s.strong_steps)
        out[i:i + len(j)] = broken.cpu().numpy()
    return out


def _strong(dense: nn.Module, x: torch.Tensor, yt: torch.Tensor, ok: np.ndarray,
            dense_adv: dict[float, Attacked], s: Adversarial, seed: int) -> dict:
    """FMN after PGD: at strong_eps on every image PGD left correct (PGD at strong_eps too when
    it is not one of the radii), and at the smallest radius on up to N_STRONG_CHECK of them."""
    att = dense_adv.get(s.strong_eps) or _batched_pgd(dense, x, yt, ok, s.strong_eps, s, seed)
    left = np.flatnonzero(~att.wrong)
    wrong = att.wrong.copy()
    wrong[left] = _fmn(dense, x, yt, left, s.strong_eps, s)
    e0 = s.eps[0]
    left0 = np.flatnonzero(~dense_adv[e0].wrong)[:N_STRONG_CHECK]
    extra0 = int(_fmn(dense, x, yt, left0, e0, s).sum())
    return {"acc_strong": float(1 - wrong.mean()),
            "strong": {"attack": "foolbox LInfFMNAttack", "eps": s.strong_eps,
                       "steps": s.strong_steps, "acc_pgd": float(1 - att.wrong.mean()),
                       "n_attacked": int(len(left)),
                       "n_broken_extra": int(wrong.sum() - att.wrong.sum()),
                       "check_eps": e0, "check_n_attacked": int(len(left0)),
                       "check_n_broken_extra": extra0}}


def _examples(x: torch.Tensor, adv: torch.Tensor, broke: np.ndarray, y: np.ndarray,
              pred: np.ndarray, c: np.ndarray, k90: np.ndarray, n: int, eps: float) -> dict:
    """The first broken image of each class in turn, up to n: clean, adversarial, terms."""
    rows = np.flatnonzero(broke)
    picked, seen = [], set()
    for r, cls in enumerate(y[rows]):
        if cls not in seen:
            picked.append(r)
            seen.add(cls)
        if len(picked) == n:
            break
    p = np.asarray(picked, dtype=np.int64)
    to_img = lambda t: t.permute(0, 2, 3, 1).cpu().numpy()  # noqa: E731 (B, H, W, 3)
    return {"clean": to_img(x[rows[p]]), "adv": to_img(adv[rows[p]]), "y": y[rows[p]],
            "t": pred[p], "c": c[p], "k90": k90[p], "eps": eps}
