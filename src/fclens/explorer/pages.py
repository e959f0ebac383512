"""What each page shows, as plain records for the templates (`templates/`), and the rendering.

Numbers are formatted here once (`fmt`): a figure that was not measured prints as a dash (the
footer says so), never as NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from fclens.analysis.ald.families import FAMILIES
from fclens.explorer import svg
from fclens.explorer.gather import ModelData, slug

FAMILY_NAMES = tuple(FAMILIES)
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                          autoescape=True, trim_blocks=True, lstrip_blocks=True,
                          undefined=jinja2.StrictUndefined)


def fmt(v, digits: int = 3) -> str:
    """A number for a page: 3 significant digits; None / NaN: a dash."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{float(v):.{digits}g}"


def sort_key(v) -> str:
    """The value a sortable cell sorts by (data-v): empty for a missing figure (sorts last)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return repr(float(v))


_ENV.filters.update(fmt=fmt, sort_key=sort_key)


def render(template: str, **ctx) -> str:
    return _ENV.get_template(template).render(**ctx)


@dataclass(frozen=True)
class Names:
    """File names of one model's pages, all in the model's folder (short relative links: the
    Lite sites hold 1,000 class and 1,280 feature pages per model)."""

    classes: list[str]  # (C,) <index>-<slug>.html

    @classmethod
    def of(cls, names: tuple[str, ...]) -> Names:
        return cls([f"{i:04d}-{slug(n)}.html" for i, n in enumerate(names)])

    @staticmethod
    def feature(j: int) -> str:
        return f"f{j:04d}.html"


def _dig(d: dict | None, *keys: str) -> list | None:
    """d[keys[0]][keys[1]]..., None where a level is missing."""
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def class_rows(md: ModelData, names: Names) -> list[dict]:
    """One record per class: the class list's columns and the class page's key figures."""
    h, gof, c = md.head, md.gof, md.head.n_classes
    pc = (md.decompose or {}).get("per_class") or {}
    split = "test" if md.geometry and "test" in md.geometry else "weights"
    mean_norm = _dig(md.geometry, split, "per_class", "mean_norm")
    near = _dig(md.geometry, split, "per_class", "nearest_cos")
    w_norm = _dig(md.geometry, "weights", "per_class", "w_norm")
    ab = md.ablate
    rows = []
    for i in range(c):
        acc = None if ab is None else float(ab["acc_original"].iat[i])
        rows.append({
            "index": i, "name": h.names[i], "href": names.classes[i],
            "short": h.names[i].split(", ")[0],  # ImageNet: the first synonym, for lists
            "wnid": md.wordnet[i][0] if md.wordnet else None,
            "best": FAMILY_NAMES[md.best[i]] if md.best[i] >= 0 else None,
            "kappa": float(md.ald["kappa"].iat[i]),
            "d_aic": float(gof["ald_aic"].iat[i] - gof["gaussian_aic"].iat[i]),
            "lr_p": float(gof["lr_pvalue"].iat[i]), "acc": acc,
            "acc_dec": (pc.get("acc_decomposed") or [None] * c)[i],
            "acc_dec_ret": (pc.get("acc_decomposed_retrained") or [None] * c)[i],
            "drop_infl": None if ab is None else acc - float(ab["acc_noise_influential"].iat[i]),
            "drop_non": None if ab is None else acc - float(
                ab["acc_noise_noninfluential"].iat[i]),
            "mean_norm": mean_norm[i] if mean_norm else None,
            "nearest_cos": near[i] if near else None,
            "w_norm": w_norm[i] if w_norm else None})
    return rows


def class_trees(md: ModelData, names: Names) -> list[list[dict]]:
    """Every class's split tree, depth-first (by path), each node with its terminal features
    if any: one pass over the tables (C lists)."""
    n, t = md.nodes, md.terminals
    feats = {(int(c), p): [{"j": int(j), "w": float(w), "href": names.feature(int(j))}
                           for j, w in zip(fi, wi)]
             for c, p, fi, wi in zip(t["class_index"], t["path"], t["feature_index"],
                                     t["weight"])}
    out = [[] for _ in range(md.head.n_classes)]
    order = np.lexsort((n["path"].to_numpy(), n["class_index"].to_numpy()))
    cols = [n[k].to_numpy()[order] for k in ("class_index", "path", "depth", "size", "mean",
                                            "is_terminal")]
    for c, path, depth, size, mean, term in zip(*cols):
        out[int(c)].append({"path": path or "root", "depth": int(depth), "size": int(size),
                            "mean": float(mean), "terminal": bool(term),
                            "features": feats.get((int(c), path), []) if term else []})
    return out


def _thumbs(md: ModelData, j: int, root: str) -> list[dict]:
    s, names = md.stats, md.head.names
    return [{"src": f"{root}img/{slug(md.paths.dataset, 80)}/{int(i)}.webp", "index": int(i),
             "label": names[int(lab)], "value": float(v)}
            for i, lab, v in zip(s["top_index"][j], s["top_label"][j], s["top_value"][j])]


def _confused(row: np.ndarray, c: int, n: int, rows: list[dict]) -> list[dict]:
    total = row.sum()
    order = [j for j in np.argsort(-row, kind="stable") if j != c and row[j] > 0][:n]
    return [{"name": rows[j]["short"], "href": rows[j]["href"], "n": int(row[j]),
             "share": row[j] / total if total else None} for j in order]


def class_page(md: ModelData, c: int, rows: list[dict], names: Names, model_ctx: dict,
               n_confused: int, max_k: int, tree: list[dict], gof: dict[str, np.ndarray]
               ) -> str:
    """One class's page; tree: its `class_trees` entry, gof: the ald_gof columns as arrays."""
    h, root = md.head, "../"
    fams = []
    aic_best = min(float(gof[f"{f}_aic"][c]) for f in FAMILY_NAMES)
    for f in FAMILY_NAMES:
        fams.append({"name": f, **{k: float(gof[f"{f}_{k}"][c]) for k in
                                   ("loglik", "aic", "bic", "ks", "ad")},
                     "d_aic": float(gof[f"{f}_aic"][c]) - aic_best,
                     "best": rows[c]["best"] == f})
    (edges, dens), grid = md.hist, md.grid
    chart = svg.density_chart(
        edges[c], dens[c], grid[c], {f: md.density[f][c] for f in FAMILY_NAMES}, rows[c]["best"],
        f"Histogram of the {h.dim} FC weights of class {rows[c]['short']} with the fitted "
        f"densities of {len(FAMILY_NAMES)} families; best by AIC: {rows[c]['best']}")
    infl = []
    if md.influential is not None:
        for r, (j, n) in enumerate(zip(md.influential.idx[c], md.influential.counts[c])):
            j = int(j)
            infl.append({"rank": r + 1, "j": j, "count": int(n), "w": float(h.w[c, j]),
                         "href": names.feature(j),
                         "selectivity": float(md.stats["selectivity"][j, c]),
                         "purity": float(md.stats["purity"][j, c]),
                         "thumbs": _thumbs(md, j, root)})
    sparse = []
    if md.sparse is not None:
        s = md.sparse[(md.sparse["class_index"] == c) & (md.sparse["k"] <= max_k)]
        for t in s.itertuples():
            sparse.append({"method": t.method, "k": int(t.k), "features": [
                {"j": int(j), "w": float(w), "href": names.feature(int(j))}
                for j, w in zip(t.feature_index, t.weight)]})
    conf = None
    if md.confusion is not None:
        conf = {"as": _confused(md.confusion[c], c, n_confused, rows),
                "from": _confused(md.confusion[:, c], c, n_confused, rows),
                "n": int(md.confusion[c].sum())}
    cams = [{"method": m, "src": f"{m}.png"} for m in md.paths.cams
            if c in md.paths.cam_classes]
    return render("class.html", root=root, model=model_ctx, row=rows[c], families=fams,
                  chart=chart, tree=tree, influential=infl, sparse=sparse,
                  confusion=conf, cams=cams, max_k=max_k,
                  wordnet=md.wordnet[c] if md.wordnet else None,
                  prev=rows[c - 1]["href"] if c else None,
                  next=rows[c + 1]["href"] if c + 1 < h.n_classes else None)


