"""The report's Markdown, one function per section. Every figure in it is read from a file.

Which files a section reads follows from the params, passed in as plain values (`Inputs`):
`models` (weight stages), `feature_models` (activation and decomposition stages),
`photo_models`, `depth_models` and `finetune_models`. A missing file or key raises FclensError
naming it: a section is never dropped silently. Only files written outside `dvc repro`
(`metrics/bench/`, `metrics/pipeline.json`) are optional, and their sections say when they are
absent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fclens.core.errors import FclensError
from fclens.report import banding, exemplars, faithfulness, sparsify
from fclens.report.fmt import figure, num, pct, slug, table

# "Decomposing the Deep", ResNet20 on lossless CIFAR-10, standard-normal noise on the features
PAPER_RESNET20 = {"acc_original": 0.9117, "acc_noise_influential": 0.4897,
                  "acc_noise_noninfluential": 0.8224}
PAPER_ARCH = "cifar_resnet20"
PAPER_NOISE = "standard_normal"

TIMING_DIR = "metrics/timing"  # <stage>@<item>.json, written by the stages
PIPELINE_JSON = "metrics/pipeline.json"  # benchmarks/repro_timed.py, after `dvc repro`
BENCH_DIR = "metrics/bench"  # `make bench`

DATA_NOTES = {
    "cifar10-jpeg": "the JPEG copy of CIFAR-10, not the lossless original. JPEG artefacts cost "
                    "checkpoints trained on lossless images accuracy, so their original accuracy "
                    "here is below the published one (see the paper row under Ablations).",
    "cifar10-python": "the official lossless CIFAR-10 (python pickles), the data the published "
                      "checkpoints were trained and tested on.",
    "image-folder": "an image folder (ImageFolder's convention: class = sorted folder name), "
                    "each image resized and cropped by the model's own eval transform.",
}
CAM_NAMES = {"gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++",
             "smooth_gradcampp": "Smooth Grad-CAM++"}


class Doc(dict):
    """A metrics JSON whose missing keys raise FclensError naming the file and the key."""

    def __init__(self, data: dict, path: str, prefix: str = ""):
        super().__init__({k: Doc(v, path, f"{prefix}{k}.") if isinstance(v, dict) else v
                          for k, v in data.items()})
        self.path, self.prefix = path, prefix

    def __missing__(self, key):
        raise FclensError(f"{self.path}: no key {self.prefix}{key}; rerun the stage that writes "
                          f"it (dvc repro)")


@dataclass(frozen=True)
class Inputs:
    """Where the outputs are (`root` holds metrics/ and plots/) and which models have them."""

    root: Path
    models: list[str]  # every model: weight stages
    archs: dict[str, str]  # model -> arch (params models.<m>.arch)
    feature_models: dict[str, str]  # model -> dataset: activation and decomposition stages
    photo_models: Sequence[str] = ()  # explain.photo_models
    depth_models: Sequence[str] = ()  # depth_study.models
    finetune_models: Sequence[str] = ()  # finetune.models
    sparsify_models: Sequence[str] = ()  # sparsify.models

    @classmethod
    def from_params(cls, root: str | Path, p) -> Inputs:
        """The model lists of a params.yaml (`fclens.params.Params`)."""
        return cls(Path(root), list(p.models), {m: s.arch for m, s in p.models.items()},
                   dict(p.feature_models), list(p.explain.photo_models),
                   list(p.depth_study.models), list(p.finetune.models),
                   list(p.sparsify.models))

    def json(self, rel: str) -> Doc:
        path = self.root / rel
        if not path.is_file():
            raise FclensError(f"{rel}: missing (the report reads it); run the stage that writes "
                              f"it (dvc repro)")
        try:
            return Doc(json.loads(path.read_text()), rel)
        except json.JSONDecodeError as e:
            raise FclensError(f"{rel}: not valid JSON ({e})") from e

    def png(self, rel: str) -> str:
        """The image's path as seen from report/ (../plots/...); it must exist."""
        if not (self.root / rel).is_file():
            raise FclensError(f"{rel}: missing (the report shows it); run the stage that "
                              f"writes it (dvc repro)")
        return f"../{rel}"

    def pngs(self, rel_dir: str) -> list[tuple[str, str]]:
        """(file stem, path from report/) of every PNG in a plot folder; at least one."""
        found = sorted((self.root / rel_dir).glob("*.png"))
        if not found:
            raise FclensError(f"{rel_dir}/: no PNG (the report shows them); run the stage that "
                              f"writes them (dvc repro)")
        return [(f.stem, f"../{rel_dir}/{f.name}") for f in found]


