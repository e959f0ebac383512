"""Ablations: metrics/<m>/ablate.json of each feature model, beside the paper's figures."""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import num, pct, table

# "Decomposing the Deep", ResNet20 on lossless CIFAR-10, standard-normal noise on the features
PAPER_RESNET20 = {"acc_original": 0.9117, "acc_noise_influential": 0.4897,
                  "acc_noise_noninfluential": 0.8224}
PAPER_ARCH = "cifar_resnet20"
PAPER_NOISE = "standard_normal"


def _ablation_row(v: dict) -> list[str]:
    return [pct(v["acc_noise_influential_per_class"]), pct(v["acc_noise_noninfluential_per_class"]),
            pct(v["acc_noise_random_per_class"]), pct(v["acc_noise_influential_union"]),
            pct(v["acc_noise_noninfluential_union"])]


ABLATION_HEADER = ["influential (per class)", "non-influential (per class)",
                   "random, same size (per class)", "influential union", "non-infl. union"]


def _paper_comparison(m: str, ab: dict) -> list[str]:
    """The paper's ResNet20 figures beside ours; only for models of the paper's arch."""
    if PAPER_NOISE not in ab["by_noise"]:
        return [f"The paper's noise (`{PAPER_NOISE}`) is not in `ablate.noise_modes`, so there "
                f"is no like-for-like comparison with its ResNet20 figures.", ""]
    ours = ab["by_noise"][PAPER_NOISE]
    p = PAPER_RESNET20
    return ([f"Against the paper (\"Decomposing the Deep\", ResNet20 on lossless CIFAR-10), "
             f"both with `{PAPER_NOISE}` noise on the per-class sets:", ""]
            + table(["", "original", "influential noised", "non-influential noised"],
                    [["paper", pct(p["acc_original"]), pct(p["acc_noise_influential"]),
                      pct(p["acc_noise_noninfluential"])],
                     [f"ours ({m})", pct(ours["acc_original"]),
                      pct(ours["acc_noise_influential_per_class"]),
                      pct(ours["acc_noise_noninfluential_per_class"])]]))


def section_ablations(inp: Inputs) -> list[str]:
    if not inp.feature_models:
        return ["No feature model (`feature_models` is empty): no ablation.", ""]
    docs = {m: inp.json(f"metrics/{m}/ablate.json") for m in inp.feature_models}
    lines = ["Test accuracy with noise on a feature set. Per-class sets are chosen by the "
             "image's true label (the paper's protocol): noising everything except I_c keeps "
             "only class-c evidence, so a non-influential score above the original (as with "
             "`zero`) is that leak, not a property of the features. Union: the union of all "
             "classes' sets, the same for every image.", ""]
    lines += table(["model", "noise", "original", *ABLATION_HEADER, "union size"],
                   [[m, f"`{ab['noise']}`", pct(ab["acc_original"]), *_ablation_row(ab),
                     str(ab["union_size"])] for m, ab in docs.items()])
    for m, ab in docs.items():
        lines += [f"### {m}", ""]
        if inp.archs[m] == PAPER_ARCH:
            lines += _paper_comparison(m, ab)
        lines += [f"By noise mode (original {pct(ab['acc_original'])}):", ""]
        lines += table(["noise", *ABLATION_HEADER],
                       [[f"`{k}`", *_ablation_row(v)] for k, v in sorted(ab["by_noise"].items())])
        lines += [f"Other ways to pick the same number of features per class, noise "
                  f"`{ab['noise']}`:", ""]
        lines += table(["method", "Jaccard vs Alg. 1", "decomposed acc", "damage when noised"],
                       [[k, num(v["jaccard_vs_algorithm1"]), pct(v["acc_decomposed"]),
                         pct(v["damage_per_class"])] for k, v in sorted(ab["methods"].items())])
    return lines
