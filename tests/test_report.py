"""The report: its sections on a tiny synthetic metrics tree, its HTML, its DVC wiring, and the
committed report/index.html opened in headless Chromium (skipped where Chromium is absent)."""

import dataclasses
import html as html_lib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import ROOT
from fclens.core.errors import FclensError
from fclens.core.io import write_json
from fclens.report.depth import GEOMETRY_KEYS, depth_rows, geometry_series
from fclens.report.doc import Inputs
from fclens.report.fmt import slug
from fclens.report.render import render_html
from fclens.report.sections import SECTIONS, build_markdown
from fclens.report.sections.ablations import PAPER_RESNET20, section_ablations
from fclens.report.sections.bench import section_bench
from fclens.report.sections.data import section_data
from fclens.report.sections.depth import section_depth
from fclens.report.sections.finetune import section_finetune
from fclens.report.sections.geometry import section_geometry
from fclens.report.sections.timing import PIPELINE_JSON, section_timing
from fclens.report.sections.trees import section_trees

# net_a has the paper's arch, net_b a different one; photo is explained on photographs only.
ARCHS = {"net_a": "cifar_resnet20", "net_b": "cifar_resnet32", "photo": "tf_efficientnet_lite0"}
FEATURE = {"net_a": "tiny", "net_b": "tiny"}
GEO_SPLITS = ("train", "test")
NOISES = ("feature_stats", "standard_normal")


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def _ablation(acc: float) -> dict:
    return {"acc_original": acc, "acc_noise_influential_per_class": 0.3111,
            "acc_noise_noninfluential_per_class": 0.7222, "acc_noise_random_per_class": 0.7333,
            "acc_noise_influential_union": 0.3444, "acc_noise_noninfluential_union": 0.6555,
            "union_size": 7}


