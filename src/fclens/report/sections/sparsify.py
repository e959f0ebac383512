"""The report's sparse-heads section, from metrics/<m>/sparsify.json and plots/<m>/sparsify.png,
global_pruning.png (stage sparsify, one per `sparsify.models` entry).

Every number and every verdict is read or computed from the metrics, never typed.
"""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import figure, num, pct, table

SHOWN_K = (1, 2, 5, 10, 20)  # grid columns of the table (those in the model's grid)

INTRO = (
    "Which features does each class need? Each method gives every class a feature set and the "
    "head keeps only those weights. The table gives test accuracy with the masked head retrained "
    "on the training features (\"refit\", as in the decomposition) and, in brackets, with the "
    "original weights masked (elastic_net: its own weights). A validation part carved once from "
    "the training split by seed chooses elastic_net's λ; the test split never chooses anything. "
    "`algorithm1` is Algorithm 1 with k1 = k2 = k; `top_contribution` ranks by the mean of x·W "
    "over the class's images; `random` is the mean over seeds; `elastic_net` is the sparse "
    "decision layer of Wong, Santurkar and Madry (ICML 2021, glm-saga) and `csg` the "
    "class-specific gates of Liang et al. (ECCV 2020), head only, both with a set size that "
    "varies by class (the mean is given, NEC). AUC: mean refit accuracy over the k grid (the "
    "values a method reaches); k at "
    "95%: the fewest features per class whose refit accuracy reaches 95% of the dense head.")


def _at(v: dict, k: int, key: str):
    return v[key][v["k"].index(k)] if k in v["k"] else None


def _cell(v: dict, k: int) -> str:
    acc, ref, nec = _at(v, k, "acc"), _at(v, k, "acc_refit"), _at(v, k, "nec")
    if ref is None:
        return "not reached"
    size = "" if nec == k else f", NEC {num(nec)}"
    return f"{pct(ref)} ({pct(acc)}{size})"


def _best(methods: dict, k: int) -> tuple[str, float] | None:
    """The best method by refit accuracy at grid k, random excluded."""
    cands = {m: _at(v, k, "acc_refit") for m, v in methods.items() if m != "random"}
    cands = {m: a for m, a in cands.items() if a is not None}
    if not cands:
        return None
    m = max(cands, key=cands.get)
    return m, cands[m]


def winner_sentence(s: dict) -> str:
    """Who wins at small k (the smallest grid k and k = 5), by refit accuracy."""
    methods, ks = s["methods"], s["k_grid"]
    parts = []
    for k in dict.fromkeys([ks[0], 5]):
        if k in ks and (b := _best(methods, k)):
            rnd = _at(methods["random"], k, "acc_refit") if "random" in methods else None
            nec = _at(methods[b[0]], k, "nec")
            parts.append(f"at k = {k} **{b[0]}** ({pct(b[1])} with refit"
                         + (f", with {num(nec)} features per class on average" if nec != k
                            else "")
                         + (f"; random sets {pct(rnd)}" if rnd is not None else "") + ")")
    return ("The best selection " + " and ".join(parts) + "." if parts else
            "No method reached the smallest k of the grid.")


def equivalence_sentence(s: dict) -> str:
    e = s["equivalences"]
    if e["chain_tree_terminals"] and e["ald_upper_tail_rank"]:
        return ("`top_signed_weight` is also the blog's chain-tree terminal set and the ranking "
                "by ALD upper-tail probability: both give exactly its sets at every k on these "
                f"weights (checked in {e['ald_classes_checked']} classes), so it is one method, "
                "shown once.")
    return ("On these weights the chain-tree terminals "
            + ("match" if e["chain_tree_terminals"] else "do **not** match")
            + " `top_signed_weight`, and the ALD upper-tail ranking "
            + ("matches" if e["ald_upper_tail_rank"] else "does **not** match") + " it.")


def ald_sentence(s: dict) -> str:
    """What ALD adds beyond the weight order: its natural cut against top_signed_weight at the
    same mean k, and ALD-tail global pruning against magnitude."""
    cut = s["ald_natural_cut"]
    one = cut["one_sided"]
    diff = one["acc_refit"] - one["acc_refit_top_signed_same_k"]
    verdict = ("better than" if diff > 0 else "worse than" if diff < 0 else "the same as")
    same = s["equivalences"]["ald_upper_tail_rank"]
    text = (("Ranking by ALD adds nothing at a fixed k: it is the weight order. " if same else
             "Ranking by ALD differs from the weight order here (see above). ")
            + f"Its natural cut (upper-tail p < "
            f"{num(cut['p'])}) picks the number of features per class instead: "
            f"{num(one['mean_k'])} on average ({one['min_k']} to {one['max_k']}), with "
            f"{pct(one['acc_refit'])} refit accuracy, **{verdict}** `top_signed_weight` with "
            f"k = {one['k_top_signed_same_k']} for every class "
            f"({pct(one['acc_refit_top_signed_same_k'])}).")
    two = cut["two_sided"]
    text += (f" The two-sided cut (both tails, the blog's negative sub-class too) keeps "
             f"{num(two['mean_k'])} per class: {pct(two['acc_refit'])} refit against "
             f"{pct(two['acc_refit_top_abs_same_k'])} for `top_abs_weight` with k = "
             f"{two['k_top_signed_same_k']}.")
    g = s["global"]
    if "ald_tail" in g and "magnitude" in g:
        wins = sum(a > b for a, b in zip(g["ald_tail"]["acc_refit"], g["magnitude"]["acc_refit"]))
        n = len(g["magnitude"]["acc_refit"])
        text += (f" Pruning the whole matrix by ALD tail probability (each class scaled by its "
                 f"own fit) beats pruning by magnitude at {wins} of {n} kept fractions (refit).")
    return text


