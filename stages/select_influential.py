"""Algorithm 1 of "Decomposing the Deep": each class's k2 most frequent top-k1 features."""

import numpy as np
import pyarrow as pa
from _stage import run

from fclens.decompose import check_k, influential_indices
from fclens.tables import feature_dim_of, read_features
from fclens.io import read_table, write_table


def main(args, p):
    k1, k2 = p["decompose"]["k1"], p["decompose"]["k2"]
    check_k(k1, k2, feature_dim_of(args.features))  # before reading 50k rows
    n_classes = read_table(args.weights, columns=["class_index"]).num_rows
    x, y, _ = read_features(read_table(args.features))
    idx, counts = influential_indices(x, y, n_classes, k1, k2)
    c = np.repeat(np.arange(n_classes, dtype=np.int32), k2)
    write_table(args.out, pa.table({
        "class_index": c, "rank": np.tile(np.arange(k2, dtype=np.int16), n_classes),
        "feature_index": idx.ravel().astype(np.int32), "count": counts.ravel().astype(np.int64)}))


if __name__ == "__main__":
    run("select_influential", main, lambda ap: [ap.add_argument(f"--{k}", required=True)
                                                for k in ("features", "weights", "out")])
