"""The Parquet tables stages exchange (FC weights, features): numpy + pyarrow only, no torch,
so the analysis stages start in a fraction of a second."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .io import FclensError, fixed_list_array, list_column_to_numpy, read_table


def fc_weights_table(w: np.ndarray, b: np.ndarray, names: list[str]) -> pa.Table:
    if len(names) != w.shape[0]:
        raise FclensError(f"{len(names)} class names for {w.shape[0]} classes")
    return pa.table({
        "class_index": pa.array(np.arange(w.shape[0], dtype=np.int32)),
        "class_name": pa.array(names, pa.string()),
        "bias": pa.array(b.astype(np.float32)),
        "weight": fixed_list_array(w),
    })


def read_fc_weights(table: pa.Table) -> tuple[np.ndarray, np.ndarray, list[str]]:
    order = np.argsort(table["class_index"].to_numpy())
    w = list_column_to_numpy(table["weight"])[order]
    b = table["bias"].to_numpy().astype(np.float32)[order]
    names = [table["class_name"][int(i)].as_py() for i in order]
    return w, b, names


def read_features(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """features_*.parquet -> X (N, D) float32, labels (N,) int64, preds (N,) int64."""
    x = list_column_to_numpy(table["features"])
    return (x, table["label"].to_numpy().astype(np.int64),
            table["pred"].to_numpy().astype(np.int64))


def feature_dim_of(path: str | Path) -> int:
    """D from a features Parquet's schema, without reading the data."""
    try:
        t = pq.read_schema(path).field("features").type
    except (pa.ArrowException, OSError, KeyError) as e:
        read_table(path)  # raises the readable error
        raise FclensError(f"{path}: no 'features' column") from e
    return t.list_size
