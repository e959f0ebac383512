"""One model's inputs to the explorer, read through the table contract and checked.

Every model needs its weight tables (fc_weights, ald_params, ald_gof, tree_nodes, terminals);
a model with a dataset adds its features' labels and predictions, Algorithm-1 set, per-class
ablation, feature statistics and metrics; a `sparsify.models` entry adds its sparse sets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from fclens.analysis.ald.compare import best_family
from fclens.analysis.ald.curves import densities
from fclens.analysis.ald.families import FAMILIES
from fclens.core import io, tables
from fclens.core.errors import FclensError

N_GRID = 24  # points of each drawn density


@dataclass(frozen=True)
class Paths:
    """Where one model's inputs are (`paths`); None: the model has no such input."""

    model: str
    weights: Path
    ald: Path
    gof: Path
    nodes: Path
    terminals: Path
    metrics: Path  # the model's metrics folder
    dataset: str | None = None
    data: Path | None = None  # the dataset's folder (train.npz or an image folder's index)
    features_test: Path | None = None
    influential: Path | None = None
    ablate: Path | None = None
    stats: Path | None = None
    sparse: Path | None = None
    cams: dict[str, Path] = field(default_factory=dict)  # method -> the explain figure
    cam_classes: tuple[int, ...] = ()  # the classes those figures show


def paths(model: str, dataset: str | None, sparse: bool, cam_methods: list[str],
          cam_classes: list[int]) -> Paths:
    """The project's layout (dvc.yaml's outs) for `model`; dataset None: weights only."""
    d, m = Path("data") / model, Path("metrics") / model
    base = dict(model=model, weights=d / "fc_weights.parquet", ald=d / "ald_params.parquet",
                gof=d / "ald_gof.parquet", nodes=d / "tree_nodes.parquet",
                terminals=d / "terminals.parquet", metrics=m)
    if dataset is None:
        return Paths(**base)
    return Paths(**base, dataset=dataset, data=Path("data") / dataset,
                 features_test=d / "features_test.parquet", influential=d / "influential.parquet",
                 ablate=d / "ablate_per_class.parquet", stats=d / "feature_stats.parquet",
                 sparse=d / "sparse_sets.parquet" if sparse else None,
                 cams={k: Path("plots/explain") / model / f"{k}.png" for k in cam_methods},
                 cam_classes=tuple(cam_classes))


@dataclass(frozen=True)
class ModelData:
    """What the pages of one model show; arrays per class (C, ...) or per feature (D, ...)."""

    paths: Paths
    head: tables.Head  # w (C, D), b (C,), names
    gof: pd.DataFrame  # ald_gof: per family loglik, aic, bic, ks, ad, loc, scale, ...
    ald: pd.DataFrame  # ald_params: loc, scale, kappa, status
    best: np.ndarray  # (C,) index into FAMILIES of the AIC-best family, -1: none fitted
    hist: tuple[np.ndarray, np.ndarray]  # per class bin edges (C, B+1), densities (C, B)
    grid: np.ndarray  # (C, N_GRID) where the densities are drawn
    density: dict[str, np.ndarray]  # family -> (C, N_GRID) fitted density (NaN: no fit)
    nodes: pd.DataFrame
    terminals: pd.DataFrame
    geometry: dict | None
    wordnet: list[tuple[str, str]] | None  # ImageNet heads: (wnid, definition) per class
    confusion: np.ndarray | None = None  # (C, C) test images of true class i predicted as j
    influential: tables.Influential | None = None
    ablate: pd.DataFrame | None = None
    decompose: dict | None = None
    faithfulness: dict | None = None
    stats: dict[str, np.ndarray] | None = None  # feature_stats columns, (D, ...) each
    sparse: pd.DataFrame | None = None


def _json(path: Path) -> dict | None:
    return io.read_json(path) if path.is_file() else None


def _check_rows(w: np.ndarray, p: Paths, names: tuple[str, ...]) -> None:
    """Every weight row must be drawable: a constant row has no histogram nor fitted density."""
    if (flat := np.flatnonzero(np.ptp(w, axis=1) == 0)).size:
        c = int(flat[0])
        raise FclensError(f"{p.weights}: class {c} ({names[c]!r}) has a constant weight row "
                          f"(every weight {float(w[c, 0]):g}; {flat.size} such classes); "
                          f"expected weights that vary, to draw their histogram and fitted "
                          f"densities (explorer.models: {p.model})")


