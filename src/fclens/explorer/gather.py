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

N_GRID = 30  # points of each drawn density


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


def _histograms(w: np.ndarray, n_grid: int) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Per class: a density histogram of its weights (sqrt(D) bins, 10..40) and a grid over
    its range padded by a tenth, (C, B+1), (C, B), (C, n_grid)."""
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
    return (edges, dens), grid


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


def _stats(path: Path, n_classes: int, dim: int) -> dict[str, np.ndarray]:
    t = tables.read(path, tables.FEATURE_STATS)
    out = {k: np.stack(t[k].to_numpy(zero_copy_only=False))
           if pa.types.is_list(t.schema.field(k).type) else t[k].to_numpy()
           for k in t.column_names}
    if not np.array_equal(out["feature_index"], np.arange(dim)) or out["class_mean"].shape[1] \
            != n_classes:
        raise FclensError(f"{path}: statistics of {len(out['feature_index'])} features and "
                          f"{out['class_mean'].shape[1]} classes; expected features 0..{dim - 1} "
                          f"and {n_classes} classes (the FC layer's): rerun the exemplars stage")
    return out


def load(p: Paths) -> ModelData:
    """Read and check one model's inputs (FclensError naming the file or key)."""
    if not p.weights.is_file():
        raise FclensError(f"explorer.models: {p.model!r} has no weight tables ({p.weights} is "
                          f"missing; the extract_weights@{p.model} stage writes it): run `dvc "
                          f"repro`, or remove {p.model} from explorer.models")
    head = tables.read_fc_weights(p.weights)
    c = head.n_classes
    _check_rows(head.w, p, head.names)
    gof = tables.read_frame(p.gof, tables.ALD_GOF, c)
    ald = tables.read_frame(p.ald, tables.ALD_PARAMS, c)
    if len(gof) != c or len(ald) != c:
        raise FclensError(f"{p.gof}, {p.ald}: {len(gof)} and {len(ald)} rows; expected one per "
                          f"class of {p.weights} ({c}): rerun fit_ald@{p.model}")
    aic = np.stack([gof[f"{f}_aic"].to_numpy() for f in FAMILIES], 1)  # (C, F)
    hist, grid = _histograms(head.w.astype(np.float64), N_GRID)
    fam = densities(_fits(gof, ald), np.arange(c), grid, FAMILIES)
    data = dict(paths=p, head=head, gof=gof, ald=ald, best=best_family(aic, head.dim),
                hist=hist, grid=grid, density=fam,
                nodes=tables.read_frame(p.nodes, tables.TREE_NODES, c),
                terminals=tables.read_frame(p.terminals, tables.TERMINALS, c),
                geometry=_json(p.metrics / "geometry.json"), wordnet=_wordnet(head.names))
    if p.dataset is not None:
        data.update(confusion=_confusion(p.features_test, c),
                    influential=tables.read_influential(p.influential, c, head.dim),
                    ablate=tables.read_frame(p.ablate, tables.ABLATE_PER_CLASS, c),
                    decompose=_json(p.metrics / "decompose.json"),
                    faithfulness=_json(p.metrics / "faithfulness.json"),
                    stats=_stats(p.stats, c, head.dim))
        if p.sparse is not None:
            data["sparse"] = tables.read_frame(p.sparse, tables.SPARSE_SETS, c)
    return ModelData(**data)


def slug(text: str, limit: int = 16) -> str:
    """A file-name-safe form of `text`: lowercase ASCII letters, digits, underscores and
    dashes (a class name may hold a slash, HTML characters or any Unicode)."""
    s = re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return s or "class"