def make_tree(root: Path, fmt: str = "cifar10-jpeg", archs: dict = ARCHS,
              noises=NOISES, finetune=()) -> Inputs:
    """Every file the report reads, for two feature models and one photo model."""
    m = root / "metrics"
    write_json(m / "data/tiny.json", {"format": fmt, "source": "/somewhere/tiny.tar.gz",
                                      "n_train": 18, "n_test": 6, "n_classes": 3})
    for i, name in enumerate(archs):
        write_json(m / name / "ald.json", {
            "aic_win_rate": {"gaussian": 0.6, "laplace": 0.7, "student_t": 0.4, "logistic": 0.5},
            "best_family_counts": {"ald": 2, "gaussian": 1, "laplace": 0, "logistic": 0,
                                   "student_t": 0},
            "n_classes": 3, "n_degenerate": 0, "n_boundary": 0, "lr_test_reject_frac": 0.5,
            "r2_line_median": 0.8123, "kappa_median": 0.5432 + i, "frac_kappa_lt_1": 1.0,
            "ks_median": 0.07})
        write_json(m / name / "trees.json", {"mode": "chain", "min_size": 20, "n_classes": 3,
                                             "mean_depth": 2.0, "mean_nodes_per_class": 7.0,
                                             "mean_terminals_per_class": 2.0,
                                             "mean_terminal_size": 13.5})
        write_json(m / f"timing/fit_ald@{name}.json", {"fit_seconds": 0.0123})
        _png(root / f"plots/{name}/ald/classes.png", i)
        _png(root / f"plots/{name}/ald/kappa.png", i + 10)
        _png(root / f"plots/{name}/trees/sorted_by_branch.png", i + 20)
        for kind in ("first_layer_filters", "weight_banding", "fc_matrix"):
            _png(root / f"plots/pictures/{name}/{kind}.png", i + 30)
    explained = {**{n: "explain_dataset" for n in FEATURE}, "photo": "explain_photos"}
    for i, (name, stage) in enumerate(explained.items()):
        targets = ["logit", "terminal+"] + (["influential"] if name in FEATURE else [])
        write_json(m / name / "explain.json", {
            "n_images": 2, "n_maps": 8, "device": "cpu", "gradcam_vs_cam_max_rel_err": 1.5e-7,
            "targets": targets, "methods": ["gradcampp", "smooth_gradcampp"]})
        write_json(m / f"timing/{stage}@{name}.json", {
            "seconds_per_map": 0.0456, "seconds_per_map_by_method": {"gradcampp": 0.01,
                                                                     "smooth_gradcampp": 0.08}})
        for mth in ("gradcampp", "smooth_gradcampp"):
            _png(root / f"plots/explain/{name}/{mth}.png", i + 40)
    depth = {}
    for i, name in enumerate(FEATURE):
        acc = 0.81 + i / 100
        write_json(m / name / "extract.json", {"acc_train": 0.9, "acc_test": acc,
                                               "feature_dim": 64, "device": "cpu",
                                               "logit_max_abs_err": 8e-6})
        write_json(m / f"timing/extract_activations@{name}.json", {"images_per_s": 1234.5})
        write_json(m / name / "decompose.json", {
            "k1": 5, "k2": 5, "acc_original": acc, "acc_decomposed": 0.7523,
            "acc_decomposed_retrained": 0.8022, "rel_acc": 0.9284 + i / 100,
            "rel_acc_retrained": 0.99, "union_size": 7})
        ab = _ablation(acc)
        ab.update(noise=noises[0], by_noise={k: _ablation(acc) for k in noises},
                  damage_influential_per_class=0.117, damage_noninfluential_per_class=0.295,
                  methods={"algorithm1": {"jaccard_vs_algorithm1": 1.0, "acc_decomposed": 0.75,
                                          "damage_per_class": 0.11}})
        write_json(m / name / "ablate.json", ab)
        write_json(m / name / "k_grid.json", {
            "acc_original": acc, "best_acc_decomposed": 0.7996, "best_k1": 2, "best_k2": 1,
            "k1": [1, 2], "k2": [1, 2],
            "acc_decomposed": {f"k1={a}": {f"k2={b}": 0.5 + a / 10 + b / 100 for b in (1, 2)}
                               for a in (1, 2)}})
        _png(root / f"plots/{name}/k_grid.png", i + 50)
        geo = {s: {"n_images": 18, "nc1": 0.53 + i, "nc2_norm_cv_means": 0.09,
                   "nc2_cos_std_means": 0.17, "nc2_cos_shift_means": 0.1475,
                   "nc2_norm_cv_w": 0.034, "nc2_cos_std_w": 0.10, "nc2_cos_shift_w": 0.0824,
                   "nc3": 0.1002, "nc4": 0.0476, "ncc_acc": 0.7531 + i / 10,
                   "control_shuffled_labels": {"nc1": 71.2, "ncc_acc": 0.3412}}
               for s in GEO_SPLITS}
        write_json(m / name / "geometry.json", {"n_classes": 3, **geo, "weights": {}})
        depth[name] = {"model": name, "depth": 20 + 12 * i, "acc_original": acc,
                       "rel_acc": 0.9284 + i / 100, "rel_acc_retrained": 0.99,
                       "damage_influential": 0.117, "damage_noninfluential": 0.295,
                       "geometry": geo}
    for name in finetune:
        write_json(m / name / "finetune.json", {"acc_decomposed_finetuned": 0.8567,
                                                "rel_acc_finetuned": 1.01, "epochs": 2,
                                                "finetune_train_loss": [0.9, 0.61]})
    write_json(m / "depth.json", {"models": depth})
    _png(root / "plots/depth.png", 99)
    _png(root / "plots/geometry_depth.png", 98)
    write_json(m / "photo/geometry.json", {"n_classes": 20, "weights": {
        "nc2_norm_cv_w": 0.0646, "nc2_cos_std_w": 0.0361, "nc2_cos_shift_w": 0.0257}})
    _explanation_checks(root, list(archs))
    write_json(m / "explorer.json", {"n_models": 3, "n_class_pages": 26, "n_feature_pages": 1408,
                                     "n_images": 42, "total_bytes": 3_456_789,
                                     "max_class_page_bytes": 23_456, "max_feature_page_bytes": 9,
                                     "models": ["net_a", "net_b", "photo"]})
    return Inputs(root=root, models=list(archs), archs=dict(archs), feature_models=dict(FEATURE),
                  photo_models=["photo"], depth_models=list(FEATURE),
                  finetune_models=list(finetune), geometry_weight_models=["photo"])


def _explanation_checks(root: Path, models: list[str]) -> None:
    """Inputs of the exemplar, faithfulness, banding and hyperplane sections."""
    from test_banding import make_banding_tree
    from test_faithfulness import _report_json

    make_banding_tree(root, models)
    src = {"selectivity_median": 0.4, "purity_at_9_median": 0.5}
    for i, name in enumerate(FEATURE):
        write_json(root / f"metrics/{name}/exemplars.json", {
            "n_classes": 3, "n_features": 12, "n_top": 9, "selectivity_median": 0.4208,
            "purity_at_9_median": 0.5556, "classes_pictured": [0, 2],
            "by_source": {"influential": src, "terminal+": src}})
        for f in ("exemplars", "activations"):
            _png(root / f"plots/exemplars/{name}/{f}.png", i + 60)
    for i, name in enumerate([*FEATURE, "photo"]):
        write_json(root / f"metrics/{name}/faithfulness.json", _report_json(0.01))
        _png(root / f"plots/faithfulness/{name}.png", i + 70)