def _feature_datasets(inp: Inputs) -> list[str]:
    return list(dict.fromkeys(inp.feature_models.values()))


def section_data(inp: Inputs) -> list[str]:
    if not inp.feature_models:
        return ["No feature model (`feature_models` is empty), so no dataset was read.", ""]
    rows, notes = [], []
    for ds in _feature_datasets(inp):
        rel = f"metrics/data/{ds}.json"
        d = inp.json(rel)
        if d["format"] not in DATA_NOTES:
            raise FclensError(f"{rel}: format {d['format']!r}; expected one of "
                              f"{', '.join(DATA_NOTES)}")
        users = ", ".join(m for m, v in inp.feature_models.items() if v == ds)
        rows.append([ds, f"`{d['format']}`", f"`{d['source']}`", str(d["n_train"]),
                     str(d["n_test"]), str(d["n_classes"]), users])
        notes.append(f"- **{ds}** is {DATA_NOTES[d['format']]}")
    return (table(["dataset", "format", "source", "train", "test", "classes", "used by"], rows)
            + notes + [""])


def section_extraction(inp: Inputs) -> list[str]:
    if not inp.feature_models:
        return ["No feature model (`feature_models` is empty): no activations extracted.", ""]
    rows = []
    for m, ds in inp.feature_models.items():
        e = inp.json(f"metrics/{m}/extract.json")
        rows.append([m, ds, pct(e["acc_train"]), pct(e["acc_test"]), str(e["feature_dim"]),
                     e["device"], num(e["logit_max_abs_err"])])
    return (["Penultimate features: the global-pooled, post-ReLU input of the FC layer. The last "
             "column checks them: the FC layer applied to them must give the model's own "
             "logits.", ""]
            + table(["model", "dataset", "acc train", "acc test", "D", "device",
                     "max abs(FC(features) - logits)"], rows))


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


CHAIN_NOTE = (
    "**The chain terminals are the class's top weights.** A split sends the weights at or above "
    "the node's mean to '+' and the rest to '-', so every '+' weight is larger than every '-' "
    "weight of the node. Following '+' from the root keeps the largest weights at every step: "
    "the terminal of the '+' chain (path `+…+`, `terminal+` under Visual explanations) is "
    "exactly the class's n largest weights, n being its size, and reading features down the "
    "'+' chain (`trees.chain_rank`) is a descending sort by weight. So the blog's chain "
    "terminals are the class's top-weighted features, and the '-' chain's terminal its most "
    "negative ones: the trees select nothing that sorting the weight row would not.")


TREE_CAPTIONS = {
    "sorted_by_branch": "each plotted class's weights in ascending order, coloured by how deep "
                        "they stay on the '+' (red) or '-' (blue) chain.",
}


def section_trees(inp: Inputs) -> list[str]:
    rows = []
    for m in inp.models:
        t = inp.json(f"metrics/{m}/trees.json")
        rows.append([m, t["mode"], str(t["min_size"]), str(t["n_classes"]), num(t["mean_depth"]),
                     num(t["mean_nodes_per_class"]), num(t["mean_terminals_per_class"]),
                     num(t["mean_terminal_size"])])
    lines = (["Each class's weight row split recursively at the mean (the blog's \"terminal "
              "neurons\"), per `trees.mode` and `trees.min_size`.", ""]
             + table(["model", "mode", "min size", "classes", "mean depth", "nodes per class",
                      "terminals per class", "mean terminal size"], rows)
             + [CHAIN_NOTE, ""])
    for m in inp.models:
        for stem, src in inp.pngs(f"plots/{m}/trees"):
            lines += figure(src, f"{m}: {TREE_CAPTIONS.get(stem, stem)}")
    return lines