def _fits(gof: pd.DataFrame, ald: pd.DataFrame) -> dict:
    """The fits in `ald.curves.densities`' layout, from the two tables fit_ald wrote."""
    res = {"ald_fit": {k: ald[k].to_numpy() for k in ("loc", "scale", "kappa", "loglik")}}
    for f in FAMILIES:
        res[f] = {c.removeprefix(f + "_"): gof[c].to_numpy() for c in gof.columns
                  if c.startswith(f + "_") and gof[c].dtype.kind == "f"}
    return res


def _histograms(w: np.ndarray, n_grid: int, fits: dict
                ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Per class: a density histogram of its weights (sqrt(D) bins, 10..40) and a grid over
    its range padded by a tenth plus each family's location (the cusp of the ALD and Laplace
    densities is drawn at its height), (C, B+1), (C, B), (C, n_grid + F)."""
    c, d = w.shape
    bins = int(np.clip(round(np.sqrt(d)), 10, 40))
    lo, hi = w.min(1), w.max(1)  # (C,)
    edges = lo[:, None] + (hi - lo)[:, None] * np.linspace(0, 1, bins + 1)[None]  # (C, B+1)
    pos = np.clip(((w - lo[:, None]) / (hi - lo)[:, None] * bins).astype(np.int64), 0, bins - 1)
    counts = np.zeros((c, bins))
    np.add.at(counts, (np.repeat(np.arange(c), d), pos.ravel()), 1)
    dens = counts / (d * ((hi - lo) / bins)[:, None])
    pad = (hi - lo) * 0.1
    grid = (lo - pad)[:, None] + ((hi - lo) + 2 * pad)[:, None] * np.linspace(0, 1, n_grid)[None]
    locs = np.stack([fits["ald_fit" if f == "ald" else f]["loc"] for f in FAMILIES], 1)  # (C, F)
    locs = np.clip(np.where(np.isfinite(locs), locs, grid[:, :1]), grid[:, :1], grid[:, -1:])
    return (edges, dens), np.sort(np.concatenate([grid, locs], 1), axis=1)


def _wordnet(names: tuple[str, ...]) -> list[tuple[str, str]] | None:
    """ImageNet-1k heads whose class names are timm's descriptions, in timm's order: each
    class's WordNet id and definition from the ImageNet info that ships inside timm."""
    if len(names) != 1000:
        return None
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    if any(info.index_to_description(i) != n for i, n in enumerate(names)):
        return None
    return [(info.index_to_label_name(i),
             info.index_to_description(i, detailed=True).split(": ", 1)[-1]) for i in range(1000)]


def _confusion(path: Path, n_classes: int) -> np.ndarray:
    t = tables.read(path, tables.FEATURES, n_classes, columns=["label", "pred"])
    y, p = (t[k].to_numpy().astype(np.int64) for k in ("label", "pred"))
    return np.bincount(y * n_classes + p, minlength=n_classes ** 2).reshape(n_classes,
                                                                            n_classes)


def _per_class(frame: pd.DataFrame, path: Path, head: tables.Head, model: str) -> pd.DataFrame:
    """A per-class table in class order, one row per class of the FC layer (a table is read by
    class index, never by row position)."""
    idx = frame["class_index"].to_numpy()
    if len(frame) != head.n_classes or not np.array_equal(np.sort(idx),
                                                          np.arange(head.n_classes)):
        raise FclensError(f"{path}: {len(frame)} rows for classes {sorted(set(idx.tolist()))[:5]}"
                          f"...; expected one row per class 0..{head.n_classes - 1} of "
                          f"{head.n_classes} (the FC layer's): rerun its stage for {model}")
    frame = frame.sort_values("class_index", kind="stable").reset_index(drop=True)
    if "class_name" in frame and tuple(frame["class_name"]) != head.names:
        raise FclensError(f"{path}: class names differ from the FC layer's; expected the same "
                          f"model's table: rerun its stage for {model}")
    return frame


