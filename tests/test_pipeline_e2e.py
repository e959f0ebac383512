"""The whole DVC DAG on a smoke profile: tiny synthetic archive, randomly initialised models.

The smoke project (tests/smoke_project.py, built once per session and copied) starts each test
from its committed state (the `clean` fixture resets the workspace after every test), so the
tests do not depend on their order: an experiment that changes one param, which stages each
knob touches, caching, a SIGKILL in the middle of extraction, a truncated cached output, and the
report. The forced rerun (determinism) lives in test_pipeline_rerun.py, on the other worker.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fclens.core.io import file_digest
from smoke_project import science_metrics, sh, smoke_repo

pytestmark = pytest.mark.e2e  # builds a DVC project and runs stages: not in `make test-fast`

@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return smoke_repo(tmp_path_factory)


@pytest.fixture
def clean(repo):
    """The repo as the module fixture committed it, whatever the test did to it."""
    yield repo
    sh("git checkout -q -- . && git clean -fdq metrics plots report && dvc checkout -q --force",
       repo)


def test_full_dag_runs_and_writes_contract_keys(clean):
    repo = clean
    m = json.loads((repo / "metrics/cifar_resnet20/extract.json").read_text())
    for k in ("acc_train", "acc_test", "n_train", "n_test", "feature_dim", "device",
              "logit_max_abs_err"):
        assert k in m
    timing = json.loads((repo / "metrics/timing/extract_activations@cifar_resnet20.json")
                        .read_text())
    assert timing["images_per_s"] > 0 and "images_per_s" not in m
    assert "fit_seconds" in json.loads((repo / "metrics/timing/fit_ald@cifar_resnet20.json")
                                       .read_text())
    data = json.loads((repo / "metrics/data/cifar10.json").read_text())
    assert data["format"] == "cifar10-jpeg" and data["n_train"] == 18
    ft = json.loads((repo / "metrics/cifar_resnet20/finetune.json").read_text())
    assert ft["epochs"] == 1 and 0 <= ft["acc_decomposed_finetuned"] <= 1
    assert m["n_train"] == 18 and m["feature_dim"] == 64 and m["logit_max_abs_err"] < 1e-4
    ald = json.loads((repo / "metrics/tf_efficientnet_lite0/ald.json").read_text())
    assert ald["n_classes"] == 20 and set(ald["aic_win_rate"]) == {
        "gaussian", "laplace", "student_t", "logistic"}
    dec = json.loads((repo / "metrics/folder_net/decompose.json").read_text())
    assert dec["k1"] == 3 and 0 <= dec["acc_decomposed"] <= 1
    abl = json.loads((repo / "metrics/cifar_resnet20/ablate.json").read_text())
    assert set(abl["by_noise"]) == {"feature_stats", "standard_normal", "zero", "train_mean"}
    assert (repo / "metrics/depth.json").exists() and (repo / "plots/depth.png").exists()


def test_second_repro_does_nothing(clean):
    out = sh("dvc repro", clean).stdout
    assert "Running stage" not in out


def test_param_change_reruns_only_downstream_and_diff_shows_it(clean):
    repo = clean
    r = sh("dvc exp run -S decompose.epochs=1 -n smoke-e1", repo).stdout
    ran = {line.split("'")[1] for line in r.splitlines() if line.startswith("Running stage")}
    assert ran and all(s.startswith(("decompose@", "depth_study", "explorer", "report"))
                       for s in ran), ran
    assert {f"decompose@{m}" for m in ("cifar_resnet20", "folder_net")} <= ran
    show = json.loads(sh("dvc exp show --json", repo).stdout)
    assert "smoke-e1" in json.dumps(show)
    diff = json.loads(sh("dvc metrics diff --json HEAD smoke-e1", repo).stdout)
    assert diff["metrics/cifar_resnet20/decompose.json"]["epochs"]["new"] == 1


def test_bad_param_fails_before_work_naming_the_key(clean):
    repo = clean
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["extract"]["amp"] = "fp8"
    (repo / "params.yaml").write_text(yaml.safe_dump(p))
    r = sh("python stages/extract_weights.py --model cifar_resnet20 --out w.parquet", repo,
           check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "params.yaml extract.amp: Input should be 'none', 'bf16' or 'fp16' (found 'fp8')" \
        in r.stderr
    assert not (repo / "w.parquet").exists()


def test_k_above_feature_dim_fails_in_the_stage_that_uses_k(clean, tmp_path):
    """k <= D needs the data, so the stage that uses k checks it, before reading the features;
    extraction does not read decompose.* at all (an analysis knob never re-extracts)."""
    repo = clean
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["decompose"]["k2"] = 65
    (repo / "params.yaml").write_text(yaml.safe_dump(p))
    r = sh(f"python stages/select_influential.py --features data/cifar_resnet20/features_train"
           f".parquet --weights data/cifar_resnet20/fc_weights.parquet --out {tmp_path}/i.parquet",
           repo, check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "params.yaml decompose.k2: 65; allowed: an integer in 1..64" in r.stderr
    assert not (tmp_path / "i.parquet").exists()


def _readers(repo: Path, key: str) -> set[str]:
    """Stages (as dvc names them) whose params list `key` or a section above it."""
    params = yaml.safe_load((repo / "params.yaml").read_text())

    def lookup(ref: str):  # "${a.b}" -> params["a"]["b"]
        v = params
        for part in ref.strip("${}").split("."):
            v = v[part]
        return v

    found = set()
    for base, st in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"].items():
        if "foreach" in st:
            items, st = list(lookup(st["foreach"])), st["do"]
        elif "matrix" in st:
            items = list(lookup(st["matrix"]["model"]))
        else:
            items = [None]
        for item in items:
            for k in st.get("params", []):
                k = str(k).replace("${key}", str(item)).replace("${item.model}", str(item))
                if key == k or key.startswith(k + "."):
                    found.add(base if item is None else f"{base}@{item}")
    return found


def test_adversarial_stage_writes_its_contract(clean):
    a = json.loads((clean / "metrics/cifar_resnet20/adversarial.json").read_text())
    n = len(a["eps"])
    for k in ("acc", "k90_median", "margin_share_algorithm1", "margin_share_elastic_net",
              "terminal_in_k90_rate"):
        assert len(a[k]) == n, k
    assert a["strong"]["eps"] == a["eps"][-1]  # the smoke profile attacks strongly at its top ε
    assert 0 <= a["acc_strong"] <= a["acc"][-1] <= a["clean_acc"]
    assert set(a["sparse_heads"]) == {"algorithm1", "elastic_net"}
    for h in a["sparse_heads"].values():
        assert len(h["acc"]) == len(h["transfer_rate"]) == n
    for f in ("accuracy", "examples"):
        assert (clean / f"plots/adversarial/cifar_resnet20/{f}.png").stat().st_size > 1000


KNOBS = {"decompose.k1": 4, "decompose.epochs": 2, "explain.classes": [0, 1],
         "faithfulness.steps": 5, "sparsify.k_grid": [1, 2], "ald.plot_classes": [0, 1],
         "extract.batch_size": 8}


def test_each_knob_changes_exactly_the_stages_that_read_it(clean):
    """After each change, `dvc status` lists exactly the stages that read the key (their
    downstream stages rerun once those change outputs); analysis knobs never list extraction."""
    repo = clean
    original = (repo / "params.yaml").read_text()
    for key, value in KNOBS.items():
        p = yaml.safe_load(original)
        section, field = key.split(".")
        p[section][field] = value
        (repo / "params.yaml").write_text(yaml.safe_dump(p))
        status = json.loads(sh("dvc status --json", repo).stdout)
        changed = {s for s, entries in status.items()
                   if any("changed deps" in e and "params.yaml" in e["changed deps"]
                          for e in entries if isinstance(e, dict))}
        assert changed == _readers(repo, key) and changed, (key, sorted(changed))
        if not key.startswith("extract."):
            assert not any(s.startswith(("extract_", "prepare_data")) for s in changed), key
        (repo / "params.yaml").write_text(original)


def test_new_stages_outputs(clean):
    repo = clean
    ex = json.loads((repo / "metrics/cifar_resnet20/explain.json").read_text())
    # classes 0 and 2, one right + one wrong each when the random model has any of either
    assert 2 <= ex["n_images"] <= 4 and ex["n_maps"] == 2 * ex["n_images"] * 6  # 2 methods x 6
    assert ex["gradcam_vs_cam_max_rel_err"] < 1e-4
    photo = json.loads((repo / "metrics/tf_efficientnet_lite0/explain.json").read_text())
    assert photo["n_images"] == 1 and "influential" not in photo["targets"]
    for m in ("cifar_resnet20", "tf_efficientnet_lite0"):
        for f in ("gradcampp", "smooth_gradcampp"):
            assert (repo / f"plots/explain/{m}/{f}.png").stat().st_size > 1000
        for f in ("first_layer_filters", "weight_banding", "fc_matrix"):
            assert (repo / f"plots/pictures/{m}/{f}.png").stat().st_size > 1000
    grid = json.loads((repo / "metrics/cifar_resnet20/k_grid.json").read_text())
    assert set(grid["acc_decomposed"]) == {"k1=1", "k1=3"}
    folder = json.loads((repo / "metrics/folder_net/extract.json").read_text())
    assert folder["n_train"] == 12 and folder["n_test"] == 6  # image folder, resized 40 -> 32
    assert (repo / "metrics/folder_net/ablate.json").exists()
    assert (repo / "plots/explain/folder_net/gradcampp.png").exists()


def test_explorer_site_from_the_smoke_outputs(clean):
    """Every model of explorer.models gets its pages, the dataset models their exemplars,
    confusions, sparse sets and CAM figures; no link is broken and nothing leaves the site."""
    from test_explorer import crawl

    repo = clean
    e = json.loads((repo / "metrics/explorer.json").read_text())
    dims = {m: json.loads((repo / f"metrics/{m}/extract.json").read_text())["feature_dim"]
            for m in ("cifar_resnet20", "folder_net")}
    assert e["n_models"] == 3 and e["n_class_pages"] == 3 + 3 + 20
    assert e["n_feature_pages"] == dims["cifar_resnet20"] + dims["folder_net"] + 1280
    site = repo / "explorer"
    c = crawl(site)
    assert c["pages"] == e["n_class_pages"] + e["n_feature_pages"] + 3 * 2 + 1
    assert c == {**c, "broken": [], "missing_images": [], "outside": [], "no_alt": 0}
    assert e["total_bytes"] == sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    page = next((site / "cifar_resnet20").glob("0000-*.html")).read_text()
    for needle in ("img/cifar10/", "Confusions (test split)", "Sparse heads", "elastic_net",
                   "Algorithm-1 features", 'src="gradcampp.png"', "<polyline"):
        assert needle in page, needle
    assert "img/tinyfolder/" in next((site / "folder_net").glob("0000-*.html")).read_text()
    lite = next((site / "tf_efficientnet_lite0").glob("0000-*.html")).read_text()
    assert "Confusions" not in lite and "<polyline" in lite  # weights only
    assert "No dataset for this model" in (site / "tf_efficientnet_lite0/f0000.html").read_text()


def test_report_holds_every_metric_file(clean):
    repo = clean
    from fclens.report.fmt import num as _num
    from fclens.report.fmt import pct as _pct

    md = (repo / "report/README.md").read_text()
    html = (repo / "report/index.html").read_text()
    for name in ("cifar_resnet20", "folder_net"):
        def m(f: str, name: str = name) -> dict:
            return json.loads((repo / f"metrics/{name}/{f}.json").read_text())

        for needle in (_pct(m("extract")["acc_test"]), _num(m("ald")["kappa_median"]),
                       _pct(m("decompose")["acc_decomposed_retrained"]),
                       _pct(m("ablate")["acc_noise_influential_union"]),
                       _pct(m("k_grid")["best_acc_decomposed"])):
            assert needle in md and needle in html, (name, needle)
    dep = json.loads((repo / "metrics/depth.json").read_text())
    assert _num(dep["models"]["folder_net"]["rel_acc"]) in md
    assert "../plots/explain/tf_efficientnet_lite0/smooth_gradcampp.png" in html


def test_sigkill_mid_extraction_leaves_nothing_complete_and_resumes(clean):
    repo = clean
    feats = [repo / f"data/cifar_resnet20/features_{s}.parquet" for s in ("train", "test")]
    parts = repo / "data/cifar_resnet20/.features_train.parquet.parts"
    digests = [file_digest(f) for f in feats]
    metrics_before = science_metrics(repo)
    for f in feats:  # what `dvc repro` does before it runs a stage
        f.unlink()
    kill_after_two_parts = (
        "import os, runpy, signal, sys\n"
        "import fclens.extract.parts as e\n"
        "write = e.FeatureParts.write\n"
        "def killed(self, *a, **k):\n"
        "    write(self, *a, **k)\n"
        "    if self.done >= 8:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "e.FeatureParts.write = killed\n"
        "sys.argv = ['x', '--model', 'cifar_resnet20', '--data', 'data/cifar10', '--out',\n"
        "            'data/cifar_resnet20', '--metrics', 'metrics/cifar_resnet20/extract.json',\n"
        "            '--timing', 'metrics/timing/extract_activations@cifar_resnet20.json']\n"
        "runpy.run_path('stages/extract_activations.py', run_name='__main__')\n")
    r = subprocess.run([sys.executable, "-c", kill_after_two_parts], cwd=repo,
                       env={**os.environ, "PYTHONPATH": str(repo / "stages")})
    assert r.returncode == -9  # really killed, mid-extraction
    assert not any(f.exists() for f in feats)  # nothing looks complete
    assert len(list(parts.glob("rows-*.parquet"))) == 2  # rows 0..7, kept for the next run
    status = json.loads(sh("dvc status --json", repo).stdout)
    assert "extract_activations@cifar_resnet20" in status
    # the outs are missing: DVC reruns the stage (its uncached timing out rules out a restore
    # from the run-cache) or restores them; the run that computes resumes from the parts
    first = sh("dvc repro", repo)
    assert [file_digest(f) for f in feats] == digests  # resumed == one whole run, to the byte
    again = sh("dvc repro -f -s extract_activations@cifar_resnet20", repo)  # from scratch
    assert "Running stage 'extract_activations@cifar_resnet20'" in again.stdout
    logs = first.stdout + first.stderr + again.stdout + again.stderr
    assert logs.count("resuming at row 8 of 18") == 1
    assert [file_digest(f) for f in feats] == digests
    assert science_metrics(repo) == metrics_before
    assert not parts.exists()  # merged and removed
    assert not list((repo / "data/cifar_resnet20").glob(".*.tmp"))


def test_truncated_cached_output_is_detected_with_a_clear_error(clean, tmp_path):
    repo = clean
    f = repo / "data/cifar_resnet20/features_train.parquet"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    try:
        status = json.loads(sh("dvc status --json", repo).stdout)
        assert "extract_activations@cifar_resnet20" in status
        r = sh("python stages/select_influential.py --features "
               "data/cifar_resnet20/features_train.parquet --weights "
               f"data/cifar_resnet20/fc_weights.parquet --out {tmp_path}/never.parquet", repo,
               check=False)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert "features_train.parquet" in r.stderr and "truncated" in r.stderr
    finally:
        f.unlink()
        sh("dvc checkout -q data/cifar_resnet20/features_train.parquet", repo)
    from fclens.core.tables import read_features

    assert len(read_features(f, 3, 64).labels) == 18  # restored from the DVC cache
    assert "features_train.parquet" not in sh("dvc status", repo).stdout


def test_plots_show_renders_every_png(clean, tmp_path):
    sh(f"dvc plots show -o {tmp_path}/plots", clean)  # fails on a bad plot definition
    html = (tmp_path / "plots/index.html").read_text()
    pngs = list((clean / "plots").rglob("*.png"))
    assert len(pngs) > 20 and html.count("<img") == len(pngs)