def section_decomposition(inp: Inputs) -> list[str]:
    if not inp.feature_models:
        return ["No feature model (`feature_models` is empty): nothing decomposed.", ""]
    rows = []
    for m in inp.feature_models:
        d = inp.json(f"metrics/{m}/decompose.json")
        rows.append([m, f"{d['k1']}/{d['k2']}", pct(d["acc_original"]), pct(d["acc_decomposed"]),
                     pct(d["acc_decomposed_retrained"]), num(d["rel_acc"]),
                     num(d["rel_acc_retrained"]), str(d["union_size"])])
    return (["The decomposed head keeps, for class c, only its influential features I_c: "
             "`logit_c = x[I_c]·W[c, I_c] + b_c`, with the original weights and retrained on the "
             "training features (DVCLive curves: `dvc plots show`). Relative accuracy is "
             "decomposed / original.", ""]
            + table(["model", "k1/k2", "original", "decomposed", "decomposed retrained",
                     "rel acc", "rel acc retrained", "union size"], rows))


def section_finetune(inp: Inputs) -> list[str]:
    if not inp.finetune_models:
        return ["Not run: `finetune.models` is empty. It trains the whole network under the "
                "decomposed head (the paper's code), minutes per epoch on a CPU.", ""]
    rows = []
    for m in inp.finetune_models:
        f = inp.json(f"metrics/{m}/finetune.json")
        loss = f["finetune_train_loss"]
        rows.append([m, str(f["epochs"]), pct(f["acc_decomposed_finetuned"]),
                     num(f["rel_acc_finetuned"]),
                     " → ".join(num(x) for x in loss) if loss else "n/a"])
    return (["The whole network trained under the decomposed head, the influential sets fixed "
             "(the paper's code). Without augmentation, on the same training images: compare "
             "with a fine-tuned full network before reading a gain as the decomposition's.", ""]
            + table(["model", "epochs", "decomposed, fine-tuned", "rel acc fine-tuned",
                     "train loss by epoch"], rows))


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


def depth_verdict(rel_by_depth: list) -> str:
    if any(r is None for r in rel_by_depth):
        return "is undefined for some models (original accuracy 0), so it cannot say."
    if len(rel_by_depth) < 2:
        return "cannot be judged from fewer than two depths."
    if all(b >= a for a, b in zip(rel_by_depth, rel_by_depth[1:])):
        return "rises monotonically with depth."
    return "does **not** rise monotonically with depth."


def section_depth(inp: Inputs) -> list[str]:
    dep = inp.json("metrics/depth.json")
    models = dep["models"]
    if sorted(models) != sorted(inp.depth_models):
        raise FclensError(f"metrics/depth.json: has models {sorted(models)}, params "
                          f"depth_study.models has {sorted(inp.depth_models)}; rerun depth_study "
                          f"(dvc repro)")
    rows = sorted(models.values(), key=lambda v: v["depth"])
    lines = table(["model", "depth", "original", "rel acc", "rel acc retrained",
                   "damage influential", "damage non-influential"],
                  [[v["model"], str(v["depth"]), pct(v["acc_original"]), num(v["rel_acc"]),
                    num(v["rel_acc_retrained"]), pct(v["damage_influential"]),
                    pct(v["damage_noninfluential"])] for v in rows])
    lines += ["The paper claims deeper models decompose better; here relative accuracy "
              + depth_verdict([v["rel_acc"] for v in rows]) + " Damage: accuracy lost when the "
              "set is noised (per-class sets, the mode of `ablate.noise`).", ""]
    return lines + figure(inp.png("plots/depth.png"),
                          "relative accuracy (left) and ablation damage (right) against depth.")


def section_k_grid(inp: Inputs) -> list[str]:
    if not inp.feature_models:
        return ["No feature model (`feature_models` is empty): no grid.", ""]
    lines = ["Decomposed accuracy without retraining for every k1 (top-k1 features per image) "
             "and k2 (features kept per class) of `decompose.grid`.", ""]
    for m in inp.feature_models:
        g = inp.json(f"metrics/{m}/k_grid.json")
        k1 = g["k1"][-1]
        lines += [f"### {m}", ""]
        lines += table(["original", "best decomposed", "best k1/k2",
                        f"k1 = {k1}, k2 = " + ", ".join(str(k) for k in g["k2"])],
                       [[pct(g["acc_original"]), pct(g["best_acc_decomposed"]),
                         f"{g['best_k1']}/{g['best_k2']}",
                         " ".join(pct(g["acc_decomposed"][f"k1={k1}"][f"k2={k}"])
                                  for k in g["k2"])]])
        lines += figure(inp.png(f"plots/{m}/k_grid.png"),
                        f"{m}: decomposed accuracy (no retraining) over k1 x k2.")
    return lines


