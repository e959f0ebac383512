"""The whole DVC DAG on a smoke profile: tiny synthetic archive, randomly initialised models.

Builds a throwaway git+DVC repo from the project files and runs `dvc repro` once (module
fixture). Each test then starts from that committed state (the `clean` fixture resets the
workspace after every test), so the tests do not depend on their order: an experiment that
changes one param, caching, determinism (a forced rerun changes no metric), a SIGKILL in the
middle of extraction, a truncated cached output, and the report.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, make_image_folder, make_jpeg_archive
from fclens.core.io import file_digest

pytestmark = pytest.mark.e2e  # builds a DVC project and runs stages: not in `make test-fast`

BIN = Path(sys.executable).parent


def sh(cmd: str, cwd: Path, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **extra_env, "PATH": f"{BIN}:{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    r = subprocess.run(cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True)
    if check and r.returncode:
        raise AssertionError(f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n"
                             f"{r.stderr[-3000:]}")
    return r


def smoke_params(archive: Path, folder: Path) -> dict:
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["datasets"] = {"cifar10": {"archive": str(archive),
                                 "checksum": "sha256:" + file_digest(archive)},
                     "tinyfolder": {"folder": str(folder)}}
    # two CIFAR ResNets are enough for the depth study; each stage process costs seconds
    p["models"] = {m: {"arch": m, "weights": "random", "num_classes": 3}
                   for m in ("cifar_resnet20", "cifar_resnet32")}
    p["models"]["tf_efficientnet_lite0"] = {"arch": "tf_efficientnet_lite0", "weights": "random",
                                            "num_classes": 20}
    p["models"]["folder_net"] = {"arch": "cifar_resnet8", "weights": "random", "num_classes": 3}
    p["feature_models"] = {"cifar_resnet20": "cifar10", "cifar_resnet32": "cifar10",
                           "folder_net": "tinyfolder"}
    p["depth_study"]["models"] = ["cifar_resnet20", "cifar_resnet32"]
    p["finetune"].update(models=["cifar_resnet20"], epochs=1, batch_size=8)
    p["decompose"].update(epochs=3, k1=3, k2=3, grid={"k1": [1, 3], "k2": [1, 3]})
    p["ablate"]["n_random"] = 2
    p["extract"].update(batch_size=4, row_group_size=4)  # several resumable parts per split
    p["ald"]["plot_classes"] = [0, 2]
    p["banding_experiment"].update(seeds=[0, 1], epochs=1, n_train=12, batch_size=4)
    p["hyperplanes"].update(n_points=40, steps=50)
    p["faithfulness"].update(n_per_class=2, n_random=2, n_boot=100, steps=4)
    p["explain"].update(n_samples=2, classes=[0, 2], n_correct=1, n_wrong=1, photos=["chelsea"])
    p["pictures"]["max_tiles"] = 8
    sp = p["sparsify"]  # models: [cifar_resnet20] (D = 64: the default k grid, whole)
    sp.update(n_random=2, global_fractions=[0.5, 0.1])
    sp["refit"]["epochs"] = 1
    sp["elastic_net"].update(n_lambda=4, epochs=2)
    sp["csg"].update(n_penalties=3, epochs=1)
    return p


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    d = tmp_path_factory.mktemp("proj")
    for item in ("dvc.yaml", ".dvcignore", "stages", "src"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, d / item)
    (d / "metrics" / "bench").mkdir(parents=True)  # a report input, written by `make bench`
    archive = make_jpeg_archive(tmp_path_factory.mktemp("arch") / "tiny.tar.gz", n_per_class=6)
    folder = make_image_folder(tmp_path_factory.mktemp("folder") / "imgs")
    (d / "params.yaml").write_text(yaml.safe_dump(smoke_params(archive, folder), sort_keys=False))
    # depth_study lists one metrics/<m> folder per depth_study.models entry (what a user edits
    # along with the params; the stage checks it)
    dvc_yaml = (d / "dvc.yaml").read_text()
    for m in ("cifar_resnet44", "cifar_resnet56"):
        dvc_yaml = dvc_yaml.replace(f"      - metrics/{m}\n", "")
    (d / "dvc.yaml").write_text(dvc_yaml)
    sh("git init -q && dvc init -q && git add -A && git commit -qm init", d)
    sh("dvc repro", d)
    sh("git add -A && git commit -qm repro", d)
    return d


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
    dec = json.loads((repo / "metrics/cifar_resnet32/decompose.json").read_text())
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
    assert ran and all(s.startswith(("decompose@", "depth_study", "report")) for s in ran), ran
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


def _metrics(repo: Path) -> dict[str, dict]:
    """Every science metrics file (timing lives apart, in metrics/timing/)."""
    return {str(f.relative_to(repo)): json.loads(f.read_text())
            for f in sorted((repo / "metrics").rglob("*.json")) if "timing" not in f.parts}


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


def test_report_holds_every_metric_file(clean):
    repo = clean
    from fclens.report.fmt import num as _num
    from fclens.report.fmt import pct as _pct

    md = (repo / "report/README.md").read_text()
    html = (repo / "report/index.html").read_text()
    for name in ("cifar_resnet20", "cifar_resnet32", "folder_net"):
        def m(f: str, name: str = name) -> dict:
            return json.loads((repo / f"metrics/{name}/{f}.json").read_text())

        for needle in (_pct(m("extract")["acc_test"]), _num(m("ald")["kappa_median"]),
                       _pct(m("decompose")["acc_decomposed_retrained"]),
                       _pct(m("ablate")["acc_noise_influential_union"]),
                       _pct(m("k_grid")["best_acc_decomposed"])):
            assert needle in md and needle in html, (name, needle)
    dep = json.loads((repo / "metrics/depth.json").read_text())
    assert _num(dep["models"]["cifar_resnet32"]["rel_acc"]) in md
    assert "../plots/explain/tf_efficientnet_lite0/smooth_gradcampp.png" in html


def test_same_params_same_metrics(clean):
    repo = clean
    before = _metrics(repo)
    sh("dvc repro -f", repo)
    after = _metrics(repo)
    assert before.keys() == after.keys() and len(before) > 20
    for f in before:
        assert before[f] == after[f], f
    # timing left the DVC metrics: two runs with the same params differ in nothing DVC shows
    assert json.loads(sh("dvc metrics diff --json HEAD", repo).stdout or "{}") == {}


ANALYSIS = "fit_ald build_trees select_influential decompose ablate k_grid depth_study sparsify"


def test_emulated_second_machine_gives_the_same_metrics(clean):
    """One thread and AVX2 kernels only (a smaller CPU): the analysis stages, rerun from the
    same features, must write the same metrics byte for byte."""
    before = _metrics(clean)
    sh(f"dvc repro -f -s {ANALYSIS}", clean, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
       OPENBLAS_NUM_THREADS="1", ONEDNN_MAX_CPU_ISA="AVX2")
    after = _metrics(clean)
    assert [f for f in before if before[f] != after[f]] == []


def test_sigkill_mid_extraction_leaves_nothing_complete_and_resumes(clean):
    repo = clean
    feats = [repo / f"data/cifar_resnet20/features_{s}.parquet" for s in ("train", "test")]
    parts = repo / "data/cifar_resnet20/.features_train.parquet.parts"
    digests = [file_digest(f) for f in feats]
    metrics_before = _metrics(repo)
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
    assert _metrics(repo) == metrics_before
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


# --- `dvc repro` itself SIGKILLed (issue 18): its orphaned stage must not write ---------------
# Self-contained: its own one-stage DVC project, the real extract_activations cmd.

PAUSE_AFTER_FIRST_PART = """\
def pause_after_first_part(script, *args):  # run `script args`, paused once a part is on disk
    import os, runpy, sys, time
    from pathlib import Path
    from fclens.extract import parts
    write = parts.FeatureParts.write
    def paused(self, *a, **k):  # the first part is on disk: say so, wait for the test's go
        write(self, *a, **k)
        ready, go = Path(os.environ["FCLENS_TEST_READY"]), Path(os.environ["FCLENS_TEST_GO"])
        if not ready.exists():
            ready.write_text(str(os.getpid()))
            deadline = time.monotonic() + 120
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
    parts.FeatureParts.write = paused
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")
pause_after_first_part(*__import__("sys").argv[1:])
"""


def _substitute(obj, **names):
    if isinstance(obj, str):
        for k, v in names.items():
            obj = obj.replace("${" + k + "}", v)
        return obj
    if isinstance(obj, list):
        return [_substitute(v, **names) for v in obj]
    if isinstance(obj, dict):
        return {_substitute(k, **names): _substitute(v, **names) for k, v in obj.items()}
    return obj


@pytest.fixture(scope="module")
def extract_project(tmp_path_factory):
    """A DVC project of one stage, `extract`: dvc.yaml's extract_activations@cifar_resnet20 (its
    cmd behind a hook that pauses after the first part), on data that prepare_data wrote."""
    d = tmp_path_factory.mktemp("extract_project")
    for item in ("stages", "src"):
        shutil.copytree(ROOT / item, d / item)
    archive = make_jpeg_archive(tmp_path_factory.mktemp("arch") / "tiny.tar.gz", n_per_class=6)
    folder = make_image_folder(tmp_path_factory.mktemp("folder") / "imgs")
    (d / "params.yaml").write_text(yaml.safe_dump(smoke_params(archive, folder), sort_keys=False))
    sh("python stages/prepare_data.py --dataset cifar10 --out data/cifar10 "
       "--metrics metrics/data/cifar10.json", d)
    (d / "pause.py").write_text(PAUSE_AFTER_FIRST_PART)
    do = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["extract_activations"]["do"]
    stage = _substitute(do, key="cifar_resnet20", item="cifar10")
    assert stage["cmd"].startswith("python stages/extract_activations.py ")
    stage["cmd"] = stage["cmd"].replace("python ", "python pause.py ", 1)
    stage["deps"] = [p for p in stage["deps"] if p.startswith("data/")]  # the code: a copy
    (d / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"extract": stage}}, sort_keys=False))
    sh("dvc init -q --no-scm", d)
    return d


# dvc runs a stage's cmd with `$SHELL -c` (/bin/sh without $SHELL): bash execs a simple
# command (the stage's parent is dvc), dash forks it (its parent is the shell, which outlives dvc)
@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_sigkill_of_dvc_repro_mid_extraction_leaves_the_orphan_writing_nothing(
        extract_project, tmp_path, shell):
    if not Path(shell).exists():
        pytest.skip(f"no {shell}")
    repo = tmp_path / "repo"
    shutil.copytree(extract_project, repo)
    ready, go = tmp_path / "ready", tmp_path / "go"
    outs = [repo / "data/cifar_resnet20/features_train.parquet",
            repo / "data/cifar_resnet20/features_test.parquet",
            repo / "metrics/cifar_resnet20/extract.json",
            repo / "metrics/timing/extract_activations@cifar_resnet20.json"]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "SHELL": shell, "FCLENS_TEST_READY": str(ready), "FCLENS_TEST_GO": str(go)}
    dvc = subprocess.Popen(["dvc", "repro", "extract"], cwd=repo, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    stage, out = None, None
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():  # the stage is under way: one part on disk, the rest to come
            assert dvc.poll() is None, f"dvc repro ended first:\n{dvc.communicate()[0][-3000:]}"
            assert time.monotonic() < deadline, "the stage did not start extracting"
            time.sleep(0.1)
        time.sleep(0.1)  # the pid is written
        stage = int(ready.read_text())
        dvc.kill()  # `kill -9 <pid of dvc repro>`: dvc alone; its shell and stage live on
        assert dvc.wait() == -signal.SIGKILL
        go.touch()
        out = dvc.communicate(timeout=300)[0]  # EOF: the orphaned stage (and shell) exited
    finally:
        go.touch()
        if dvc.poll() is None:
            dvc.kill()
        if out is None and stage is not None:  # the test failed with the stage still running
            with contextlib.suppress(ProcessLookupError):
                os.kill(stage, signal.SIGKILL)
    assert [f for f in outs if f.exists()] == []  # nothing written outside dvc.lock
    assert not (repo / "dvc.lock").exists()
    assert "not written: the process that started this stage" in out and "is gone" in out
    assert "Traceback" not in out
    parts = repo / "data/cifar_resnet20/.features_train.parquet.parts"
    assert list(parts.glob("rows-*.parquet"))  # the complete part stays, for the next run
    go.touch()  # the next `dvc repro` runs to the end, resuming from that part
    r = sh("dvc repro extract", repo, SHELL=shell, FCLENS_TEST_READY=str(ready),
           FCLENS_TEST_GO=str(go))
    assert "resuming at row" in r.stdout + r.stderr
    assert [f for f in outs if not f.exists()] == []
