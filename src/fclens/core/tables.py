"""The data contract: every Parquet table the stages exchange, with one schema, one writer and
one validating reader each. numpy + pyarrow only (no torch), so analysis stages start fast.

A writer checks its rows against the table's `Spec` (columns, types, vector width, finite values,
class indices in range) before anything reaches the disk, stamps the table name and
`schema_version` into the Parquet metadata, and writes page checksums. A reader verifies the
checksums and the same rules, and raises a `FclensError` naming the file, what was expected and
what was found: no pyarrow, KeyError or IndexError traceback reaches a user.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fclens.core.errors import FclensError
from fclens.core.io import atomic_path

SCHEMA_VERSION = 2  # 1: the unversioned tables of fclens <= 0.1
META_TABLE, META_VERSION = b"fclens.table", b"fclens.schema_version"
META_PART = b"fclens.part"  # FeatureParts: what computed the part (JSON)
_log = logging.getLogger(__name__)
VEC = "vector"  # placeholder type: fixed_size_list<float32>[D], D checked per file


@dataclass(frozen=True)
class Col:
    name: str
    type: pa.DataType | str
    finite: bool = False  # float values must be finite
    class_index: bool = False  # int values in 0..C-1


@dataclass(frozen=True)
class Spec:
    name: str
    cols: tuple[Col, ...]
    writer: str  # the stage that writes it, for error messages

    def schema(self, dim: int | None = None) -> pa.Schema:
        return pa.schema([(c.name, pa.list_(pa.float32(), dim) if c.type == VEC else c.type)
                          for c in self.cols])


_i32, _i64, _f32, _f64, _str, _bool = (pa.int32(), pa.int64(), pa.float32(), pa.float64(),
                                       pa.string(), pa.bool_())
FC_WEIGHTS = Spec("fc_weights", (Col("class_index", _i32, class_index=True),
                                 Col("class_name", _str), Col("bias", _f32, finite=True),
                                 Col("weight", VEC, finite=True)), "extract_weights")
FEATURES = Spec("features", (Col("index", _i64), Col("label", pa.int16(), class_index=True),
                             Col("pred", pa.int16(), class_index=True),
                             Col("logit_true", _f32, finite=True),
                             Col("features", VEC, finite=True)), "extract_activations")
INFLUENTIAL = Spec("influential", (Col("class_index", _i32, class_index=True),
                                   Col("rank", pa.int16()), Col("feature_index", _i32),
                                   Col("count", _i64)), "select_influential")
TREE_NODES = Spec("tree_nodes", (
    Col("class_index", _i32, class_index=True), Col("node_id", _i32), Col("parent", _i32),
    Col("path", _str), Col("depth", pa.int16()), Col("size", _i32), Col("mean", _f32, True),
    Col("is_leaf", _bool), Col("is_terminal", _bool), Col("indices", pa.list_(_i32))),
    "build_trees")
TERMINALS = Spec("terminals", (
    Col("class_index", _i32, class_index=True), Col("class_name", _str), Col("branch", _str),
    Col("path", _str), Col("feature_index", pa.list_(_i32)), Col("weight", pa.list_(_f32))),
    "build_trees")
ALD_PARAMS = Spec("ald_params", (
    Col("class_index", _i32, class_index=True), Col("class_name", _str), Col("loc", _f64),
    Col("scale", _f64), Col("kappa", _f64), Col("loglik", _f64), Col("status", _str)),
    "fit_ald")
ABLATE_PER_CLASS = Spec("ablate_per_class", (
    Col("class_index", _i32, class_index=True), Col("class_name", _str),
    Col("acc_original", _f64, True), Col("acc_noise_influential", _f64, True),
    Col("acc_noise_noninfluential", _f64, True), Col("n_images", _f64, True)), "ablate")
SPARSE_SETS = Spec("sparse_sets", (  # per (method, grid k, class): the features a head keeps
    Col("method", _str), Col("k", _i32), Col("class_index", _i32, class_index=True),
    Col("feature_index", pa.list_(_i32)), Col("weight", pa.list_(_f32))), "sparsify")
SPARSE_HEADS = Spec("sparse_heads", (  # whole sparse heads (zeros off the set), per class
    Col("head", _str), Col("k", _i32), Col("class_index", _i32, class_index=True),
    Col("bias", _f32, True), Col("weight", pa.list_(_f32))), "sparsify")
FEATURE_STATS = Spec("feature_stats", (  # per feature, over the training split (exemplars)
    Col("feature_index", _i32), Col("top_index", pa.list_(_i64)),
    Col("top_value", pa.list_(_f32)), Col("top_label", pa.list_(_i32)),
    Col("class_mean", pa.list_(_f64)), Col("selectivity", pa.list_(_f64)),
    Col("purity", pa.list_(_f64)), Col("hist", pa.list_(_i64)), Col("hist_r", _f64)),
    "exemplars")
# ald_gof has one column group per family; its columns are checked by name prefix and type
ALD_GOF = Spec("ald_gof", (Col("class_index", _i32, class_index=True),), "fit_ald")


# ---------------------------------------------------------------- generic write / read

def check_rows(t: pa.Table, spec: Spec, where: str, n_classes: int | None) -> None:
    if t.num_rows == 0:
        raise FclensError(f"{where}: {spec.name} table has 0 rows; expected at least 1")
    for c in spec.cols:
        col = t[c.name]
        if c.finite:
            vals = col.combine_chunks()
            if pa.types.is_fixed_size_list(vals.type) or pa.types.is_list(vals.type):
                vals = vals.flatten()
            arr = vals.to_numpy(zero_copy_only=False)
            if bad := int((~np.isfinite(arr)).sum()):
                raise FclensError(f"{where}: column {c.name!r} has {bad} non-finite values "
                                  f"(NaN/inf); expected finite numbers")
        if c.class_index and n_classes is not None:
            arr = col.to_numpy()
            if len(arr) and (arr.min() < 0 or arr.max() >= n_classes):
                raise FclensError(f"{where}: column {c.name!r} holds values "
                                  f"{int(arr.min())}..{int(arr.max())}; expected class indices in "
                                  f"0..{n_classes - 1} ({n_classes} classes)")


def _vector_dim(schema: pa.Schema, spec: Spec) -> int | None:
    """D of the spec's vector column in `schema`; None if absent or not fixed-size."""
    for c in spec.cols:
        if c.type == VEC and c.name in schema.names:
            t = schema.field(c.name).type
            return t.list_size if pa.types.is_fixed_size_list(t) else None
    return None