def section_explanations(inp: Inputs) -> list[str]:
    kinds = {**{m: "test images" for m in inp.feature_models},
             **{m: "photographs" for m in inp.photo_models}}
    if not kinds:
        return ["No model to explain (`feature_models` and `explain.photo_models` are empty).",
                ""]
    docs = {m: inp.json(f"metrics/{m}/explain.json") for m in kinds}
    lines = ["Targets are linear in the pooled features: the class logit, and unweighted sums of "
             "the split tree's terminal neurons, its two root branches and the Algorithm-1 "
             "indices. Maps are taken at the map that feeds the global pooling. The last-but-one "
             "column checks the implementation on the real model: Grad-CAM of a logit must equal "
             "ReLU(CAM)/(h·w) for a GAP + linear head.", ""]
    lines += table(["model", "images", "maps", "device", "max rel. err Grad-CAM vs CAM",
                    "targets"],
                   [[f"{m} ({kinds[m]})", str(e["n_images"]), str(e["n_maps"]), e["device"],
                     num(e["gradcam_vs_cam_max_rel_err"]), ", ".join(e["targets"])]
                    for m, e in docs.items()])
    for m, e in docs.items():
        lines += [f"### {m}", ""]
        for mth in e["methods"]:
            lines += figure(inp.png(f"plots/explain/{m}/{mth}.png"),
                            f"{m}, {CAM_NAMES.get(mth, mth)} on {kinds[m]}: each row an image, "
                            f"then one map per target ({', '.join(e['targets'])}).")
    return lines


PICTURE_CAPTIONS = {
    "first_layer_filters": "first-layer convolution filters.",
    "weight_banding": "weight banding: per-neuron NMF of the most horizontally banded spatial "
                      "convolution's weights (Distill 2021; its score in the title).",
    "banding_by_depth": "banding score (share of kernel energy in row / column means) of every "
                        "spatial convolution, by depth; the dashed line is chance.",
    "fc_matrix": "the FC matrix, classes clustered; left: columns by mean split-tree rank, "
                 "right: each class's row in its own split-tree order, i.e. sorted by weight.",
}


def section_pictures(inp: Inputs) -> list[str]:
    lines = []
    order = list(PICTURE_CAPTIONS)
    for m in inp.models:
        lines += [f"### {m}", ""]
        pics = sorted(inp.pngs(f"plots/pictures/{m}"),
                      key=lambda p: (order.index(p[0]) if p[0] in order else len(order), p[0]))
        for stem, src in pics:
            lines += figure(src, f"{m}: {PICTURE_CAPTIONS.get(stem, stem)}")
    return lines


def section_timing(inp: Inputs) -> list[str]:
    rows = []
    for m in inp.feature_models:
        t = inp.json(f"{TIMING_DIR}/extract_activations@{m}.json")
        rows.append([f"extract_activations@{m}", f"{num(t['images_per_s'], '.0f')} images/s"])
    for m in inp.models:
        t = inp.json(f"{TIMING_DIR}/fit_ald@{m}.json")
        rows.append([f"fit_ald@{m}", f"{num(t['fit_seconds'])} s for all classes and families"])
    for m in inp.sparsify_models:
        t = inp.json(f"{TIMING_DIR}/sparsify@{m}.json")
        rows.append([f"sparsify@{m}", f"{num(t['seconds'], '.0f')} s for all methods"])
    for stage, names in (("explain_dataset", list(inp.feature_models)),
                         ("explain_photos", list(inp.photo_models))):
        for m in names:
            t = inp.json(f"{TIMING_DIR}/{stage}@{m}.json")
            by = ", ".join(f"{CAM_NAMES.get(k, k)} {num(v)}"
                           for k, v in sorted(t["seconds_per_map_by_method"].items()))
            rows.append([f"{stage}@{m}", f"{num(t['seconds_per_map'])} s/map ({by})"])
    lines = [f"Wall-clock figures of the last run of each stage (`{TIMING_DIR}/`), on the "
             f"machine that ran it.", ""] + table(["stage", "figure"], rows)
    pipe_path = inp.root / PIPELINE_JSON
    if not pipe_path.is_file():
        return lines + [f"No `{PIPELINE_JSON}` yet: `make repro` writes it (stage times and a "
                        f"no-op `dvc repro`).", ""]
    p = inp.json(PIPELINE_JSON)
    by_stage: dict[str, list[float]] = {}
    for name, s in p["seconds_by_stage"].items():
        by_stage.setdefault(name.split("@")[0], []).append(s)
    lines += [f"Whole pipeline (`{PIPELINE_JSON}`, from the `make repro` before this report; "
              f"written after `dvc repro`, so not a dependency of it): {p['n_stages']} stages, "
              f"{num(sum(sum(v) for v in by_stage.values()), '.0f')} s of stage time, a no-op "
              f"`dvc repro` in {num(p['repro_noop_seconds'])} s.", ""]
    return lines + table(["stage", "runs", "seconds"],
                         [[k, str(len(v)), num(sum(v), ".1f")] for k, v in
                          sorted(by_stage.items(), key=lambda kv: -sum(kv[1]))])


