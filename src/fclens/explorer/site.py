"""The whole site in one folder, written atomically (a half-built site never replaces the last
good one), and its size figures (`metrics/explorer.json`)."""

from __future__ import annotations

import io as _io
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from fclens.analysis.ald.families import FAMILIES
from fclens.core.errors import FclensError
from fclens.core.io import atomic_dir
from fclens.core.sections import Explorer
from fclens.explorer import pages
from fclens.explorer.gather import ModelData, slug

log = logging.getLogger(__name__)
ASSETS = Path(__file__).parent / "assets"
RESERVED = ("assets", "img")  # the site's own folders
FAITH_KEYS = ("deletion_auc", "insertion_auc", "gap_vs_random", "gap_vs_random_ci95")


def model_summary(md: ModelData, href: str) -> dict:
    """A model's headline figures: the site index's row and every page's header."""
    dec, geo, faith = md.decompose or {}, md.geometry or {}, md.faithfulness or {}
    counts = np.bincount(md.best[md.best >= 0], minlength=len(FAMILIES))
    g = geo.get("test") or {}
    return {"name": md.paths.model, "href": href, "dataset": md.paths.dataset,
            "n_classes": md.head.n_classes, "dim": md.head.dim,
            "acc": dec.get("acc_original"), "acc_dec": dec.get("acc_decomposed"),
            "acc_dec_ret": dec.get("acc_decomposed_retrained"), "k2": dec.get("k2"),
            "best_counts": dict(zip(FAMILIES, counts.tolist())),
            "nc1": g.get("nc1"), "ncc_acc": g.get("ncc_acc"),
            "nc1_control": (g.get("control_shuffled_labels") or {}).get("nc1"),
            "w_cos_std": (geo.get("weights") or {}).get("nc2_cos_std_w"),
            "faith": [{"target": t, **{k: v.get(k) for k in FAITH_KEYS}}  # random: the control,
                      for t, v in (faith.get("targets") or {}).items()],  # has no gap to itself
            "faith_method": faith.get("method"), "wordnet": md.wordnet is not None,
            "faith_by_method": [{"method": m, "target": t, **{k: v.get(k) for k in FAITH_KEYS}}
                                for m, b in (faith.get("by_method") or {}).items()
                                for t, v in b["targets"].items() if t != "random"]}


def _write(path: Path, text: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    path.write_bytes(data)
    return len(data)


def _thumbnails(root: Path, dataset: str, idx: np.ndarray,
                load: Callable[[np.ndarray], np.ndarray]) -> int:
    """Each picked training image once, as img/<dataset>/<index>.webp (lossless: the exact
    pixels, 1.4 KB for a CIFAR image against PNG's 2.1 KB); returns the count."""
    idx = np.unique(idx)
    images = load(idx[None])[0]  # (U, h, w, 3) uint8
    folder = root / "img" / slug(dataset, 80)
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in zip(idx, images):
        buf = _io.BytesIO()
        Image.fromarray(im).save(buf, format="WEBP", lossless=True)
        (folder / f"{int(i)}.webp").write_bytes(buf.getvalue())
    return len(idx)


def build(models: list[ModelData], out: str | Path, cfg: Explorer,
          thumbnails: dict[str, Callable[[np.ndarray], np.ndarray]]) -> dict:
    """Write the site for `models` into `out` (replaced at the end, all or nothing).

    thumbnails: dataset -> a function from image indices (1, K) to their pictures (1, K, h, w,
    3) uint8 (`explain.exemplars.thumbnails` of the training split). Returns explorer.json.
    """
    sizes = {"class": [], "feature": []}
    n_images = 0
    folders = [slug(md.paths.model, 80) for md in models]
    if clash := sorted({f for f in folders if folders.count(f) > 1 or f in RESERVED}):
        raise FclensError(f"explorer.models: {[md.paths.model for md in models]} give the page "
                          f"folders {clash} twice or a reserved name ({', '.join(RESERVED)}); "
                          f"expected models whose names differ after lowercasing")
    with atomic_dir(out) as root:
        summaries = []
        picked: dict[str, list[np.ndarray]] = {}
        for md in models:
            folder = slug(md.paths.model, 80)
            summ = model_summary(md, f"{folder}/index.html")
            summaries.append(summ)
            base, names = root / folder, pages.Names.of(md.head.names)
            rows = pages.class_rows(md, names)
            member = pages.feature_memberships(md)
            frows = pages.feature_rows(md, rows, names, member)
            ctx = {**summ, "root_href": "../index.html"}
            forest = pages.class_trees(md, names)
            gof = {k: md.gof[k].to_numpy() for k in md.gof.columns}
            for c in tqdm(range(md.head.n_classes), desc=f"{md.paths.model} classes",
                          leave=False):
                sizes["class"].append(_write(base / names.classes[c], pages.class_page(
                    md, c, rows, names, ctx, cfg.n_confused, cfg.max_k, forest[c], gof)))
            for j in tqdm(range(md.head.dim), desc=f"{md.paths.model} features", leave=False):
                sizes["feature"].append(_write(base / names.feature(j), pages.feature_page(
                    md, j, rows, frows[j], names, member, ctx, cfg.top_classes)))
            _write(base / "index.html", pages.render("model.html", root="../", model=ctx,
                                                     rows=rows))
            _write(base / "features.html", pages.render("features.html", root="../", model=ctx,
                                                        rows=frows))
            for method, src in md.paths.cams.items():
                if src.is_file():
                    shutil.copyfile(src, base / f"{method}.png")
            if md.stats is not None:
                picked.setdefault(md.paths.dataset, []).append(md.stats["top_index"].ravel())
        for dataset, idx in picked.items():
            n_images += _thumbnails(root, dataset, np.concatenate(idx), thumbnails[dataset])
        _write(root / "index.html", pages.render("index.html", root="", models=summaries))
        shutil.copytree(ASSETS, root / "assets")
        total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    return {"n_models": len(models), "n_class_pages": len(sizes["class"]),
            "n_feature_pages": len(sizes["feature"]), "n_images": n_images,
            "total_bytes": total, "max_class_page_bytes": max(sizes["class"], default=0),
            "max_feature_page_bytes": max(sizes["feature"], default=0),
            "models": [s["name"] for s in summaries]}