def _sections(md: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", md, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def _subsections(text: str) -> dict[str, str]:
    parts = re.split(r"^### (.+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


# --- the Markdown ---------------------------------------------------------------------------

def test_every_section_present_with_content_and_linked_from_the_contents(tmp_path):
    md = build_markdown(make_tree(tmp_path))
    secs = _sections(md)
    assert list(secs) == [title for title, _ in SECTIONS]
    for title, body in secs.items():
        assert body.strip(), title
        assert f"- [{title}](#{slug(title)})" in md
    assert "0.543" in secs["ALD analysis of FC weights"]  # kappa_median of net_a, from its file
    assert "1234 images/s" in secs["Timing"] and "0.0123 s" in secs["Timing"]
    assert "0.0456 s/map" in secs["Timing"]
    for name in ("net_a", "net_b", "photo"):  # every model's figures, each with its caption
        assert f"](../plots/pictures/{name}/fc_matrix.png)\\\n*{name}: " in md
        assert f"../plots/explain/{name}/smooth_gradcampp.png" in md
    # a metric table just above its figure
    grid = _subsections(secs["k1 x k2 grid"])["net_b"]
    assert grid.index("| original |") < grid.index("../plots/net_b/k_grid.png")


@pytest.mark.parametrize("rel", [
    "metrics/data/tiny.json", "metrics/net_b/extract.json", "metrics/photo/ald.json",
    "metrics/photo/trees.json", "metrics/net_a/decompose.json", "metrics/net_b/ablate.json",
    "metrics/depth.json", "metrics/net_a/k_grid.json", "metrics/photo/explain.json",
    "metrics/timing/extract_activations@net_a.json", "metrics/timing/fit_ald@photo.json",
    "metrics/timing/explain_photos@photo.json", "plots/depth.png", "plots/net_b/k_grid.png",
    "plots/explain/net_a/gradcampp.png",
])
def test_a_missing_input_file_fails_naming_it(tmp_path, rel):
    inp = make_tree(tmp_path)
    (tmp_path / rel).unlink()
    with pytest.raises(FclensError, match=re.escape(rel)):
        build_markdown(inp)


def test_an_empty_plot_folder_fails_naming_it(tmp_path):
    inp = make_tree(tmp_path)
    shutil.rmtree(tmp_path / "plots/pictures/net_b")
    with pytest.raises(FclensError, match="plots/pictures/net_b"):
        build_markdown(inp)


def test_a_missing_key_fails_naming_file_and_key(tmp_path):
    inp = make_tree(tmp_path)
    f = tmp_path / "metrics/net_b/ablate.json"
    ab = json.loads(f.read_text())
    del ab["by_noise"]["feature_stats"]["acc_noise_random_per_class"]
    write_json(f, ab)
    with pytest.raises(FclensError, match=r"metrics/net_b/ablate\.json: no key "
                                          r"by_noise\.feature_stats\.acc_noise_random_per_class"):
        section_ablations(inp)


@pytest.mark.parametrize("fmt", ["cifar10-python", "image-folder"])
def test_no_jpeg_claim_unless_the_data_is_the_jpeg_copy(tmp_path, fmt):
    md = build_markdown(make_tree(tmp_path, fmt=fmt))
    assert "JPEG" not in md and f"`{fmt}`" in md and "/somewhere/tiny.tar.gz" in md


def test_jpeg_copy_is_said_when_it_is_the_jpeg_copy(tmp_path):
    text = "\n".join(section_data(make_tree(tmp_path, fmt="cifar10-jpeg")))
    assert "JPEG copy of CIFAR-10" in text


def test_unknown_data_format_fails(tmp_path):
    with pytest.raises(FclensError, match="metrics/data/tiny.json: format 'cifar100'"):
        section_data(make_tree(tmp_path, fmt="cifar100"))


def test_paper_row_only_beside_models_of_the_papers_arch(tmp_path):
    subs = _subsections("\n".join(section_ablations(make_tree(tmp_path))))
    paper = f"| paper | {PAPER_RESNET20['acc_original'] * 100:.2f}% | 48.97% | 82.24% |"
    assert paper in subs["net_a"] and "| ours (net_a) | 81.00% | 31.11% | 72.22% |" in subs["net_a"]
    assert "paper" not in subs["net_b"].lower() and "48.97%" not in subs["net_b"]
    # the arch decides, not the name: a model called cifar_resnet20 of another arch gets no row
    archs = {"net_a": "cifar_resnet56", "net_b": "cifar_resnet32", "photo": "x"}
    text = "\n".join(section_ablations(make_tree(tmp_path / "other", archs=archs)))
    assert "48.97%" not in text


def test_paper_comparison_says_when_its_noise_was_not_run(tmp_path):
    subs = _subsections("\n".join(section_ablations(make_tree(tmp_path, noises=("zero",)))))
    assert "no like-for-like comparison" in subs["net_a"] and "48.97%" not in subs["net_a"]


def test_chain_terminals_are_said_to_be_the_top_weights(tmp_path):
    text = " ".join(section_trees(make_tree(tmp_path)))
    assert "chain terminals are the class's top weights" in text
    assert "descending sort by weight" in text


def test_finetune_section(tmp_path):
    assert "Not run: `finetune.models` is empty" in " ".join(
        section_finetune(make_tree(tmp_path)))
    inp = make_tree(tmp_path / "ft", finetune=["net_b"])
    text = "\n".join(section_finetune(inp))
    assert "| net_b | 2 | 85.67% | 1.01 | 0.9 → 0.61 |" in text
    (tmp_path / "ft/metrics/net_b/finetune.json").unlink()
    with pytest.raises(FclensError, match="metrics/net_b/finetune.json"):
        section_finetune(inp)


def test_depth_section_rejects_a_stale_depth_json(tmp_path):
    inp = make_tree(tmp_path)
    text = "\n".join(section_depth(inp))
    assert "**not**" not in text and "rises monotonically with depth" in text
    stale = dataclasses.replace(inp, depth_models=["net_a"])
    with pytest.raises(FclensError, match="metrics/depth.json: has models"):
        section_depth(stale)


def test_files_written_outside_dvc_repro_are_optional_and_said_so(tmp_path):
    inp = make_tree(tmp_path)
    assert "No `metrics/pipeline.json` yet" in " ".join(section_timing(inp))
    assert "No benchmark figures yet" in " ".join(section_bench(inp))
    write_json(tmp_path / PIPELINE_JSON, {"n_stages": 48, "repro_noop_seconds": 4.34,
                                          "seconds_by_stage": {"fit_ald@a": 1.5,
                                                               "fit_ald@b": 2.0, "report": 3.0}})
    write_json(tmp_path / "metrics/bench/ald.json", {"speedup_vs_scipy": 289.0, "note": "x"})
    timing = "\n".join(section_timing(inp))
    assert "48 stages" in timing and "4.34 s" in timing and "| fit_ald | 2 | 3.5 |" in timing
    assert "| `ald.json` | speedup_vs_scipy | 289 |" in "\n".join(section_bench(inp))


# --- the HTML ---------------------------------------------------------------------------------

def test_html_has_anchored_headings_figures_and_no_raw_markdown(tmp_path):
    md = build_markdown(make_tree(tmp_path))
    html = render_html(md)
    ids = set(re.findall(r'<h[1-6] id="([^"]+)"', html))
    links = re.findall(r'<a href="#([^"]+)"', html)
    assert links and set(links) <= ids
    assert len(ids) == len(re.findall(r"<h[1-6] ", html))  # unique ids
    assert html.count("<figure>") == html.count("<figcaption>") == md.count("](../plots/")
    assert '<img src="../plots/depth.png"' in html
    text = re.sub(r"<[^>]+>", "", html)
    assert "**" not in text and "`" not in text and "](../" not in text
    assert "<table>" in html and "<code>standard_normal</code>" in html


# --- the depth study --------------------------------------------------------------------------

def test_depth_rows_sorted_by_depth_and_strict(tmp_path):
    make_tree(tmp_path)
    rows = depth_rows(tmp_path / "metrics", ["net_b", "net_a"],
                      {"net_a": "cifar_resnet20", "net_b": "cifar_resnet32"})
    assert [r["model"] for r in rows] == ["net_a", "net_b"] and rows[1]["depth"] == 32
    with pytest.raises(FclensError, match="needs cifar_resnet<depth>"):
        depth_rows(tmp_path / "metrics", ["net_a"], {"net_a": "resnet18"})
    assert rows[0]["geometry"]["test"]["ncc_acc"] == 0.7531
    assert geometry_series({"models": {r["model"]: r for r in rows}}) == (
        [20, 32], {k: {s: [r["geometry"][s][k] for r in rows] for s in GEO_SPLITS}
                   for k in GEOMETRY_KEYS})
    geo = json.loads((tmp_path / "metrics/net_a/geometry.json").read_text())
    del geo["test"]["nc3"]
    write_json(tmp_path / "metrics/net_a/geometry.json", geo)
    with pytest.raises(FclensError, match=r"net_a/geometry.json: no key test.nc3"):
        depth_rows(tmp_path / "metrics", ["net_a"], {"net_a": "cifar_resnet20"})
    (tmp_path / "metrics/net_b/ablate.json").unlink()
    with pytest.raises(FclensError, match="net_b/ablate.json"):
        depth_rows(tmp_path / "metrics", ["net_b"], {"net_b": "cifar_resnet32"})


def test_geometry_section_says_where_the_nearest_centre_wins(tmp_path):
    inp = make_tree(tmp_path)
    text = "\n".join(section_geometry(inp))
    # net_a: nearest centre 75.31% against the head's 90% (train) and 81% (test); net_b wins
    # on test: 85.31% against 82%
    assert "net_a, test: the nearest-class-centre rule (75.31%) loses to the trained head " \
           "(81.00%), -5.69 points." in text
    assert "net_b, test: the nearest-class-centre rule (85.31%) beats the trained head " \
           "(82.00%), +3.31 points." in text
    assert "| photo | 0.0646 | 0.0361 | 0.0257 |" in text
    assert "| net_b | test | 1.53 | 71.2 |" in text and "| 34.12% | 81.00% |" in text  # control
    assert "../plots/geometry_depth.png" in text


def test_depth_study_deps_cover_the_params_models():
    """dvc.yaml lists one metrics/<m> folder per depth_study.models entry: DVC cannot turn the
    param into deps, so a model added to the params without its folder would read files DVC does
    not track there."""
    models = yaml.safe_load((ROOT / "params.yaml").read_text())["depth_study"]["models"]
    declared = {str(d).rstrip("/") for d in _stage("depth_study")["deps"]}
    missing = [f"metrics/{m}" for m in models if f"metrics/{m}" not in declared]
    assert not missing, f"dvc.yaml stages.depth_study.deps: add {', '.join(missing)}"


# --- DVC wiring: directory deps, no cycle, no rerun for files written outside the DAG --------

def _stage(name: str) -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][name]


def _data_deps(stage: dict) -> list[str]:
    return [d for d in stage["deps"] if not d.startswith(("src/", "stages/"))]


def test_dvc_wiring_of_report_and_depth_study(tmp_path):
    """A throwaway repo with the real report / depth_study data deps and .dvcignore: the report
    runs last, depth_study has no cycle, and files written after `dvc repro` rerun nothing."""
    report_deps, depth_deps = _data_deps(_stage("report")), _data_deps(_stage("depth_study"))
    assert report_deps == ["metrics", "plots"]
    models = [d.removeprefix("metrics/") for d in depth_deps]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def sh(cmd: str) -> str:
        r = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, capture_output=True,
                           text=True)
        assert r.returncode == 0, f"{cmd}:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    py = "python -c"
    stages = {"writer": {"foreach": models, "do": {
        "cmd": f"{py} \"import pathlib as p; [p.Path(f).parent.mkdir(parents=True, "
               f"exist_ok=True) or p.Path(f).write_text('1') for f in "
               f"('metrics/${{item}}/a.json', 'plots/${{item}}/a.png')]\"",
        "outs": [{"metrics/${item}/a.json": {"cache": False}},
                 {"plots/${item}/a.png": {"cache": False}}]}},
        "depth_study": {"cmd": f"{py} \"import pathlib as p; p.Path('metrics/depth.json')"
                               f".write_text('2'); p.Path('plots/depth.png').write_text('2')\"",
                        "deps": depth_deps,
                        "outs": [{"metrics/depth.json": {"cache": False}},
                                 {"plots/depth.png": {"cache": False}}]},
        "report": {"cmd": f"{py} \"import pathlib as p; p.Path('report').mkdir(exist_ok=True);"
                          f" p.Path('report/README.md').write_text('3')\"",
                   "deps": report_deps, "outs": [{"report/README.md": {"cache": False}}]}}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages,
                                                       "metrics": ["metrics/pipeline.json"]}))
    shutil.copy(ROOT / ".dvcignore", tmp_path / ".dvcignore")
    sh("git init -q && dvc init -q && git add -A && git commit -qm init")
    ran = re.findall(r"Running stage '([^']+)'", sh("dvc repro"))
    assert ran[-2:] == ["depth_study", "report"] and len(ran) == len(models) + 2, ran
    for f in ("metrics/pipeline.json", "metrics/reliability.json"):
        (tmp_path / f).write_text('{"n_stages": 3}')
    assert "Running stage" not in sh("dvc repro")
    assert "metrics/pipeline.json" in sh("dvc metrics show --json")  # ignored, still shown
    (tmp_path / "metrics/bench").mkdir()
    (tmp_path / "metrics/bench/x.json").write_text("{}")  # the report shows bench figures
    assert re.findall(r"Running stage '([^']+)'", sh("dvc repro")) == ["report"]