def feature_memberships(md: ModelData) -> tuple[list[list], list[list]]:
    """Per feature j (D,): the classes whose Algorithm-1 set holds j (class, rank, count), and
    those whose chain terminals hold it (class, branch)."""
    d = md.head.dim
    alg1, term = [[] for _ in range(d)], [[] for _ in range(d)]
    if md.influential is not None:
        for c, (idx, cnt) in enumerate(zip(md.influential.idx, md.influential.counts)):
            for r, (j, n) in enumerate(zip(idx, cnt)):
                alg1[int(j)].append((c, r + 1, int(n)))
    for t in md.terminals.itertuples():
        for j in t.feature_index:
            term[int(j)].append((int(t.class_index), t.branch))
    return alg1, term


def feature_rows(md: ModelData, rows: list[dict], names: Names,
                 member: tuple[list[list], list[list]]) -> list[dict]:
    """One record per feature: the feature list's columns."""
    w, s = md.head.w, md.stats
    out = []
    for j in range(md.head.dim):
        hi, lo = int(np.argmax(w[:, j])), int(np.argmin(w[:, j]))
        r = {"j": j, "href": names.feature(j), "w_max": float(w[hi, j]), "c_max": rows[hi],
             "w_min": float(w[lo, j]), "c_min": rows[lo], "n_alg1": len(member[0][j]),
             "n_term": len(member[1][j]), "sel": None, "c_sel": None, "purity": None,
             "mean": None}
        if s is not None:
            r["mean"] = float(s["class_mean"][j].mean())  # the mean of the class means
            if np.isfinite(s["selectivity"][j]).any():  # NaN: a negative activation was seen
                b = int(np.nanargmax(s["selectivity"][j]))
                r.update(sel=float(s["selectivity"][j, b]), c_sel=rows[b],
                         purity=float(s["purity"][j, b]))
        out.append(r)
    return out


