"""Noise ablations of influential / non-influential / random sets, and a cross-method table."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from _stage import run

from fclens.ablate import ablation_block, jaccard, per_class_accuracy
from fclens.decompose import read_influential, accuracy, decomposed_logits, index_mask, top_k_indices
from fclens.tables import read_fc_weights, read_features
from fclens.io import read_table, write_json, write_table
from fclens.trees import chain_rank


def method_masks(alg1: np.ndarray, w: np.ndarray, x_tr: np.ndarray, y_tr: np.ndarray,
                 nodes: pd.DataFrame) -> dict[str, np.ndarray]:
    """(C, D) masks of equal size k per class from four ways of picking a class's features."""
    c, d = w.shape
    k = int(alg1.sum(1).max())
    # mean contribution x_j W[c, j] over the class's training images (= gradient x input, and
    # integrated gradients from a zero baseline, for a linear head)
    sums = np.zeros((c, d))
    np.add.at(sums, y_tr, x_tr)
    contrib = sums / np.maximum(np.bincount(y_tr, minlength=c), 1)[:, None] * w
    return {
        "algorithm1": alg1,
        "tree_terminal": index_mask(chain_rank(nodes, w)[:, :k], d),
        "top_abs_weight": index_mask(top_k_indices(np.abs(w), k), d),
        "top_contribution": index_mask(top_k_indices(contrib, k), d),
    }


def main(args, p):
    cfg = p["ablate"]
    data = Path(args.data)
    w, b, names = read_fc_weights(read_table(args.weights))
    x_tr, y_tr, _ = read_features(read_table(data / "features_train.parquet"))
    x_te, y_te, _ = read_features(read_table(data / "features_test.parquet"))
    mean, std = x_tr.mean(0), x_tr.std(0)
    sets = index_mask(read_influential(read_table(args.influential), w.shape[0]), w.shape[1])
    by_noise = {m: ablation_block(x_te, y_te, w, b, sets, m, mean, std, p["seed"], cfg["n_random"])
                for m in cfg["noise_modes"]}
    metrics = dict(by_noise[cfg["noise"]])
    metrics.update(noise=cfg["noise"], by_noise=by_noise)
    metrics["damage_influential_per_class"] = (metrics["acc_original"]
                                               - metrics["acc_noise_influential_per_class"])
    metrics["damage_noninfluential_per_class"] = (metrics["acc_original"]
                                                  - metrics["acc_noise_noninfluential_per_class"])
    nodes = read_table(args.trees, columns=["class_index", "path", "depth", "indices"]).to_pandas()
    methods = method_masks(sets, w, x_tr, y_tr, nodes)
    table = {}
    for name, m in methods.items():
        blk = ablation_block(x_te, y_te, w, b, m, cfg["noise"], mean, std, p["seed"], 0)
        table[name] = {
            "jaccard_vs_algorithm1": float(jaccard(m, sets).mean()),
            "acc_decomposed": accuracy(decomposed_logits(x_te, w, b, m), y_te),
            "acc_noise_own_set_per_class": blk["acc_noise_influential_per_class"],
            "damage_per_class": blk["acc_original"] - blk["acc_noise_influential_per_class"],
            "union_size": blk["union_size"],
        }
    metrics["methods"] = table
    write_json(args.metrics, metrics, digits=5)
    pc = per_class_accuracy(x_te, y_te, w, b, sets, cfg["noise"], mean, std, p["seed"])
    write_table(args.per_class, pa.Table.from_pandas(pd.DataFrame(
        {"class_index": np.arange(len(names), dtype=np.int32), "class_name": names, **pc}),
        preserve_index=False))


if __name__ == "__main__":
    run("ablate", main, lambda ap: [ap.add_argument(f"--{k}", required=True) for k in
                                    ("data", "weights", "influential", "trees", "metrics",
                                     "per_class")])