# --- the committed report in a browser ----------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHECK_JS = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => ({src: i.getAttribute('src'), w: i.naturalWidth}));
  const empty = [], h2s = [...document.querySelectorAll('h2')];
  for (const h of h2s) {
    let n = h.nextElementSibling, content = false;
    for (; n && n.tagName !== 'H2'; n = n.nextElementSibling)
      if (n.textContent.trim() || n.querySelector('img') || n.tagName === 'IMG') content = true;
    if (!content) empty.push(h.textContent);
  }
  const dead = [...document.querySelectorAll('a[href^="#"]')].map(a => a.getAttribute('href'))
    .filter(h => !document.getElementById(decodeURIComponent(h.slice(1))));
  const out = document.createElement('pre');
  out.id = 'fclens-check';
  out.textContent = JSON.stringify({imgs, empty, n_h2: h2s.length, dead});
  document.body.appendChild(out);
});
</script>"""


def _chromium(tmp: Path, *args: str) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}",
           "--virtual-time-budget=15000", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def check_in_browser(page: Path, tmp: Path) -> None:
    """Every image loads, every h2 section has content, the page is not blank."""
    tmp.mkdir(parents=True, exist_ok=True)
    html = page.read_text()
    # a copy with the checks, resolving relative paths exactly as from the page's own folder
    probe = tmp / "probe.html"
    doctype = re.match(r"\s*<!doctype[^>]*>", html, re.I)
    cut = doctype.end() if doctype else 0
    probe.write_text(f'{html[:cut]}<base href="{page.parent.as_uri()}/">{html[cut:]}{CHECK_JS}')
    dom = _chromium(tmp, "--dump-dom", probe.as_uri())
    m = re.search(r'<pre id="fclens-check">(.*?)</pre>', dom, re.S)
    assert m, f"the check script did not run:\n{dom[-1000:]}"
    res = json.loads(html_lib.unescape(m.group(1)))
    assert res["imgs"], "no image in the page"
    assert not [i["src"] for i in res["imgs"] if i["w"] == 0], "images that did not load"
    assert res["n_h2"] >= 3 and not res["empty"], f"empty sections: {res['empty']}"
    assert not res["dead"], f"links to missing anchors: {res['dead']}"
    shot = tmp / "shot.png"
    _chromium(tmp, "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri())
    px = np.asarray(Image.open(shot).convert("RGB"))
    assert px.std() > 10 and len(np.unique(px.reshape(-1, 3), axis=0)) > 50, "blank screenshot"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y "
                                             "chromium; .ci/run installs it when it can)")
def test_committed_report_in_headless_chromium(tmp_path):
    page = ROOT / "report/index.html"
    assert page.is_file(), "report/index.html is not committed: run `dvc repro report`"
    check_in_browser(page, tmp_path / "browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y "
                                             "chromium; .ci/run installs it when it can)")
def test_generated_report_in_headless_chromium(tmp_path):
    md = build_markdown(make_tree(tmp_path))
    (tmp_path / "report").mkdir()
    (tmp_path / "report/index.html").write_text(render_html(md))
    check_in_browser(tmp_path / "report/index.html", tmp_path / "browser")


def test_explorer_section_links_the_site_with_its_figures(tmp_path):
    sec = _sections(build_markdown(make_tree(tmp_path)))[
        "Explorer: a page per class and per feature"]
    for needle in ("(../explorer/index.html)", "3 models (net_a, net_b, photo)",
                   "26 class pages", "1,408 feature pages", "3.5 MB", "23 KB"):
        assert needle in sec, needle