def feature_page(md: ModelData, j: int, rows: list[dict], frow: dict, names: Names,
                 member: tuple[list[list], list[list]], model_ctx: dict, top: int) -> str:
    w, root = md.head.w[:, j], "../"
    order = np.argsort(-w, kind="stable")

    def cls(c: int, **extra) -> dict:
        return {"name": rows[c]["short"], "href": rows[c]["href"], "index": c, **extra}

    pos = [cls(int(c), w=float(w[c])) for c in order[:top] if w[c] > 0]
    neg = [cls(int(c), w=float(w[c])) for c in order[::-1][:top] if w[c] < 0]
    alg1 = [cls(c, rank=r, count=n) for c, r, n in member[0][j]]
    term = [cls(c, branch=b, w=float(w[c])) for c, b in member[1][j]]
    stats = None
    if md.stats is not None:
        s, c_n = md.stats, md.head.n_classes
        sel = s["selectivity"][j]  # all NaN when a negative activation was seen: rank by mean
        key = sel if np.isfinite(sel).any() else s["class_mean"][j]
        by_sel = np.argsort(-np.nan_to_num(key, nan=-np.inf), kind="stable")[:top]
        stats = {
            "thumbs": _thumbs(md, j, root),
            "hist": svg.hist_chart(s["hist"][j], float(s["hist_r"][j]),
                                   f"Activation of feature {j} over all training images"),
            "means": svg.bar_chart(s["class_mean"][j], [r["name"] for r in rows],
                                   f"Mean activation of feature {j} per class", "mean",
                                   int(np.argmax(s["class_mean"][j]))) if c_n <= 100 else None,
            "classes": [cls(int(c), sel=float(s["selectivity"][j, c]),
                            purity=float(s["purity"][j, c]), mean=float(s["class_mean"][j, c]),
                            w=float(w[c])) for c in by_sel]}
    return render("feature.html", root=root, model=model_ctx, f=frow, pos=pos, neg=neg,
                  alg1=alg1, term=term, stats=stats, top=top,
                  prev=names.feature(j - 1) if j else None,
                  next=names.feature(j + 1) if j + 1 < md.head.dim else None)