def write(path: str | Path, table: pa.Table, spec: Spec, n_classes: int | None = None) -> None:
    """Validate `table` against `spec`, stamp name + version, write atomically with checksums."""
    _check_schema(table.schema, spec, _vector_dim(table.schema, spec), f"{path} (writing)")
    check_rows(table, spec, f"{path} (writing)", n_classes)
    meta = {**(table.schema.metadata or {}), META_TABLE: spec.name.encode(),
            META_VERSION: str(SCHEMA_VERSION).encode()}
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp, write_page_checksum=True)


def _check_schema(schema: pa.Schema, spec: Spec, dim: int | None, where: str) -> None:
    if spec is ALD_GOF:
        return _check_gof_schema(schema, where)
    want = spec.schema(1 if dim is None else dim)  # None: no fixed-size vector column found
    got = {f.name: f.type for f in schema}
    vec = {c.name for c in spec.cols if c.type == VEC}

    def expected(f: pa.Field) -> str:
        return "fixed_size_list<item: float>[D]" if f.name in vec and dim is None else str(f.type)

    missing = [f.name for f in want if f.name not in got]
    wrong = [f"{f.name}: {got[f.name]} (expected {expected(f)})" for f in want
             if f.name in got and got[f.name] != f.type]
    if missing or wrong:
        raise FclensError(f"{where}: not a valid {spec.name} table: missing columns {missing}, "
                          f"wrong types {wrong}; expected columns {want.names}")


