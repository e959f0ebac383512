"""The smoke DVC project that the end-to-end files share: built once per test session.

`dvc repro` of the whole DAG on a tiny synthetic archive with randomly initialised models costs
minutes on 2 cores (each of ~70 stages starts Python and, where needed, torch). The first
end-to-end file to ask for it builds it under a file lock in the session's shared temp folder;
every other file, on any xdist worker, waits for that build and gets its own copy. A build that
failed is not reused: the next file tries again and reports its own error.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from filelock import FileLock

from conftest import ROOT, make_image_folder, make_jpeg_archive
from fclens.core.io import file_digest

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
    # one model per code path (each stage process costs seconds): a CIFAR ResNet on the
    # archive, one on the image folder (ResNet8: the depth study gets two depths), and Lite0
    # (photos, weights only)
    p["models"] = {"cifar_resnet20": {"arch": "cifar_resnet20", "weights": "random",
                                      "num_classes": 3},
                   "tf_efficientnet_lite0": {"arch": "tf_efficientnet_lite0",
                                             "weights": "random", "num_classes": 20},
                   "folder_net": {"arch": "cifar_resnet8", "weights": "random",
                                  "num_classes": 3}}
    p["feature_models"] = {"cifar_resnet20": "cifar10", "folder_net": "tinyfolder"}
    p["depth_study"]["models"] = ["cifar_resnet20", "folder_net"]
    p["geometry"]["weight_models"] = ["tf_efficientnet_lite0"]
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
    p["explorer"]["models"] = ["cifar_resnet20", "folder_net", "tf_efficientnet_lite0"]
    p["activations"].update(models=["cifar_resnet20", "tf_efficientnet_lite0"], max_channels=8)
    p["visualize"].update(models=["cifar_resnet20"], transfer_models=[], steps=4, n_crops=2,
                          n_natural=2, spectrum_images=12)
    p["adversarial"].update(models=["cifar_resnet20"], sparse_models=["cifar_resnet20"],
                            n_per_class=2, eps=[1, 8], steps=3, strong_steps=3, batch_size=4,
                            n_examples=2)
    sp = p["sparsify"]  # models: [cifar_resnet20] (D = 64: the default k grid, whole)
    sp.update(n_random=2, global_fractions=[0.5, 0.1])
    sp["refit"]["epochs"] = 1
    sp["elastic_net"].update(n_lambda=4, epochs=2)
    sp["csg"].update(n_penalties=3, epochs=1)
    return p


def smoke_inputs(root: Path) -> tuple[Path, Path]:
    """The tiny JPEG archive and image folder under `root` (made once)."""
    archive, folder = root / "arch" / "tiny.tar.gz", root / "folder" / "imgs"
    if not archive.exists():
        archive.parent.mkdir(parents=True, exist_ok=True)
        make_jpeg_archive(archive, n_per_class=6)
    if not folder.exists():
        make_image_folder(folder)
    return archive, folder


def _build(d: Path, archive: Path, folder: Path) -> None:
    d.mkdir(parents=True)
    for item in ("dvc.yaml", ".dvcignore", "stages", "src"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, d / item)
    (d / "metrics" / "bench").mkdir(parents=True)  # a report input, written by `make bench`
    (d / "params.yaml").write_text(yaml.safe_dump(smoke_params(archive, folder), sort_keys=False))
    # depth_study lists one metrics/<m> folder per depth_study.models entry (what a user edits
    # along with the params; the stage checks it)
    dvc_yaml = (d / "dvc.yaml").read_text()
    dvc_yaml = dvc_yaml.replace("      - metrics/cifar_resnet32\n", "      - metrics/folder_net\n")
    for m in ("cifar_resnet44", "cifar_resnet56"):
        dvc_yaml = dvc_yaml.replace(f"      - metrics/{m}\n", "")
    # so does the explorer, for its models' data, metrics and explain folders
    for kind in ("data", "plots/explain"):
        dvc_yaml = dvc_yaml.replace(f"      - {kind}/cifar_resnet32\n",
                                    f"      - {kind}/folder_net\n")
    dvc_yaml = dvc_yaml.replace("      - data/cifar10\n      - metrics/cifar_resnet20\n",
                                "      - data/cifar10\n      - data/tinyfolder\n"
                                "      - metrics/cifar_resnet20\n")
    for gone in ("data/cifar_resnet44", "data/cifar_resnet56", "plots/explain/cifar_resnet44",
                 "plots/explain/cifar_resnet56", "data/tf_efficientnet_lite1",
                 "data/tf_efficientnet_lite2", "metrics/tf_efficientnet_lite1",
                 "metrics/tf_efficientnet_lite2"):
        dvc_yaml = dvc_yaml.replace(f"      - {gone}\n", "")
    (d / "dvc.yaml").write_text(dvc_yaml)
    sh("git init -q && dvc init -q && git add -A && git commit -qm init", d)
    sh("dvc repro", d)
    sh("git add -A && git commit -qm repro", d)


def shared_root(tmp_path_factory) -> Path:
    """A folder every xdist worker of this session sees (the session's own, without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def smoke_repo(tmp_path_factory) -> Path:
    """A fresh copy of the smoke project after `dvc repro` (committed in git)."""
    root = shared_root(tmp_path_factory)
    built = root / "smoke_dag"
    with FileLock(str(root / "smoke_dag.lock")):
        if not (built / ".built").exists():
            shutil.rmtree(built, ignore_errors=True)  # a build that failed half way
            _build(built, *smoke_inputs(root))
            (built / ".built").touch()
    d = tmp_path_factory.mktemp("proj")
    shutil.rmtree(d)
    shutil.copytree(built, d, symlinks=True, ignore=shutil.ignore_patterns(".built"))
    return d


def science_metrics(repo: Path) -> dict[str, dict]:
    """Every science metrics file (timing lives apart, in metrics/timing/)."""
    return {str(f.relative_to(repo)): json.loads(f.read_text())
            for f in sorted((repo / "metrics").rglob("*.json")) if "timing" not in f.parts}


# the analysis stages: what a smaller CPU must reproduce byte for byte from the same features
ANALYSIS = ("fit_ald", "build_trees", "select_influential", "decompose", "ablate", "k_grid",
            "geometry", "geometry_weights", "depth_study", "sparsify")
SMALLER_CPU = dict(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   ONEDNN_MAX_CPU_ISA="AVX2")


def rerun_changes_no_metric(tmp_path_factory, analysis: bool, **env: str) -> None:
    """`dvc repro -f` of the analysis stages, or of every other stage, on a copy of the smoke
    project: every science metric the same, byte for byte, and none that DVC shows."""
    repo = smoke_repo(tmp_path_factory)
    before = science_metrics(repo)
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    assert set(ANALYSIS) <= set(stages)
    chosen = [s for s in stages if (s in ANALYSIS) == analysis]
    sh("dvc repro -f -s " + " ".join(chosen), repo, **env)
    after = science_metrics(repo)
    assert before.keys() == after.keys() and len(before) > 20
    assert [f for f in before if before[f] != after[f]] == []
    # timing left the DVC metrics: two runs with the same params differ in nothing DVC shows
    assert json.loads(sh("dvc metrics diff --json HEAD", repo).stdout or "{}") == {}
