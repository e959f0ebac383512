"""ALD MLE + comparison with Gaussian/Laplace/Student-t/logistic per class -> tables, metrics, plots."""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from _stage import run

from fclens.ald import DEGENERATE, FAMILIES, compare_families
from fclens.tables import read_fc_weights
from fclens.io import read_table, write_json, write_table
from fclens.plots import plot_ald_classes, plot_kappa_hist


def main(args, p):
    w, _, names = read_fc_weights(read_table(args.weights))
    t0 = time.perf_counter()
    res = compare_families(w)
    fit_seconds = time.perf_counter() - t0
    ald = res["ald_fit"]
    c = w.shape[0]
    params = pd.DataFrame({"class_index": np.arange(c, dtype=np.int32), "class_name": names,
                           "loc": ald["loc"], "scale": ald["scale"], "kappa": ald["kappa"],
                           "loglik": ald["loglik"], "status": ald["status"].astype(str)})
    gof = {"class_index": np.arange(c, dtype=np.int32)}
    for fam in FAMILIES:
        for k, v in res[fam].items():
            gof[f"{fam}_{k}"] = v
    gof.update(lr_stat=res["lr_test"]["stat"], lr_pvalue=res["lr_test"]["pvalue"],
               r2_line=res["r2_line"]["r2"])
    gof = pd.DataFrame(gof)
    out = Path(args.out)
    write_table(out / "ald_params.parquet", pa.Table.from_pandas(params, preserve_index=False))
    write_table(out / "ald_gof.parquet", pa.Table.from_pandas(gof, preserve_index=False))

    good = ~params["status"].isin(DEGENERATE).to_numpy()
    aic = np.stack([gof[f"{f}_aic"].to_numpy()[good] for f in FAMILIES], 1)  # (G, F)
    best = np.array(FAMILIES)[aic.argmin(1)] if good.any() else np.array([])
    kappa = params["kappa"].to_numpy()[good]
    metrics = {
        "n_classes": c, "feature_dim": w.shape[1],
        "kappa_median": float(np.median(kappa)) if good.any() else float("nan"),
        "frac_kappa_lt_1": float((kappa < 1).mean()) if good.any() else float("nan"),
        "aic_win_rate": {f: float((aic[:, 0] < aic[:, i]).mean())
                         for i, f in enumerate(FAMILIES) if f != "ald"},
        "bic_win_rate": {f: float((gof["ald_bic"][good] < gof[f"{f}_bic"][good]).mean())
                         for f in FAMILIES if f != "ald"},
        "best_family_counts": {f: int((best == f).sum()) for f in FAMILIES},
        "lr_test_reject_frac": float((gof["lr_pvalue"][good] < 0.05).mean()),
        "ks_median": float(np.median(gof["ald_ks"][good])),
        "ks_median_by_family": {f: float(np.median(gof[f"{f}_ks"][good])) for f in FAMILIES},
        "ad_median_by_family": {f: float(np.median(gof[f"{f}_ad"][good])) for f in FAMILIES},
        "r2_line_median": float(np.median(gof["r2_line"][good])),
        "n_degenerate": int((~good).sum()),
        "status_counts": params["status"].value_counts().sort_index().to_dict(),
        "n_boundary": int(params["status"].str.startswith("boundary").sum()),
        "fit_seconds": fit_seconds,
    }
    write_json(args.metrics, metrics, digits=4)
    plots = Path(args.plots)
    classes = [c_ for c_ in p["ald"]["plot_classes"] if c_ < c]
    plot_ald_classes(w, res, names, classes, plots / "classes.png")
    plot_kappa_hist(kappa, plots / "kappa.png")


if __name__ == "__main__":
    run("fit_ald", main, lambda ap: [ap.add_argument(f"--{k}", required=True)
                                     for k in ("weights", "out", "metrics", "plots")])