def _check_gof_schema(schema: pa.Schema, where: str) -> None:
    """The families are the table's own `<family>_loglik` columns (the registry lives in
    analysis.ald, which core does not import): at least one, each with its aic and bic."""
    fams = [n.removesuffix("_loglik") for n in schema.names if n.endswith("_loglik")]
    want = ["class_index", *(f"{f}_{k}" for f in fams for k in ("loglik", "aic", "bic")),
            "lr_stat", "lr_pvalue", "r2_line"]
    if (missing := [n for n in want if n not in schema.names]) or not fams:
        raise FclensError(f"{where}: not a valid ald_gof table: missing columns "
                          f"{missing or ['<family>_loglik']}")


def _open(path: Path, spec: Spec) -> pq.ParquetFile:
    if not path.exists():
        raise FclensError(f"{path}: missing; it is written by the {spec.writer} stage "
                          f"(run `dvc repro`)")
    if path.is_dir():
        raise FclensError(f"{path}: is a directory; expected a {spec.name} Parquet file")
    try:
        # pre_buffer=False: pyarrow's default pre-buffering reads ahead the whole file (an
        # iter_batches pass over 150k x 2,048 held ~1 GB), which would break bounded memory
        f = pq.ParquetFile(path, page_checksum_verification=True, pre_buffer=False)
    except (pa.ArrowException, OSError) as e:
        raise FclensError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e}); it is "
                          f"truncated or corrupted: delete it and rerun `dvc repro`") from e
    meta = f.schema_arrow.metadata or {}
    name = meta.get(META_TABLE, b"").decode()
    version = meta.get(META_VERSION, b"1").decode()
    if name and name != spec.name:
        raise FclensError(f"{path}: is a {name} table; expected a {spec.name} table")
    if version != str(SCHEMA_VERSION):
        if not name:  # no fclens stamp: an fclens <= 0.1 table, or not an fclens table at all
            _check_schema(f.schema_arrow, spec, _vector_dim(f.schema_arrow, spec), str(path))
        newer = version.isdigit() and int(version) > SCHEMA_VERSION
        raise FclensError(
            f"{path}: {spec.name} schema_version {version}, {'newer' if newer else 'older'} "
            f"than the version {SCHEMA_VERSION} this fclens reads. " + (
                "The file is from a newer fclens: upgrade fclens." if newer else
                f"Rerun the {spec.writer} stage (`dvc repro -f {spec.writer}`) to rewrite it."))
    return f


def num_rows(path: str | Path, spec: Spec) -> int:
    """Rows of a table, from its (checked) header alone."""
    return _open(Path(path), spec).metadata.num_rows


def read(path: str | Path, spec: Spec, n_classes: int | None = None, dim: int | None = None,
         columns: list[str] | None = None) -> pa.Table:
    """A validated table. dim: expected vector width (None: any); n_classes: class range."""
    path = Path(path)
    f = _open(path, spec)
    file_dim = _vector_dim(f.schema_arrow, spec)
    _check_schema(f.schema_arrow, spec, file_dim, str(path))
    if dim is not None and file_dim is not None and file_dim != dim:
        raise FclensError(f"{path}: vectors of dimension {file_dim}; expected {dim} (the FC "
                          f"layer's input width)")
    try:
        t = f.read(columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise FclensError(f"{path}: corrupted Parquet data ({type(e).__name__}: {e}); delete it "
                          f"and rerun `dvc repro`") from e
    sub = Spec(spec.name, tuple(c for c in spec.cols if c.name in t.column_names), spec.writer)
    check_rows(t, sub, str(path), n_classes)
    return t


def vectors(col: pa.ChunkedArray) -> np.ndarray:
    """fixed_size_list<float32>[D] -> (N, D) float32 without a Python loop."""
    col = col.combine_chunks()
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), -1)


def vector_array(x: np.ndarray) -> pa.FixedSizeListArray:
    x = np.ascontiguousarray(x, dtype=np.float32)  # (N, D)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def feature_rows(schema: pa.Schema, index: np.ndarray, label: np.ndarray, pred: np.ndarray,
                  logit_true: np.ndarray, features: np.ndarray) -> pa.Table:
    return pa.table([pa.array(index.astype(np.int64)), pa.array(label.astype(np.int16)),
                     pa.array(pred.astype(np.int16)), pa.array(logit_true.astype(np.float32)),
                     vector_array(features)], schema=schema)