def section_bench(inp: Inputs) -> list[str]:
    files = sorted((inp.root / BENCH_DIR).glob("*.json"))
    if not files:
        return [f"No benchmark figures yet: `make bench` writes them to `{BENCH_DIR}/`.", ""]
    rows = []
    for f in files:
        b = inp.json(f"{BENCH_DIR}/{f.name}")
        rows += [[f"`{f.name}`", k, num(v)] for k, v in b.items()
                 if isinstance(v, int | float) and not isinstance(v, bool)]
    return ([f"`make bench` (`{BENCH_DIR}/`), one run on one machine; see the project README "
             f"for what each figure measures.", ""] + table(["file", "figure", "value"], rows)
            + _scale_table(inp))


def _scale_table(inp: Inputs) -> list[str]:
    """benchmarks/bench_scale.py: the streamed analyses' cost at each table size."""
    if not (inp.root / BENCH_DIR / "scale.json").exists():
        return []
    s = inp.json(f"{BENCH_DIR}/scale.json")
    rows = [[f"{n:,}", num(r, ".0f"), num(t, ".1f"), num(spm, ".0f")] for n, r, t, spm in
            zip(s["n_rows"], s["peak_rss_mb"], s["seconds"], s["seconds_per_million_rows"])]
    return ["", f"Streamed analyses (Algorithm 1, decomposed accuracy, one ablation) on "
            f"synthetic tables of D = {s['dim']:,}, C = {s['n_classes']:,} "
            f"(`benchmarks/bench_scale.py`): peak memory is set by the batch "
            f"({s['batch_rows']:,} rows), not by N.", ""] + table(
        ["rows", "peak RSS (MB)", "seconds", "seconds per million rows"], rows)


SECTIONS: list[tuple[str, Callable[[Inputs], list[str]]]] = [
    ("Data", section_data),
    ("Extraction", section_extraction),
    ("ALD analysis of FC weights", section_ald),
    ("Split trees and terminal neurons", section_trees),
    ("Decomposition (Algorithm 1)", section_decomposition),
    ("Whole-network fine-tuning", section_finetune),
    ("Ablations", section_ablations),
    ("Depth study", section_depth),
    ("k1 x k2 grid", section_k_grid),
    ("Sparse heads", sparsify.section_sparsify),
    ("Visual explanations", section_explanations),
    ("Dataset exemplars", exemplars.section_exemplars),
    ("Faithfulness and sanity of the maps", faithfulness.section_faithfulness),
    ("Parameters as pictures", section_pictures),
    ("Weight banding", banding.section_banding),
    ("Hyperplanes", banding.section_hyperplanes),
    ("Timing", section_timing),
    ("Benchmarks", section_bench),
]


def build_markdown(inp: Inputs) -> str:
    """The whole report; every section runs (and checks its inputs) before anything is joined."""
    bodies = [(title, fn(inp)) for title, fn in SECTIONS]
    lines = ["# fclens report", "",
             "Generated by the `report` stage from `metrics/` and `plots/`; do not edit. Every "
             "figure in it is read from those files.", "", "Contents:", ""]
    lines += [f"- [{title}](#{slug(title)})" for title, _ in bodies] + [""]
    for title, body in bodies:
        lines += [f"## {title}", "", *body]
    return "\n".join(lines).rstrip() + "\n"