def elastic_sentence(s: dict) -> str:
    e = s["elastic_net"]
    if e is None:
        return ""
    sub = (f" on a seeded subsample of {e['n_rows']} of the {e['n_fit_rows']} fit rows"
           if e["subsampled"] else f" on all {e['n_rows']} fit rows")
    return (f"elastic_net (α = {num(e['alpha'])}, {e['n_lambda']} λ{sub}): the paper's rule, the "
            f"sparsest λ within {num(100 * e['select_within'])} points of the best validation "
            f"accuracy "
            f"({pct(e['best_val_acc'])}), keeps {num(e['selected_nec'])} features per class on "
            f"average, with {pct(e['selected_acc'])} test accuracy "
            f"({pct(e['selected_acc_refit'])} refit).")


def csg_sentence(s: dict) -> str:
    c = s["csg"]
    if not c["head_only"]:
        return ""
    jac = [j for j, k in zip(c["jaccard_vs_algorithm1"], s["k_grid"]) if k == 5 and j is not None]
    unreached = [k for k, a in zip(s["k_grid"], s["methods"]["csg"]["acc_refit"]) if a is None]
    return ("csg: head-only gates on the cached features; from the largest penalty to the "
            f"smallest, {num(min(c['nec_by_penalty']))} to {num(max(c['nec_by_penalty']))} "
            "features per class stay open"
            + (f" (grid k not reached: {', '.join(map(str, unreached))})" if unreached else "")
            + (f"; Jaccard with algorithm1's sets at k = 5: {num(jac[0])}" if jac else "")
            + ". The whole-network variant (backbone fine-tuned) "
            + ("is in the metrics." if c["whole_network"] is not None else "was not run.")
            )


def section_sparsify(inp: Inputs) -> list[str]:
    if not inp.sparsify_models:
        return ["Not run: `sparsify.models` is empty.", ""]
    lines = [INTRO, ""]
    for m in inp.sparsify_models:
        s = inp.json(f"metrics/{m}/sparsify.json")
        shown = [k for k in SHOWN_K if k in s["k_grid"]]
        lines += [f"### {m}", "",
                  f"Dense head: {pct(s['dense_acc'])} test accuracy ({pct(s['dense_refit_acc'])} "
                  f"refit), D = {s['feature_dim']}; "
                  f"{s['split']['n_fit']} training rows fit, {s['split']['n_val']} validate.", ""]
        rows = [[f"`{name}`", *[_cell(v, k) for k in shown], pct(v["auc"]), num(v["k_at_95"])]
                for name, v in s["methods"].items()]
        lines += table(["method", *[f"k = {k}: refit (no refit)" for k in shown], "AUC",
                        "k at 95%"], rows)
        lines += [winner_sentence(s) + " " + equivalence_sentence(s), "", ald_sentence(s), ""]
        for x in (elastic_sentence(s), csg_sentence(s)):
            lines += [x, ""] if x else []
        cut = s["ald_natural_cut"]
        lines += table(["ALD natural cut", "mean k (min-max)", "refit (no refit)",
                        "k for all classes", "top_signed_weight: refit (no refit)",
                        "top_abs_weight: refit (no refit)"],
                       [[name.replace("_", "-"), f"{num(c['mean_k'])} ({c['min_k']}-{c['max_k']})",
                         f"{pct(c['acc_refit'])} ({pct(c['acc'])})", str(c["k_top_signed_same_k"]),
                         f"{pct(c['acc_refit_top_signed_same_k'])} "
                         f"({pct(c['acc_top_signed_same_k'])})",
                         f"{pct(c['acc_refit_top_abs_same_k'])} ({pct(c['acc_top_abs_same_k'])})"]
                        for name, c in cut.items() if isinstance(c, dict)])
        g = s["global"]
        fractions = next(iter(g.values()))["fraction"] if g else []
        lines += table(["global pruning", *[f"keep {num(f)}: refit (no refit)" for f in fractions]],
                       [[f"`{name}`", *[f"{pct(r)} ({pct(a)})" for a, r in
                                        zip(v["acc"], v["acc_refit"])]] for name, v in g.items()])
        lines += figure(inp.png(f"plots/{m}/sparsify.png"),
                        f"{m}: test accuracy against the mean number of features kept per class, "
                        f"solid without refit, dashed with; random: ± 1 std over seeds; "
                        f"triangles: ALD's natural cuts.")
        lines += figure(inp.png(f"plots/{m}/global_pruning.png"),
                        f"{m}: test accuracy against the share of all FC weights kept, chosen by "
                        f"magnitude, by ALD tail probability or by contribution.")
    return lines