def _lists(doc, path: Path, n: int, key: str = "") -> None:
    """Every list under a `per_class` key of a metrics JSON must hold one value per class."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            where = f"{key}.{k}" if key else k
            if key.endswith("per_class") and isinstance(v, list) and len(v) != n:
                raise FclensError(f"{path}: {where} holds {len(v)} values; expected one per "
                                  f"class ({n}, the FC layer's): rerun its stage")
            _lists(v, path, n, where)


def _stats(path: Path, n_classes: int, dim: int) -> dict[str, np.ndarray]:
    t = tables.read(path, tables.FEATURE_STATS)
    try:
        out = {k: np.stack(t[k].to_numpy(zero_copy_only=False))
               if pa.types.is_list(t.schema.field(k).type) else t[k].to_numpy()
               for k in t.column_names}
    except ValueError as e:  # lists of unequal lengths
        raise FclensError(f"{path}: list columns of unequal lengths ({e}); expected one width "
                          f"per column: rerun the exemplars stage") from None
    widths = {k: out[k].shape[1] for k in ("class_mean", "selectivity", "purity")}
    if not np.array_equal(out["feature_index"], np.arange(dim)) or set(widths.values()) != {
            n_classes} or out["hist"].shape[1] % 64 or out["top_label"].size and (
            out["top_label"].min() < 0 or out["top_label"].max() >= n_classes):
        raise FclensError(f"{path}: statistics of {len(out['feature_index'])} features, class "
                          f"widths {widths}, {out['hist'].shape[1]} histogram bins; expected "
                          f"features 0..{dim - 1}, {n_classes} classes (the FC layer's), labels "
                          f"in 0..{n_classes - 1} and a multiple of 64 bins: rerun the exemplars "
                          f"stage")
    return out


def _check_sets(frame: pd.DataFrame, path: Path, dim: int) -> None:
    """Feature lists of sparse_sets / terminals: indices in 0..D-1, one weight each."""
    for i, (f, w) in enumerate(zip(frame["feature_index"], frame["weight"])):
        if len(f) != len(w) or (len(f) and (min(f) < 0 or max(f) >= dim)):
            raise FclensError(f"{path}: row {i} holds {len(f)} feature indices "
                              f"{list(f)[:5]}... and {len(w)} weights; expected indices in "
                              f"0..{dim - 1} (the FC layer's inputs), one weight each")


def load(p: Paths) -> ModelData:
    """Read and check one model's inputs (FclensError naming the file or key)."""
    if not p.weights.is_file():
        raise FclensError(f"explorer.models: {p.model!r} has no weight tables ({p.weights} is "
                          f"missing; the extract_weights@{p.model} stage writes it): run `dvc "
                          f"repro`, or remove {p.model} from explorer.models")
    head = tables.read_fc_weights(p.weights)
    c = head.n_classes
    _check_rows(head.w, p, head.names)
    gof = _per_class(tables.read_frame(p.gof, tables.ALD_GOF, c), p.gof, head, p.model)
    ald = _per_class(tables.read_frame(p.ald, tables.ALD_PARAMS, c), p.ald, head, p.model)
    aic = np.stack([gof[f"{f}_aic"].to_numpy() for f in FAMILIES], 1)  # (C, F)
    fits = _fits(gof, ald)
    hist, grid = _histograms(head.w.astype(np.float64), N_GRID, fits)
    fam = densities(fits, np.arange(c), grid, FAMILIES)
    terminals = tables.read_frame(p.terminals, tables.TERMINALS, c)
    _check_sets(terminals, p.terminals, head.dim)
    geometry = _json(p.metrics / "geometry.json")
    _lists(geometry, p.metrics / "geometry.json", c)
    data = dict(paths=p, head=head, gof=gof, ald=ald, best=best_family(aic, head.dim),
                hist=hist, grid=grid, density=fam,
                nodes=tables.read_frame(p.nodes, tables.TREE_NODES, c), terminals=terminals,
                geometry=geometry, wordnet=_wordnet(head.names))
    if p.dataset is not None:
        decompose = _json(p.metrics / "decompose.json")
        _lists(decompose, p.metrics / "decompose.json", c)
        if missing := [str(f) for f in p.cams.values() if not f.is_file()]:
            raise FclensError(f"{', '.join(missing)}: missing; the explain stage draws them "
                              f"(explain.methods): run `dvc repro`")
        data.update(confusion=_confusion(p.features_test, c),
                    influential=tables.read_influential(p.influential, c, head.dim),
                    ablate=_per_class(tables.read_frame(p.ablate, tables.ABLATE_PER_CLASS, c),
                                      p.ablate, head, p.model),
                    decompose=decompose, faithfulness=_json(p.metrics / "faithfulness.json"),
                    stats=_stats(p.stats, c, head.dim))
        if p.sparse is not None:
            data["sparse"] = tables.read_frame(p.sparse, tables.SPARSE_SETS, c)
            _check_sets(data["sparse"], p.sparse, head.dim)
    return ModelData(**data)


def slug(text: str, limit: int = 16) -> str:
    """A file-name-safe form of `text`: lowercase ASCII letters, digits, underscores and
    dashes (a class name may hold a slash, HTML characters or any Unicode)."""
    s = re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return s or "class"