def write_influential(path: str | Path, infl: Influential) -> None:
    c, k2 = infl.idx.shape
    write(path, pa.table({
        "class_index": np.repeat(np.arange(c, dtype=np.int32), k2),
        "rank": np.tile(np.arange(k2, dtype=np.int16), c),
        "feature_index": infl.idx.ravel().astype(np.int32),
        "count": infl.counts.ravel().astype(np.int64)}), INFLUENTIAL, c)


def read_influential(path: str | Path, n_classes: int, dim: int) -> Influential:
    t = read(path, INFLUENTIAL, n_classes).to_pandas().sort_values(["class_index", "rank"])
    per_class = t.groupby("class_index").size()
    if len(per_class) != n_classes or per_class.nunique() != 1:
        raise FclensError(f"{path}: {len(t)} rows for classes {sorted(per_class.index)[:5]}...; "
                          f"expected the same number of rows (k2) for each of {n_classes} classes")
    idx = t["feature_index"].to_numpy().reshape(n_classes, -1)
    if idx.min() < 0 or idx.max() >= dim:
        raise FclensError(f"{path}: feature_index in {idx.min()}..{idx.max()}; expected "
                          f"0..{dim - 1}")
    if dup := [c for c in range(n_classes) if len(np.unique(idx[c])) != idx.shape[1]]:
        raise FclensError(f"{path}: class_index {dup[:5]} list a feature_index twice; expected "
                          f"{idx.shape[1]} distinct features per class")
    return Influential(idx.astype(np.int64), t["count"].to_numpy().reshape(n_classes, -1))


# ---------------------------------------------------------------- records

@dataclass(frozen=True)
class Head:
    """The final FC layer: logits = x @ w.T + b."""

    w: np.ndarray  # (C, D) float32
    b: np.ndarray  # (C,) float32
    names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return self.w.shape[0]

    @property
    def dim(self) -> int:
        return self.w.shape[1]

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.w.T + self.b  # (N, C)


@dataclass(frozen=True)
class Features:
    x: np.ndarray  # (N, D) float32, the FC layer's input
    labels: np.ndarray  # (N,) int64
    preds: np.ndarray  # (N,) int64, the model's own prediction


@dataclass(frozen=True)
class Influential:
    idx: np.ndarray  # (C, k2) feature indices, rank order
    counts: np.ndarray  # (C, k2) how many training images of the class had each in their top-k1


def write_fc_weights(path: str | Path, head: Head) -> None:
    if len(head.names) != head.n_classes or head.b.shape != (head.n_classes,):
        raise FclensError(f"{path}: {len(head.names)} class names and {head.b.shape} biases for "
                          f"{head.n_classes} classes")
    write(path, pa.table({
        "class_index": pa.array(np.arange(head.n_classes, dtype=np.int32)),
        "class_name": pa.array(list(head.names), _str),
        "bias": pa.array(head.b.astype(np.float32)), "weight": vector_array(head.w)}),
        FC_WEIGHTS, head.n_classes)


def read_fc_weights(path: str | Path) -> Head:
    t = read(path, FC_WEIGHTS)
    ci = t["class_index"].to_numpy()
    if not np.array_equal(np.sort(ci), np.arange(len(ci))):
        raise FclensError(f"{path}: class_index must be 0..{len(ci) - 1}, each once; found "
                          f"{len(np.unique(ci))} distinct values in {ci.min()}..{ci.max()}")
    order = np.argsort(ci)
    names = t["class_name"].to_pylist()
    return Head(vectors(t["weight"])[order], t["bias"].to_numpy()[order].astype(np.float32),
                tuple(names[i] for i in order))


def read_features(path: str | Path, n_classes: int, dim: int,
                  columns: tuple[str, ...] = ("label", "pred", "features")) -> Features:
    """features_{train,test}.parquet -> Features, checked against the head it feeds."""
    t = read(path, FEATURES, n_classes, dim, list(columns))
    x = vectors(t["features"]) if "features" in columns else np.zeros((t.num_rows, 0), np.float32)
    return Features(x, t["label"].to_numpy().astype(np.int64),
                    t["pred"].to_numpy().astype(np.int64))


