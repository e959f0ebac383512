"""The whole DVC DAG on a smoke profile: tiny synthetic archive, randomly initialised models.

Builds a throwaway git+DVC repo from the project files, runs `dvc repro`, then an experiment
that changes one param, and checks caching: what reran, what did not, and what the diff says.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, make_jpeg_archive
from fclens.io import file_digest

BIN = Path(sys.executable).parent


def sh(cmd: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    r = subprocess.run(cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True)
    if check and r.returncode:
        raise AssertionError(f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def smoke_params(archive: Path) -> dict:
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["datasets"] = {"cifar10": {"archive": str(archive),
                                 "checksum": "sha256:" + file_digest(archive)}}
    for name, m in p["models"].items():
        p["models"][name] = {"arch": m["arch"], "weights": "random", "num_classes": 3} \
            if name.startswith("cifar") else {"arch": "tf_efficientnet_lite0", "weights": "random",
                                              "num_classes": 20}
    p["decompose"].update(epochs=3, k1=3, k2=3)
    p["ablate"]["n_random"] = 2
    return p


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    d = tmp_path_factory.mktemp("proj")
    for item in ("dvc.yaml", "stages", "src"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, d / item)
    (d / "metrics" / "bench").mkdir(parents=True)  # a report input, written by `make bench`
    archive = make_jpeg_archive(tmp_path_factory.mktemp("arch") / "tiny.tar.gz", n_per_class=6)
    (d / "params.yaml").write_text(yaml.safe_dump(smoke_params(archive), sort_keys=False))
    sh("git init -q && dvc init -q && git add -A && git commit -qm init", d)
    sh("dvc repro", d)
    sh("git add -A && git commit -qm repro", d)
    return d


def test_full_dag_runs_and_writes_contract_keys(repo):
    m = json.loads((repo / "metrics/cifar_resnet20/extract.json").read_text())
    for k in ("acc_train", "acc_test", "n_train", "n_test", "feature_dim", "images_per_s",
              "device", "logit_max_abs_err"):
        assert k in m
    assert m["n_train"] == 18 and m["feature_dim"] == 64 and m["logit_max_abs_err"] < 1e-4
    ald = json.loads((repo / "metrics/tf_efficientnet_lite0/ald.json").read_text())
    assert ald["n_classes"] == 20 and set(ald["aic_win_rate"]) == {
        "gaussian", "laplace", "student_t", "logistic"}
    dec = json.loads((repo / "metrics/cifar_resnet56/decompose.json").read_text())
    assert dec["k1"] == 3 and 0 <= dec["acc_decomposed"] <= 1
    abl = json.loads((repo / "metrics/cifar_resnet20/ablate.json").read_text())
    assert set(abl["by_noise"]) == {"feature_stats", "standard_normal", "zero", "train_mean"}
    assert (repo / "metrics/depth.json").exists() and (repo / "plots/depth.png").exists()


def test_second_repro_does_nothing(repo):
    out = sh("dvc repro", repo).stdout
    assert "Running stage" not in out


def test_param_change_reruns_only_downstream_and_diff_shows_it(repo):
    r = sh("dvc exp run -S decompose.epochs=1 -n smoke-e1", repo).stdout
    ran = {line.split("'")[1] for line in r.splitlines() if line.startswith("Running stage")}
    assert ran and all(s.startswith(("decompose@", "depth_study")) for s in ran), ran
    show = json.loads(sh("dvc exp show --json", repo).stdout)
    assert "smoke-e1" in json.dumps(show)
    diff = json.loads(sh("dvc metrics diff --json HEAD smoke-e1", repo).stdout)
    assert diff["metrics/cifar_resnet20/decompose.json"]["epochs"]["new"] == 1


def test_bad_param_fails_before_work_naming_the_key(repo):
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["extract"]["amp"] = "fp8"
    (repo / "params.yaml").write_text(yaml.safe_dump(p))
    try:
        r = sh("python stages/extract_weights.py --model cifar_resnet20 --out /dev/null", repo,
               check=False)
        assert r.returncode == 1
        assert "extract.amp: 'fp8'; allowed values: none, bf16, fp16" in r.stderr
        assert "Traceback" not in r.stderr
    finally:
        sh("git checkout params.yaml", repo)
