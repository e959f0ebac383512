"""ALD analysis of FC weights: the fits of metrics/<m>/ald.json and plots/<m>/ald/."""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import figure, num, pct, table


def ald_verdict(a: dict) -> str:
    win = a["aic_win_rate"]
    best = max(a["best_family_counts"], key=a["best_family_counts"].get)
    beats_all = all(v > 0.5 for v in win.values())
    return (f"ALD has the lower AIC than Gaussian in {pct(win['gaussian'])} of classes, than "
            f"Student-t in {pct(win['student_t'])}, than logistic in {pct(win['logistic'])}; "
            f"the family most often best by AIC is **{best}** "
            f"({a['best_family_counts'][best]} of {a['n_classes'] - a['n_degenerate']}). "
            + ("ALD wins against every alternative in most classes." if beats_all else
               "ALD does **not** beat every alternative in most classes.")
            + f" The likelihood-ratio test rejects symmetric Laplace in "
              f"{pct(a['lr_test_reject_frac'])} of classes; the blog's R² criterion has median "
              f"{a['r2_line_median']:.3f} whatever the family.")


ALD_CAPTIONS = {
    "classes": "weight histograms of the classes in `ald.plot_classes` with the fitted ALD, "
               "Gaussian and Laplace densities, and each one's QQ plot against its fitted ALD.",
    "kappa": "log κ of the fitted ALD over all classes (0: symmetric Laplace; below 0: the "
             "positive tail is the longer one, in scipy's parametrisation).",
}


def section_ald(inp: Inputs) -> list[str]:
    docs = {m: inp.json(f"metrics/{m}/ald.json") for m in inp.models}
    rows = []
    for m, a in docs.items():
        w = a["aic_win_rate"]
        rows.append([m, str(a["n_classes"]), num(a["kappa_median"]), pct(a["frac_kappa_lt_1"]),
                     pct(w["gaussian"]), pct(w["laplace"]), pct(w["student_t"]),
                     pct(w["logistic"]), pct(a["lr_test_reject_frac"]), num(a["ks_median"]),
                     num(a["r2_line_median"]), str(a["n_boundary"]), str(a["n_degenerate"])])
    lines = table(["model", "classes", "κ median", "κ<1", "ALD AIC win vs Gauss", "vs Laplace",
                   "vs t", "vs logistic", "LR rejects Laplace", "KS median", "blog R² median",
                   "boundary fits", "degenerate"], rows)
    lines += [f"- **{m}**: {ald_verdict(a)}" for m, a in docs.items()] + [""]
    for m in inp.models:
        lines += [f"### {m}", ""]
        for stem, src in inp.pngs(f"plots/{m}/ald"):
            lines += figure(src, f"{m}: {ALD_CAPTIONS.get(stem, stem)}")
    return lines