def write_frame(path: str | Path, frame: pd.DataFrame, spec: Spec, n_classes: int) -> None:
    """A pandas frame (tree nodes, terminals, ALD, per-class ablation) as a `spec` table."""
    schema = None if spec is ALD_GOF else spec.schema()
    write(path, pa.Table.from_pandas(frame, schema=schema, preserve_index=False), spec, n_classes)


def read_frame(path: str | Path, spec: Spec, n_classes: int | None = None,
               columns: list[str] | None = None) -> pd.DataFrame:
    return read(path, spec, n_classes, columns=columns).to_pandas()


def write_ald(out: str | Path, res: dict, names: tuple[str, ...], families: tuple[str, ...]
              ) -> None:
    """ald_params.parquet and ald_gof.parquet from `ald.compare_families`'s result; `families`
    (the analysis registry's names, in order) get one column group each in ald_gof."""
    c, fit = len(names), res["ald_fit"]
    params = pd.DataFrame({"class_index": np.arange(c, dtype=np.int32), "class_name": names,
                           **{k: fit[k] for k in ("loc", "scale", "kappa", "loglik")},
                           "status": fit["status"].astype(str)})
    gof = {"class_index": np.arange(c, dtype=np.int32)}
    gof.update({f"{fam}_{k}": v for fam in families for k, v in res[fam].items()})
    gof.update(lr_stat=res["lr_test"]["stat"], lr_pvalue=res["lr_test"]["pvalue"],
               r2_line=res["r2_line"]["r2"])
    write_frame(Path(out) / "ald_params.parquet", params, ALD_PARAMS, c)
    write_frame(Path(out) / "ald_gof.parquet", pd.DataFrame(gof), ALD_GOF, c)


def write_trees(out: str | Path, nodes: pd.DataFrame, terms: pd.DataFrame, n_classes: int) -> None:
    """tree_nodes.parquet and terminals.parquet of `trees.tree_frames`."""
    write_frame(Path(out) / "tree_nodes.parquet", nodes, TREE_NODES, n_classes)
    write_frame(Path(out) / "terminals.parquet", terms, TERMINALS, n_classes)


def iter_features(path: str | Path, n_classes: int, dim: int, batch_rows: int,
                  columns: tuple[str, ...] = ("label", "pred", "features")
                  ) -> Iterator[Features]:
    """features_{train,test}.parquet as `Features` of at most `batch_rows` rows each, in file
    order (the row position is the image's `index` in its split), with `read_features`'s checks:
    the file's header (checksums, kind, version, columns, vector width against `dim`, at least
    one row) now, each batch's rows (finite values, labels in 0..n_classes-1) as it is read.
    Memory holds one batch, whatever the file's length."""
    path = Path(path)
    f = _open(path, FEATURES)
    file_dim = _vector_dim(f.schema_arrow, FEATURES)
    _check_schema(f.schema_arrow, FEATURES, file_dim, str(path))
    if file_dim != dim:
        raise FclensError(f"{path}: vectors of dimension {file_dim}; expected {dim} (the FC "
                          f"layer's input width)")
    if f.metadata.num_rows == 0:
        raise FclensError(f"{path}: features table has 0 rows; expected at least 1")
    sub = Spec(FEATURES.name, tuple(c for c in FEATURES.cols if c.name in columns),
               FEATURES.writer)

    def batches() -> Iterator[Features]:
        start = 0
        try:
            for b in f.iter_batches(batch_size=batch_rows, columns=list(columns)):
                t = pa.Table.from_batches([b])
                check_rows(t, sub, f"{path} (rows {start}..{start + t.num_rows - 1})",
                            n_classes)
                x = (vectors(t["features"]) if "features" in columns
                     else np.zeros((t.num_rows, 0), np.float32))
                yield Features(x, t["label"].to_numpy().astype(np.int64),
                               t["pred"].to_numpy().astype(np.int64))
                start += t.num_rows
        except (pa.ArrowException, OSError) as e:
            raise FclensError(f"{path}: corrupted Parquet data after row {start} "
                              f"({type(e).__name__}: {e}); delete it and rerun `dvc repro`"
                              ) from e

    return batches()
