"""Decomposed accuracy (no retraining) over a k1 x k2 grid: heatmap, CSV series, metrics."""

from pathlib import Path

import numpy as np
import pandas as pd
from _stage import run

from fclens.decompose import accuracy, decomposed_accuracy_grid
from fclens.tables import read_fc_weights, read_features
from fclens.io import atomic_path, read_table, write_json
from fclens.plots import plot_heatmap


def main(args, p):
    k1s, k2s = p["decompose"]["grid"]["k1"], p["decompose"]["grid"]["k2"]
    w, b, _ = read_fc_weights(read_table(args.weights))
    x_tr, y_tr, _ = read_features(read_table(Path(args.data) / "features_train.parquet"))
    x_te, y_te, _ = read_features(read_table(Path(args.data) / "features_test.parquet"))
    acc, union = decomposed_accuracy_grid(x_tr, y_tr, x_te, y_te, w, b, k1s, k2s)
    acc0 = accuracy(x_te @ w.T + b, y_te)
    rows = pd.DataFrame([dict(k1=k1, k2=k2, acc_decomposed=acc[i, j], union_size=union[i, j])
                         for i, k1 in enumerate(k1s) for j, k2 in enumerate(k2s)])
    with atomic_path(args.csv) as tmp:
        rows.to_csv(tmp, index=False, float_format="%.5g")
    plot_heatmap(acc, k2s, k1s, f"decomposed test accuracy (rows k1, cols k2; full {acc0:.3f})",
                 Path(args.plot))
    best = np.unravel_index(np.argmax(acc), acc.shape)
    write_json(args.metrics, {
        "k1": k1s, "k2": k2s, "acc_original": acc0,
        "acc_decomposed": {f"k1={k1}": dict(zip((f"k2={k}" for k in k2s), acc[i].tolist()))
                           for i, k1 in enumerate(k1s)},
        "best_k1": k1s[best[0]], "best_k2": k2s[best[1]], "best_acc_decomposed": acc.max(),
    }, digits=5)


if __name__ == "__main__":
    run("k_grid", main, lambda ap: [ap.add_argument(f"--{k}", required=True)
                                    for k in ("data", "weights", "metrics", "plot", "csv")])
