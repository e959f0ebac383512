"""The bad-input catalogue: every bad input gets a clear error, and nothing wrong passes silently.

Each case runs a stage script the way a user does (`python stages/<stage>.py --flags ...` in a
throwaway project: params.yaml, a `stages` link, input tables written by fclens' own writers, or
deliberately corrupted files) and is judged on what the user sees:

- clear_error: exit != 0, no "Traceback", and the message holds the case's needles: the file or
  params key, the value found and what was expected;
- traceback: a Python traceback reached the user;
- silent: exit 0 although the input was bad or the result is wrong (or a failed run left a
  partial or hidden output behind);
- ok: a case that must succeed did, with a correct result;
- unclear: an error without the needles, or an error where success was expected.

The counts, overall and per category, are the catalogue's figures: `make catalogue`
(benchmarks/reliability_catalogue.py) writes them to metrics/reliability.json; a test run
writes nothing into the repo.
The cases of one category are data (`Case`); a class-scoped fixture runs their subprocesses a
few at a time, and each case is still its own test, judged on its own run.
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from conftest import ROOT, accuracy, make_image_folder, make_jpeg_archive
from fclens.analysis.decompose import influential_indices
from fclens.core import tables
from fclens.core.errors import FclensError
from fclens.core.io import file_digest, write_json
from fclens.extract.parts import FeatureWriter

pytestmark = pytest.mark.e2e  # builds a DVC project and runs stages: not in `make test-fast`

C, D = 3, 16  # the template model: 3 classes, 16 features
NAMES = ("ant", "bee", "cow")
FOLDER_CLASSES = ("n01", "n02", "n03")
WORKERS = 3  # concurrent stage processes per category
DEL = object()  # edits: remove the key
OUTCOMES = ("clear_error", "traceback", "silent", "ok", "unclear")
UNREACHABLE = "http://127.0.0.1:9"  # refused at once: an offline download fails fast
_RESULTS: dict[str, tuple[str, str]] = {}  # test id -> (category, outcome)
CATALOGUE_OUT = "FCLENS_CATALOGUE_OUT"  # the figures' file, for `make catalogue`

FC, TRAIN, TEST, INFL = (f"data/m/{f}.parquet" for f in
                         ("fc_weights", "features_train", "features_test", "influential"))
FLAGS = {
    "prepare_data": dict(dataset="d", out="data/d", metrics="metrics/data/d.json"),
    "extract_weights": dict(model="m", out=FC),
    "extract_activations": dict(model="m", data="data/a", out="data/m",
                                metrics="metrics/m/extract.json", timing="metrics/timing/m.json"),
    "weights_pictures": dict(model="m", weights=FC, out="plots/pictures/m",
                             banding="metrics/m/banding.json"),
    "select_influential": dict(features=TRAIN, weights=FC, out=INFL),
    "decompose": dict(data="data/m", weights=FC, influential=INFL,
                      metrics="metrics/m/decompose.json", live="plots/m/decompose"),
    "ablate": dict(data="data/m", weights=FC, influential=INFL, metrics="metrics/m/ablate.json",
                   per_class="data/m/ablate_per_class.parquet"),
    "k_grid": dict(data="data/m", weights=FC, metrics="metrics/m/k_grid.json",
                   plot="plots/m/k_grid.png", csv="plots/m/k_grid.csv"),
    "fit_ald": dict(weights=FC, out="data/m", metrics="metrics/m/ald.json", plots="plots/m/ald",
                    timing="metrics/timing/fit_ald.json"),
    "build_trees": dict(weights=FC, out="data/m", metrics="metrics/m/trees.json",
                        plot="plots/m/trees/sorted_by_branch.png"),
    "report": dict(out="report"),
    "geometry": dict(weights=FC, metrics="metrics/m/geometry.json"),  # + data: features
    "depth_study": dict(metrics="metrics/depth.json", plot="plots/depth.png",
                        geometry_plot="plots/geometry_depth.png"),
    "explorer": dict(out="explorer", metrics="metrics/explorer.json",
                     timing="metrics/timing/explorer.json"),
    "explain": dict(model="m", weights=FC, trees="data/m/tree_nodes.parquet", data="data/a",
                    features=TEST, influential=INFL, out="plots/explain/m",
                    metrics="metrics/m/explain.json", timing="metrics/timing/explain.json"),
}


# ---------------------------------------------------------------- outcomes and the metrics file

def _counts(outcomes: list[str]) -> dict[str, int]:
    return {"n_cases": len(outcomes), **{f"n_{o}": outcomes.count(o) for o in OUTCOMES}}


def _catalogue_size() -> int:
    """Every test of the module: a category's cases, and its in-process tests."""
    classes = [c for c in globals().values() if isinstance(c, type) and c.__name__[:4] == "Test"]
    return sum(len(c.cases) if n == "test_case" else 1
               for c in classes for n in dir(c) if n.startswith("test_"))


@pytest.fixture(scope="session", autouse=True)
def reliability_metrics():
    """The figures, from every case's outcome, to the file $FCLENS_CATALOGUE_OUT names (set by
    benchmarks/reliability_catalogue.py), once every case of the module has run; unset (a test
    run): nothing is written."""
    yield
    out = os.environ.get(CATALOGUE_OUT)
    if not out or len(_RESULTS) != _catalogue_size():  # no figures from part of the catalogue
        return
    by_cat: dict[str, list[str]] = {}
    for cat, outcome in _RESULTS.values():
        by_cat.setdefault(cat, []).append(outcome)
    write_json(out, {
        **_counts([o for _, o in _RESULTS.values()]),
        "by_category": {cat: _counts(v) for cat, v in sorted(by_cat.items())}})


def _record(request, outcome: str, expected: str, detail: str) -> None:
    _RESULTS[request.node.nodeid] = (request.cls.category, outcome)
    assert outcome == expected, f"{outcome} (expected {expected}): {detail}"


def judge_run(request, case: Case, proj: Project, r: subprocess.CompletedProcess) -> None:
    out = r.stdout + r.stderr
    problems = [f"hidden temp file left: {t}" for t in proj.hidden_tmp()]
    problems += case.check(proj) if case.check else []
    if "Traceback" in out:
        outcome = "traceback"
    elif case.must_succeed:
        outcome = "unclear" if r.returncode else ("silent" if problems else "ok")
    elif r.returncode == 0 or problems:
        outcome = "silent"
    else:
        outcome = "clear_error" if all(n in out for n in case.needles) else "unclear"
    missing = [n for n in case.needles if n not in out]
    _record(request, outcome, "ok" if case.must_succeed else "clear_error",
            f"rc={r.returncode}, problems={problems}, needles missing={missing}\n{out[-3000:]}")


def judge_call(request, fn: Callable[[], object], needles: tuple[str, ...] = (),
               check: Callable[[], list[str]] | None = None, must_succeed: bool = False) -> None:
    """An in-process case (a writer's own refusal, a temp file after a failed open)."""
    try:
        fn()
        err, tb = None, None
    except FclensError as e:
        err, tb = str(e), None
    except Exception as e:  # noqa: BLE001 - what a user would see as a traceback
        err, tb = None, f"{type(e).__name__}: {e}"
    problems = check() if check else []
    if must_succeed:
        outcome = ("traceback" if tb else "unclear" if err else "silent" if problems else "ok")
    else:
        outcome = ("traceback" if tb else "silent" if err is None or problems else
                   "clear_error" if all(n in err for n in needles) else "unclear")
    _record(request, outcome, "ok" if must_succeed else "clear_error",
            f"error={err!r}, traceback={tb!r}, problems={problems}")


# ---------------------------------------------------------------- projects

def set_key(d: dict, dotted: str, value) -> None:
    *head, last = dotted.split(".")
    for k in head:
        d = d.setdefault(k, {})
    if value is DEL:
        d.pop(last, None)
    else:
        d[last] = copy.deepcopy(value)


class Shared:
    """Built once: a tiny archive and image folder, and the template model's tables."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = make_image_folder(root / "imgs", classes=FOLDER_CLASSES)
        self.archive = make_jpeg_archive(root / "tiny.tar.gz")
        self.digest = file_digest(self.archive)
        rng = np.random.default_rng(0)
        self.head = tables.Head(rng.normal(size=(C, D)).astype(np.float32),
                                rng.normal(scale=0.1, size=C).astype(np.float32), NAMES)
        self.x = {s: np.abs(rng.normal(size=(n, D))).astype(np.float32)
                  for s, n in (("train", 30), ("test", 12))}
        self.y = {s: np.arange(len(x)) % C for s, x in self.x.items()}
        self.pred = {s: self.head.logits(x).argmax(1) for s, x in self.x.items()}
        self.infl = influential_indices(tables.Features(self.x["train"], self.y["train"],
                                                       self.pred["train"]), C, 3, 3)
        self.data = root / "tpl" / "data"
        tables.write_fc_weights(self.data / "m/fc_weights.parquet", self.head)
        for s in ("train", "test"):
            write_features(self.data / f"m/features_{s}.parquet", self.x[s], self.y[s],
                           self.pred[s], self.head)
        tables.write_influential(self.data / "m/influential.parquet", self.infl)

    def params(self) -> dict:
        return {
            "seed": 0,
            "datasets": {"d": {"folder": str(self.folder)},
                         "a": {"archive": str(self.archive), "checksum": f"sha256:{self.digest}"}},
            "models": {"m": {"arch": "cifar_resnet8", "weights": "random", "num_classes": 3}},
            "feature_models": {"m": "d"},
            "extract": {"device": "cpu", "batch_size": 8, "num_workers": 0},
            "ald": {"plot_classes": [0, 2]},
            "trees": {"mode": "chain", "min_size": 4},
            "decompose": {"k1": 3, "k2": 3, "epochs": 1, "lr": 0.01, "batch_size": 8,
                          "optimizer": "adam", "grid": {"k1": [1, 3], "k2": [1, 3]}},
            "ablate": {"noise": "feature_stats", "noise_modes": ["feature_stats", "zero"],
                       "n_random": 1},
            "explain": {"methods": ["gradcampp"], "n_samples": 2, "sigma": 0.3, "classes": [0],
                        "n_correct": 1, "n_wrong": 1},
            "pictures": {"max_tiles": 8},
            "depth_study": {"models": ["m"]},
        }


def write_features(path: Path, x, y, pred, head: tables.Head) -> None:
    with FeatureWriter(path, x.shape[1], head.n_classes, 100) as w:
        w.write(np.arange(len(x)), y, pred, head.logits(x)[np.arange(len(x)), y], x)


class Project:
    def __init__(self, root: Path, shared: Shared) -> None:
        self.root, self.shared = root, shared
        (root / "stages").symlink_to(ROOT / "stages")
        shutil.copytree(shared.data, root / "data")
        self.params = shared.params()
        self.planted: set[Path] = set()  # hidden temp files a case put there on purpose
        self.save()

    def __truediv__(self, rel: str) -> Path:
        return self.root / rel

    def edit(self, edits: dict) -> None:
        for k, v in edits.items():
            set_key(self.params, k, v)
        self.save()

    def save(self) -> None:
        (self.root / "params.yaml").write_text(yaml.safe_dump(self.params, sort_keys=False))

    def run(self, stage: str, flags: dict | None = None, env: dict | None = None,
            umask: int = 0o022, timeout: float = 300) -> subprocess.CompletedProcess:
        args = [a for k, v in {**FLAGS[stage], **(flags or {})}.items() for a in (f"--{k}", v)]
        cmd = ["sh", "-c", f'umask {umask:03o} && exec "$0" "$@"', sys.executable,
               f"stages/{stage}.py", *args]
        try:
            return subprocess.run(cmd, cwd=self.root, capture_output=True, text=True,
                                  timeout=timeout, env={**os.environ, **(env or {})})
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(cmd, -9, str(e.stdout or ""), f"TIMEOUT {e}")

    def hidden_tmp(self) -> list[str]:
        found = []
        for d, dirs, files in os.walk(self.root):  # not into the `stages` link
            for n in dirs + files:
                p = Path(d) / n
                if n.startswith(".") and n.endswith(".tmp") and p not in self.planted:
                    found.append(str(p.relative_to(self.root)))
        return found


@dataclass
class Case:
    stage: str
    needles: tuple[str, ...] = ()  # the error names these (key or file, value, expectation)
    edits: dict = field(default_factory=dict)  # dotted params key -> value (DEL: removed)
    setup: Callable[[Project], None] | None = None
    flags: dict = field(default_factory=dict)
    check: Callable[[Project], list[str]] | None = None  # after the run: what is wrong
    env: dict = field(default_factory=dict)
    umask: int = 0o022
    must_succeed: bool = False


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Shared:
    return Shared(tmp_path_factory.mktemp("shared"))


def pytest_generate_tests(metafunc):
    if "cid" in metafunc.fixturenames:
        metafunc.parametrize("cid", list(metafunc.cls.cases))


class Catalogue:
    """A category: `cases` run concurrently by the class fixture, one test per case."""

    category = ""
    cases: dict[str, Case] = {}

    @pytest.fixture(scope="class")
    def runs(self, request, shared, tmp_path_factory):
        cls = request.cls
        chosen = [it.callspec.params["cid"] for it in request.session.items
                  if it.cls is cls and hasattr(it, "callspec") and "cid" in it.callspec.params]
        prepared = {}
        for cid in chosen:
            case = cls.cases[cid]
            proj = Project(tmp_path_factory.mktemp(cid[:30]), shared)
            try:
                proj.edit(case.edits)
                if case.setup:
                    case.setup(proj)
                prepared[cid] = proj
            except Exception as e:  # noqa: BLE001 - reported by that case's own test
                prepared[cid] = e
        with ThreadPoolExecutor(WORKERS) as ex:
            futures = {cid: ex.submit(p.run, cls.cases[cid].stage, cls.cases[cid].flags,
                                      cls.cases[cid].env, cls.cases[cid].umask)
                       for cid, p in prepared.items() if isinstance(p, Project)}
        return {cid: (p, futures[cid].result() if cid in futures else None)
                for cid, p in prepared.items()}

    def test_case(self, request, runs, cid):
        proj, r = runs[cid]
        if isinstance(proj, Exception):
            raise proj
        judge_run(request, self.cases[cid], proj, r)


# ---------------------------------------------------------------- file helpers

def vec(x: np.ndarray) -> pa.FixedSizeListArray:
    x = np.asarray(x, np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])


def low_write(path: Path, cols: dict, table: str | None, version: bytes = b"2") -> None:
    """A table written with pyarrow directly (what fclens' writers refuse to write)."""
    t = pa.table(cols)
    if table:
        t = t.replace_schema_metadata({b"fclens.table": table.encode(),
                                       b"fclens.schema_version": version})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(t, path)


def fc_cols(w, b, ci=None) -> dict:
    c = len(w)
    return {"class_index": pa.array(np.arange(c) if ci is None else ci, pa.int32()),
            "class_name": pa.array([f"c{i}" for i in range(c)], pa.string()),
            "bias": pa.array(np.asarray(b, np.float32)), "weight": vec(w)}


def feature_cols(x, y, pred) -> dict:
    n = len(x)
    return {"index": pa.array(np.arange(n), pa.int64()), "label": pa.array(y, pa.int16()),
            "pred": pa.array(pred, pa.int16()),
            "logit_true": pa.array(np.zeros(n, np.float32)), "features": vec(x)}


def low_fc(proj: Project, w=None, b=None, ci=None, **kw) -> None:
    h = proj.shared.head
    low_write(proj / FC, fc_cols(h.w if w is None else w, h.b if b is None else b, ci),
              "fc_weights", **kw)


def low_features(proj: Project, split: str = "train", x=None, y=None, pred=None, drop=(),
                 **kw) -> None:
    sh = proj.shared
    cols = feature_cols(sh.x[split] if x is None else x, sh.y[split] if y is None else y,
                        sh.pred[split] if pred is None else pred)
    low_write(proj / f"data/m/features_{split}.parquet",
              {k: v for k, v in cols.items() if k not in drop}, "features", **kw)


def with_nan(a: np.ndarray, value=np.nan, at=(1, 3)) -> np.ndarray:
    a = np.array(a, np.float32)
    a[at] = value
    return a


def rewrite_meta(path: Path, version: bytes | None) -> None:
    """The writer's table with its schema_version changed (None: no fclens stamp at all)."""
    t = pq.read_table(path)
    meta = dict(t.schema.metadata)
    if version is None:
        meta = {}
    else:
        meta[b"fclens.schema_version"] = version
    pq.write_table(t.replace_schema_metadata(meta or None), path)


def truncate(path: Path, frac: float = 0.6) -> None:
    b = path.read_bytes()
    path.write_bytes(b[:int(len(b) * frac)])


def zero_middle(path: Path) -> None:
    """Zero 16 bytes inside the largest column chunk: only the page checksum can tell."""
    md = pq.ParquetFile(path).metadata.row_group(0)
    c = max((md.column(i) for i in range(md.num_columns)), key=lambda c: c.total_compressed_size)
    start = c.dictionary_page_offset or c.data_page_offset
    b = bytearray(path.read_bytes())
    off = start + c.total_compressed_size // 2
    b[off:off + 16] = bytes(16)
    path.write_bytes(bytes(b))


def random_bytes(path: Path, n: int = 2048) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(1).integers(0, 256, n, dtype=np.uint8).tobytes())


def make_dir(path: Path) -> None:
    if path.exists():
        path.unlink()
    path.mkdir(parents=True)


def rm(path: Path) -> None:
    path.unlink()


def blocker(proj: Project) -> None:
    """A regular file where a stage expects a folder: nothing can be written below it."""
    (proj / "blocker").write_text("not a folder")


def absent(*rels: str) -> Callable[[Project], list[str]]:
    return lambda proj: [f"{r} exists after a failed run" for r in rels if (proj / r).exists()]


def unchanged(rel: str, content: bytes) -> Callable[[Project], list[str]]:
    return lambda proj: [] if (proj / rel).read_bytes() == content else [f"{rel} was replaced"]


def plant(proj: Project, rel: str, content: bytes = b"old") -> None:
    p = proj / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(content)


def untouched(rel: str) -> Callable[[Project], list[str]]:
    """`rel` (a template table) still holds the template's bytes after a failed run."""
    def check(proj: Project) -> list[str]:
        want = (proj.shared.data / Path(rel).relative_to("data")).read_bytes()
        return [] if (proj / rel).read_bytes() == want else [f"{rel} was replaced"]
    return check


def both(*checks) -> Callable[[Project], list[str]]:
    return lambda proj: [x for c in checks for x in c(proj)]


def ckpt(path: Path, depth: int = 8, num_classes: int = 3, mutate=None) -> Path:
    """A state dict saved with torch.save (torch imported here only)."""
    import torch

    from fclens.models.cifar_resnet import CifarResNet

    torch.manual_seed(0)
    sd = CifarResNet(depth, num_classes=num_classes).state_dict()
    if mutate:
        mutate(sd)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return path


def tar_with(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def jpeg(size: int = 32, seed: int = 0) -> bytes:
    img = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG")
    return buf.getvalue()


def cifar_members(classes=("cat", "dog", "frog"), n: int = 2, skip=(), odd=None) -> dict:
    """cifar10-jpeg layout members; skip: (split, class) pairs left out; odd: name -> bytes."""
    m = {f"cifar10/{s}/{c}/{i:04d}.jpg": jpeg(seed=i + 10 * k)
         for s in ("train", "test") for k, c in enumerate(classes) for i in range(n)
         if (s, c) not in skip}
    return {**m, **(odd or {})}


def use_archive(proj: Project, members: dict) -> None:
    """datasets.a -> a new archive with these members (checksum matching)."""
    p = tar_with(proj / "custom.tar.gz", members)
    proj.edit({"datasets.a": {"archive": str(p), "checksum": f"sha256:{file_digest(p)}"}})


def prepared_archive(proj: Project) -> None:
    """data/a/{train,test}.npz of the shared archive, as prepare_data writes them."""
    from fclens.datasets.prepare import read_cifar_archive
    from fclens.datasets.splits import save_split

    splits, _ = read_cifar_archive(proj.shared.archive)
    for s, split in splits.items():
        save_split(proj / f"data/a/{s}.npz", split)
    proj.edit({"feature_models.m": "a"})


def prepared_folder(proj: Project) -> None:
    """data/d/{train,test}.npz (the folder's index), as prepare_data writes them."""
    from fclens.core.params import load_params
    from fclens.datasets.prepare import prepare

    prepare(load_params(proj / "params.yaml").dataset("d"), "d", proj / "data/d")


def list_ckpt(proj: Project) -> None:
    import torch

    torch.save([torch.zeros(2)], proj / "ck.th")


def own_folder(proj: Project, **kw) -> Path:
    f = make_image_folder(proj / "imgs", classes=FOLDER_CLASSES, **kw)
    proj.edit({"datasets.d.folder": str(f)})
    return f


def sequence(*steps) -> Callable[[Project], None]:
    def run(proj: Project) -> None:
        for s in steps:
            s(proj)
    return run


# ---------------------------------------------------------------- params

def raw(text: str) -> Callable[[Project], None]:
    return lambda proj: (proj / "params.yaml").write_text(text)


def raw_sub(old: str, new: str) -> Callable[[Project], None]:
    def sub(proj: Project) -> None:
        p = proj / "params.yaml"
        text = p.read_text()
        assert text.count(old) == 1, old
        p.write_text(text.replace(old, new))
    return sub


def P(edits: dict, *needles: str, stage: str = "prepare_data", **kw) -> Case:
    return Case(stage, needles, edits, **kw)


T_MODEL = {"arch": "resnet18", "weights": "random", "num_classes": 3}
SHA0 = "sha256:" + "0" * 64


class TestParams(Catalogue):
    """Every key validated once at load (src/fclens/params.py), before any work; the stages
    that know the class count or the feature dimension check the rest."""

    category = "params"
    cases = {
        # unknown keys, at every level
        "unknown_top_key": P({"bogus": 1}, "params.yaml bogus: unknown key", "allowed keys",
                             "depth_study", "found 1"),
        "unknown_extract_key": P({"extract.devise": "cpu"}, "extract.devise: unknown key",
                                 "device", "found 'cpu'"),
        "unknown_decompose_key": P({"decompose.k3": 4}, "decompose.k3: unknown key", "k2"),
        "unknown_model_key": P({"models.m.weight": "random"}, "models.m.weight: unknown key",
                               "weights"),
        "unknown_dataset_key": P({"datasets.d.folders": "x"}, "datasets.d.folders: unknown key",
                                 "folder"),
        "unknown_grid_key": P({"decompose.grid.k3": [1]}, "decompose.grid.k3: unknown key",
                              "k1, k2"),
        "unknown_download_key": P({"datasets.a.download": {
            "url": f"{UNREACHABLE}/c.tgz", "checksum": "md5:" + "0" * 32, "archive": "dl/c.tgz",
            "mirror": "x"}}, "datasets.a.download.mirror: unknown key", "url"),
        "unknown_key_run_by_ablate": P({"ablate.n_randon": 2}, "ablate.n_randon: unknown key",
                                       "n_random", stage="ablate"),
        "unknown_key_run_by_k_grid": P({"trees.depth": 2}, "trees.depth: unknown key",
                                       "min_size", stage="k_grid"),
        # ald.plot_classes
        "plot_classes_negative": P({"ald.plot_classes": [0, -1]}, "ald.plot_classes.1",
                                   "greater than or equal to 0", "found -1"),
        "plot_classes_float": P({"ald.plot_classes": [1.5]}, "ald.plot_classes.0",
                                "valid integer", "found 1.5"),
        "plot_classes_string": P({"ald.plot_classes": ["0"]}, "ald.plot_classes.0",
                                 "valid integer", "found '0'"),
        "plot_classes_bool": P({"ald.plot_classes": [True]}, "ald.plot_classes.0",
                               "valid integer", "found True"),
        "plot_classes_empty": P({"ald.plot_classes": []}, "ald.plot_classes",
                                "at least 1 item", "found []"),
        "plot_classes_scalar": P({"ald.plot_classes": 2}, "ald.plot_classes", "valid list",
                                 "found 2"),
        "plot_classes_out_of_range_fit_ald": P(
            {"ald.plot_classes": [0, 5]}, "params.yaml ald.plot_classes", "[5]", "3 classes",
            "allowed: 0..2", stage="fit_ald", check=absent("data/m/ald_params.parquet")),
        "plot_classes_out_of_range_build_trees": P(
            {"ald.plot_classes": [3]}, "params.yaml ald.plot_classes", "[3]", "allowed: 0..2",
            stage="build_trees", check=absent("data/m/tree_nodes.parquet")),
        # ablate
        "noise_not_in_noise_modes": P({"ablate.noise": "standard_normal"}, "params.yaml ablate",
                                      "noise 'standard_normal'", "noise_modes"),
        "noise_unknown": P({"ablate.noise": "pink"}, "ablate.noise", "found 'pink'",
                           "'feature_stats'"),
        "noise_modes_unknown": P({"ablate.noise_modes": ["feature_stats", "pink"]},
                                 "ablate.noise_modes.1", "found 'pink'", "'zero'"),
        "noise_modes_empty": P({"ablate.noise_modes": []}, "ablate.noise_modes",
                               "at least 1 item", "found []"),
        "n_random_negative": P({"ablate.n_random": -1}, "ablate.n_random", "found -1"),
        # depth_study
        "depth_unknown_model": P({"depth_study.models": ["zz"]}, "depth_study.models",
                                 "unknown feature model 'zz'", "allowed: m"),
        "depth_not_a_feature_model": P(
            {"models.u": {"arch": "cifar_resnet8"}, "depth_study.models": ["u"]},
            "depth_study.models", "unknown feature model 'u'", "allowed: m"),
        "depth_non_cifar_model": P(
            {"models.t": T_MODEL, "feature_models.t": "d", "depth_study.models": ["m", "t"]},
            "depth_study.models", "'t' has arch 'resnet18'", "cifar_resnet<depth>"),
        "depth_duplicate": P({"depth_study.models": ["m", "m"]}, "depth_study.models",
                             "['m', 'm']", "twice"),
        "explorer_unknown_model": P({"explorer.models": ["zz"]}, "explorer.models",
                                    "unknown model 'zz'", "allowed: m"),
        "explorer_duplicate": P({"explorer.models": ["m", "m"]}, "explorer.models", "twice"),
        "adversarial_eps_zero": P({"adversarial.eps": [0.0, 1.0]}, "adversarial.eps.0",
                                  "greater than 0", "found 0.0"),
        "adversarial_eps_above_pixel_range": P({"adversarial.eps": [1.0, 300.0]},
                                               "params.yaml adversarial", "[300.0]",
                                               "exceeds the pixel range", "(0, 255]"),
        "adversarial_strong_eps_above_range": P({"adversarial.strong_eps": 256.0},
                                                "params.yaml adversarial", "strong_eps",
                                                "exceeds the pixel range"),
        "adversarial_no_images_per_class": P({"adversarial.n_per_class": 0},
                                             "adversarial.n_per_class", "greater than or equal "
                                             "to 1", "found 0"),
        "adversarial_unknown_model": P({"adversarial.models": ["zz"]}, "adversarial.models",
                                       "unknown feature model 'zz'"),
        "adversarial_sparse_head_not_sparsified": P(
            {"adversarial.models": ["m"], "adversarial.sparse_models": ["m"]},
            "adversarial.sparse_models", "'m' has no sparse heads", "not in sparsify.models"),
        "activations_unknown_model": P({"activations.models": ["zz"]}, "activations.models",
                                       "unknown model 'zz'"),
        "visualize_unknown_model": P({"visualize.models": ["zz"]}, "visualize.models",
                                     "unknown model 'zz'"),
        "depth_empty": P({"depth_study.models": []}, "depth_study.models", "at least 1 item",
                           "found []"),
        # numbers out of range, wrong types
        "lr_zero": P({"decompose.lr": 0}, "decompose.lr", "greater than 0", "found 0"),
        "lr_negative": P({"decompose.lr": -0.1}, "decompose.lr", "found -0.1"),
        "lr_inf": P({"decompose.lr": float("inf")}, "decompose.lr", "finite", "found inf"),
        "lr_nan": P({"decompose.lr": float("nan")}, "decompose.lr", "found nan"),
        "lr_exponent_without_dot": P({}, "decompose.lr", "valid number", "found '1e-3'",
                                     setup=raw_sub("lr: 0.01\n", "lr: 1e-3\n")),
        "lr_zero_run_by_select_influential": P({"decompose.lr": 0}, "decompose.lr",
                                               "found 0", stage="select_influential"),
        "sigma_zero": P({"explain.sigma": 0}, "explain.sigma", "greater than 0", "found 0"),
        "sigma_negative": P({"explain.sigma": -1.0}, "explain.sigma", "found -1.0"),
        "n_samples_zero": P({"explain.n_samples": 0}, "explain.n_samples", "found 0"),
        "explain_no_images": P({"explain.n_correct": 0, "explain.n_wrong": 0},
                               "params.yaml explain", "n_correct and n_wrong are both 0"),
        "explain_classes_out_of_range": P({"explain.classes": [0, 5]},
                                          "params.yaml explain.classes", "[5]", "3 classes",
                                          "allowed: 0..2", stage="explain"),
        "explain_classes_negative": P({"explain.classes": [-1]}, "explain.classes.0",
                                      "found -1"),
        "explain_image_folder_int": P({"explain.image_folder": 5}, "explain.image_folder",
                                      "valid string", "found 5"),
        "k1_string": P({"decompose.k1": "5"}, "decompose.k1", "valid integer", "found '5'"),
        "k1_bool": P({"decompose.k1": True}, "decompose.k1", "valid integer", "found True"),
        "k1_float": P({"decompose.k1": 2.5}, "decompose.k1", "valid integer", "found 2.5"),
        "k2_zero": P({"decompose.k2": 0}, "decompose.k2", "greater than or equal to 1",
                     "found 0"),
        "k2_above_feature_dim": P({"decompose.k2": 17}, "params.yaml decompose.k2", "17",
                                  "1..16", stage="select_influential"),
        "k1_above_feature_dim": P({"decompose.k1": 20}, "params.yaml decompose.k1", "20",
                                  "1..16", stage="select_influential"),
        "grid_k2_above_feature_dim": P({"decompose.grid.k2": [1, 17]},
                                       "params.yaml decompose.grid.k2", "17", "1..16",
                                       stage="k_grid", check=absent("metrics/m/k_grid.json")),
        "epochs_negative": P({"decompose.epochs": -1}, "decompose.epochs", "found -1"),
        "decompose_batch_size_string": P({"decompose.batch_size": "256"},
                                         "decompose.batch_size", "found '256'"),
        "optimizer_unknown": P({"decompose.optimizer": "rmsprop"}, "decompose.optimizer",
                               "found 'rmsprop'", "'adam' or 'sgd'"),
        "grid_k1_empty": P({"decompose.grid.k1": []}, "decompose.grid.k1", "at least 1 item",
                             "found []"),
        "grid_k2_zero": P({"decompose.grid.k2": [0, 1]}, "decompose.grid.k2.0", "found 0"),
        "batch_size_zero": P({"extract.batch_size": 0}, "extract.batch_size",
                             "greater than or equal to 1", "found 0"),
        "batch_size_bool": P({"extract.batch_size": True}, "extract.batch_size",
                             "valid integer", "found True"),
        "device_gpu": P({"extract.device": "gpu"}, "extract.device", "found 'gpu'",
                        "auto|cpu|cuda"),
        "device_cuda_letter": P({"extract.device": "cuda:x"}, "extract.device",
                                "found 'cuda:x'"),
        "amp_fp8": P({"extract.amp": "fp8"}, "extract.amp", "found 'fp8'", "'bf16'"),
        "channels_last_string": P({"extract.channels_last": "yes"}, "extract.channels_last",
                                  "valid boolean", "found 'yes'"),
        "num_workers_negative": P({"extract.num_workers": -2}, "extract.num_workers",
                                  "found -2"),
        "num_threads_negative": P({"extract.num_threads": -1}, "extract.num_threads",
                                  "found -1"),
        "row_group_size_zero": P({"extract.row_group_size": 0}, "extract.row_group_size",
                                 "found 0"),
        "seed_negative": P({"seed": -1}, "params.yaml seed", "found -1"),
        "seed_float": P({"seed": 0.5}, "params.yaml seed", "valid integer", "found 0.5"),
        "seed_string": P({"seed": "0"}, "params.yaml seed", "found '0'"),
        "trees_mode_unknown": P({"trees.mode": "tree"}, "trees.mode", "found 'tree'",
                                "'chain' or 'full'"),
        "trees_min_size_one": P({"trees.min_size": 1}, "trees.min_size",
                                "greater than or equal to 2", "found 1"),
        "max_tiles_zero": P({"pictures.max_tiles": 0}, "pictures.max_tiles", "found 0"),
        "explain_method_unknown": P({"explain.methods": ["cam"]}, "explain.methods.0",
                                    "found 'cam'", "'gradcam'"),
        # references between sections
        "feature_models_unknown_model": P({"feature_models.zz": "d"}, "feature_models",
                                          "unknown model 'zz'", "allowed: m"),
        "feature_models_unknown_dataset": P({"feature_models.m": "nods"}, "feature_models",
                                            "unknown dataset 'nods'", "allowed: d, a"),
        "finetune_unknown_model": P({"finetune": {"models": ["zz"]}}, "finetune.models",
                                    "unknown feature model 'zz'"),
        "finetune_folder_dataset": P({"finetune": {"models": ["m"]}}, "finetune.models",
                                     "'m' uses an image folder", "archive"),
        "finetune_epochs_zero": P({"finetune": {"epochs": 0}}, "finetune.epochs", "found 0"),
        "photo_models_unknown": P({"explain.photo_models": ["zz"]}, "explain.photo_models",
                                  "unknown model 'zz'", "allowed: m"),
        "unknown_dataset_flag": P({}, "params.yaml datasets", "'zz'", "allowed: d, a",
                                  flags={"dataset": "zz"}),
        # models
        "models_empty": P({"models": {}}, "params.yaml models", "at least 1 item",
                           "found {}"),
        "cifar_depth_not_6n2": P({"models.m.arch": "cifar_resnet10"}, "models.m.arch",
                                 "cifar_resnet10", "6n+2"),
        "num_classes_zero": P({"models.m.num_classes": 0}, "models.m.num_classes", "found 0"),
        "weights_empty": P({"models.m.weights": ""}, "models.m.weights", "empty",
                           "allowed: random, hub, pypi"),
        "weights_int": P({"models.m.weights": 5}, "models.m.weights", "valid string",
                         "found 5"),
        "cifar_weights_hub": P({"models.m.weights": "hub"}, "models.m.weights", "'hub'",
                               "cifar_resnet8", "allowed: random or a checkpoint path"),
        "cifar_weights_pypi": P({"models.m.weights": "pypi"}, "models.m.weights", "'pypi'",
                                "allowed: random or a checkpoint path"),
        "model_checksum_format": P({"models.m.checksum": "sha1:" + "0" * 40},
                                   "models.m.checksum", "found 'sha1:", "sha256:[0-9a-fA-F]{64}"),
        "url_without_checksum": P({"models.m.weights": "ck/r8.th",
                                   "models.m.url": f"{UNREACHABLE}/r8.th"}, "models.m.url",
                                  f"'{UNREACHABLE}/r8.th'", "checksum: sha256:<hex>"),
        # datasets
        "dataset_checksum_format": P({"datasets.a.checksum": "sha256:abc"},
                                     "datasets.a.checksum", "found 'sha256:abc'"),
        "download_checksum_format": P({"datasets.a.download": {
            "url": f"{UNREACHABLE}/c.tgz", "checksum": "md5:xyz", "archive": "dl/c.tgz"}},
            "datasets.a.download.checksum", "found 'md5:xyz'"),
        "dataset_archive_without_checksum": P({"datasets.a": {"archive": "x.tgz"}},
                                              "datasets.a", "checksum", "found {'archive'"),
        "dataset_folder_and_archive": P({"datasets.d.archive": "x.tgz",
                                         "datasets.d.checksum": SHA0}, "datasets.d",
                                        "not both"),
        "dataset_empty_entry": P({"datasets.d": {}}, "datasets.d", "expected `folder"),
        "datasets_empty": P({"datasets": {}, "feature_models": {}}, "params.yaml datasets",
                            "at least 1 item", "found {}"),
        # sections and files
        "missing_key": P({"decompose.k1": DEL}, "decompose.k1", "Field required"),
        "missing_section": P({"ablate": DEL}, "params.yaml ablate", "Field required"),
        "section_not_a_mapping": P({"extract": "cpu"}, "params.yaml extract",
                                   "valid dictionary", "found 'cpu'"),
        "section_null": P({"ald": None}, "params.yaml ald", "found None"),
        "yaml_invalid": P({}, "params.yaml", "not valid YAML", setup=raw("seed: [0\n")),
        "yaml_list": P({}, "params.yaml", "expected a mapping", "got list",
                       setup=raw("- seed\n- 0\n")),
        "yaml_empty": P({}, "params.yaml", "expected a mapping", "got NoneType",
                        setup=raw("")),
        "yaml_duplicate_key": P({}, "params.yaml", "'k2' given twice", "line",
                                setup=raw_sub("  k2: 3\n", "  k2: 3\n  k2: 4\n")),
        "params_missing": P({}, "params.yaml", "not found",
                            setup=lambda proj: (proj / "params.yaml").unlink()),
        # valid params: must pass (and the folder's classes are its folder names)
        "valid_params_prepare_folder": P(
            {}, stage="prepare_data", must_succeed=True,
            check=lambda proj: [] if tuple(np.load(proj / "data/d/train.npz")["class_names"])
            == FOLDER_CLASSES else ["wrong class names"]),
    }


# ---------------------------------------------------------------- tables

def S(stage: str, setup, *needles: str, **kw) -> Case:
    return Case(stage, needles, setup=setup, **kw)


def other_head(proj: Project) -> None:
    rng = np.random.default_rng(7)
    h = proj.shared.head
    tables.write_fc_weights(proj / FC, tables.Head(rng.normal(size=h.w.shape).astype(np.float32),
                                                   h.b, h.names))


def train_without_class_2(proj: Project) -> None:
    sh = proj.shared
    y = np.where(sh.y["train"] == 2, 0, sh.y["train"])
    write_features(proj / TRAIN, sh.x["train"], y, sh.pred["train"], sh.head)


def one_class_head(proj: Project) -> None:
    h = proj.shared.head
    tables.write_fc_weights(proj / FC, tables.Head(h.w[:1], h.b[:1], h.names[:1]))


def geometry_ok(proj: Project) -> list[str]:
    g = json.loads((proj / "metrics/m/geometry.json").read_text())
    ctl = g["test"]["control_shuffled_labels"]
    return [] if np.isfinite([g["train"]["nc1"], g["test"]["nc4"], ctl["nc1"]]).all() else [
        f"non-finite geometry: {g}"]


def infl_frame(proj: Project, drop_last: bool = False, extra_class: bool = False,
               classes: tuple[int, ...] = (0, 1, 2)) -> None:
    import pandas as pd

    infl = proj.shared.infl
    c, k2 = infl.idx.shape
    f = pd.DataFrame({"class_index": np.repeat(np.arange(c, dtype=np.int32), k2),
                      "rank": np.tile(np.arange(k2, dtype=np.int16), c),
                      "feature_index": infl.idx.ravel().astype(np.int32),
                      "count": infl.counts.ravel().astype(np.int64)})
    f = f[f["class_index"].isin(classes)]
    if drop_last:
        f = f.iloc[:-1]
    if extra_class:
        f = pd.concat([f, f.iloc[:k2].assign(class_index=np.int32(5))])
    tables.write_frame(proj / INFL, f, tables.INFLUENTIAL, 6 if extra_class else c)


def infl_idx(proj: Project, idx) -> None:
    sh = proj.shared
    tables.write_influential(proj / INFL, tables.Influential(np.asarray(idx), sh.infl.counts))


def infl_ok(proj: Project) -> list[str]:
    got = tables.read_influential(proj / INFL, C, D)
    return [] if np.array_equal(got.idx, proj.shared.infl.idx) else ["wrong influential indices"]


def ablate_ok(proj: Project) -> list[str]:
    m = json.loads((proj / "metrics/m/ablate.json").read_text())
    sh = proj.shared
    want = accuracy(sh.head.logits(sh.x["test"]), sh.y["test"])
    return [] if abs(m["acc_original"] - want) < 1e-4 else [f"acc_original {m['acc_original']}"]


def k_grid_ok(proj: Project) -> list[str]:
    m = json.loads((proj / "metrics/m/k_grid.json").read_text())
    sh = proj.shared
    want = accuracy(sh.head.logits(sh.x["test"]), sh.y["test"])
    return ([] if abs(m["acc_original"] - want) < 1e-4 and set(m["acc_decomposed"]) ==
            {"k1=1", "k1=3"} else [f"wrong k_grid metrics {m}"])


def small_features(proj: Project, split: str = "train") -> None:
    sh = proj.shared
    x = sh.x[split][:, :8]
    h8 = tables.Head(sh.head.w[:, :8], sh.head.b, NAMES)
    write_features(proj / f"data/m/features_{split}.parquet", x, sh.y[split],
                   h8.logits(x).argmax(1), h8)


W_MODEL = {"arch": "cifar_resnet8", "weights": "random", "num_classes": 3}  # weights only


def explorer_project(constant_row: bool = False, tables_too: bool = True
                     ) -> Callable[[Project], None]:
    """A project whose explorer lists the weights-only model w (its data and metrics folders
    declared in a dvc.yaml of its own), with its weight tables as the pipeline writes them."""
    def setup(proj: Project) -> None:
        from test_explorer import weights_project

        (proj / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"explorer": {
            "cmd": "python stages/explorer.py", "deps": ["data/w", "metrics/w"]}}}))
        proj.edit({"models.w": W_MODEL, "explorer.models": ["w"]})
        head = proj.shared.head
        if constant_row:
            head = tables.Head(np.where(np.arange(C)[:, None] == 1, 0.0, head.w)
                               .astype(np.float32), head.b, head.names)
            (proj / "data/w").mkdir(parents=True)
            tables.write_fc_weights(proj / "data/w/fc_weights.parquet", head)
        elif tables_too:
            weights_project(proj.root, "w", head)
    return setup


def explorer_ok(proj: Project) -> list[str]:
    e = json.loads((proj / "metrics/explorer.json").read_text())
    pages = list((proj / "explorer/w").glob("[0-9]*.html"))
    return [] if e["n_class_pages"] == C == len(pages) and e["n_feature_pages"] == D else [
        f"explorer.json {e} vs {len(pages)} class pages"]


def depth_project(decompose_json: bytes | None = None) -> Callable[[Project], None]:
    """A project whose depth study lists cifar_resnet20 (declared in the real dvc.yaml)."""
    def setup(proj: Project) -> None:
        shutil.copy(ROOT / "dvc.yaml", proj / "dvc.yaml")
        proj.edit({"models.cifar_resnet20": {"arch": "cifar_resnet20", "num_classes": 3},
                   "feature_models.cifar_resnet20": "d",
                   "depth_study.models": ["cifar_resnet20"]})
        if decompose_json is not None:
            plant(proj, "metrics/cifar_resnet20/decompose.json", decompose_json)
            plant(proj, "metrics/cifar_resnet20/ablate.json", b"{}")
    return setup


class TestTables(Catalogue):
    """Every table a stage reads, broken in every way we know (fclens/tables.py's readers)."""

    category = "tables"
    cases = {
        # fc_weights, read first by select_influential
        "fc_missing": S("select_influential", lambda p: rm(p / FC), "fc_weights.parquet",
                        "missing", "extract_weights"),
        "fc_is_directory": S("select_influential", lambda p: make_dir(p / FC),
                             "fc_weights.parquet", "is a directory",
                             "expected a fc_weights Parquet file"),
        "fc_truncated": S("select_influential", lambda p: truncate(p / FC),
                          "fc_weights.parquet", "truncated or corrupted"),
        "fc_empty_file": S("select_influential", lambda p: (p / FC).write_bytes(b""),
                           "fc_weights.parquet", "not a readable Parquet file"),
        "fc_zeroed_middle": S("select_influential", lambda p: zero_middle(p / FC),
                              "fc_weights.parquet", "CRC checksum verification failed",
                              "corrupted"),
        "fc_random_bytes": S("select_influential", lambda p: random_bytes(p / FC),
                             "fc_weights.parquet", "not a readable Parquet file"),
        "fc_foreign_schema": S("select_influential",
                               lambda p: pq.write_table(pa.table({"a": [1, 2]}), p / FC),
                               "fc_weights.parquet", "not a valid fc_weights table",
                               "missing columns ['class_index'"),
        "fc_weight_float64": S("select_influential", lambda p: low_write(p / FC, {
            **fc_cols(p.shared.head.w, p.shared.head.b),
            "weight": pa.array(p.shared.head.w.astype(np.float64).tolist())}, "fc_weights"),
            "fc_weights.parquet", "wrong types", "weight: list<element: double>",
            "fixed_size_list<item: float>[D]"),
        "fc_missing_column": S("select_influential", lambda p: low_write(p / FC, {
            k: v for k, v in fc_cols(p.shared.head.w, p.shared.head.b).items() if k != "bias"},
            "fc_weights"), "fc_weights.parquet", "missing columns ['bias']"),
        "fc_older_schema_version": S("select_influential", lambda p: rewrite_meta(p / FC, b"1"),
                                     "fc_weights.parquet", "schema_version 1", "older",
                                     "extract_weights"),
        "fc_newer_schema_version": S("select_influential", lambda p: rewrite_meta(p / FC, b"3"),
                                     "fc_weights.parquet", "schema_version 3", "newer",
                                     "upgrade"),
        "fc_unstamped_old_table": S("select_influential", lambda p: rewrite_meta(p / FC, None),
                                    "fc_weights.parquet", "schema_version 1", "older"),
        "fc_is_features_table": S("select_influential",
                                  lambda p: shutil.copy(p / TRAIN, p / FC), "fc_weights.parquet",
                                  "is a features table", "expected a fc_weights table"),
        "fc_zero_rows": S("select_influential", lambda p: low_fc(
            p, w=np.zeros((0, D)), b=np.zeros(0)), "fc_weights.parquet", "0 rows",
            "at least 1"),
        "fc_duplicate_class_index": S("select_influential", lambda p: low_fc(p, ci=[0, 1, 1]),
                                      "fc_weights.parquet", "class_index must be 0..2",
                                      "2 distinct values"),
        "fc_class_index_gap": S("select_influential", lambda p: low_fc(p, ci=[0, 1, 5]),
                                "fc_weights.parquet", "class_index must be 0..2", "0..5"),
        # features
        "features_missing": S("select_influential", lambda p: rm(p / TRAIN),
                              "features_train.parquet", "missing", "extract_activations"),
        "features_is_directory": S("select_influential", lambda p: make_dir(p / TRAIN),
                                   "features_train.parquet", "is a directory"),
        "features_truncated": S("select_influential", lambda p: truncate(p / TRAIN, 0.9),
                                "features_train.parquet", "truncated or corrupted"),
        "features_zeroed_middle": S("select_influential", lambda p: zero_middle(p / TRAIN),
                                    "features_train.parquet", "CRC checksum verification failed"),
        "features_random_bytes": S("select_influential", lambda p: random_bytes(p / TRAIN),
                                   "features_train.parquet", "not a readable Parquet file"),
        "features_wrong_dimension": S("select_influential", small_features,
                                      "features_train.parquet", "dimension 8", "expected 16"),
        "features_is_fc_table": S("select_influential", lambda p: shutil.copy(p / FC, p / TRAIN),
                                  "features_train.parquet", "is a fc_weights table",
                                  "expected a features table"),
        "features_older_schema_version": S("select_influential",
                                           lambda p: rewrite_meta(p / TRAIN, b"1"),
                                           "features_train.parquet", "schema_version 1", "older"),
        "features_newer_schema_version": S("select_influential",
                                           lambda p: rewrite_meta(p / TRAIN, b"7"),
                                           "features_train.parquet", "schema_version 7", "newer"),
        "features_zero_rows": S("select_influential", lambda p: FeatureWriter(
            p / TRAIN, D, C, 10).__enter__().__exit__(None, None, None),
            "features_train.parquet", "0 rows"),
        "features_label_out_of_range": S("select_influential", lambda p: low_features(
            p, y=np.arange(30) % 4), "features_train.parquet", "'label'", "0..3",
            "expected class indices in 0..2"),
        "features_label_negative": S("select_influential", lambda p: low_features(
            p, y=np.arange(30) % 3 - 1), "features_train.parquet", "'label'", "-1..1"),
        "features_pred_out_of_range": S("select_influential", lambda p: low_features(
            p, pred=np.full(30, 7)), "features_train.parquet", "'pred'", "7..7"),
        "features_foreign_schema": S("select_influential", lambda p: pq.write_table(
            pa.table({"x": [1.0], "y": [0]}), p / TRAIN), "features_train.parquet",
            "not a valid features table", "missing columns"),
        "features_missing_column": S("select_influential", lambda p: low_features(
            p, drop=("pred",)), "features_train.parquet", "missing columns ['pred']"),
        "test_split_missing": S("ablate", lambda p: rm(p / TEST), "features_test.parquet",
                                "missing"),
        "test_split_wrong_dimension": S("k_grid", lambda p: small_features(p, "test"),
                                        "features_test.parquet", "dimension 8", "expected 16"),
        # influential, read by ablate (decompose reads it the same way)
        "influential_missing": S("ablate", lambda p: rm(p / INFL), "influential.parquet",
                                 "missing", "select_influential"),
        "influential_rows_not_k2": S("ablate", lambda p: infl_frame(p, drop_last=True),
                                     "influential.parquet", "8 rows",
                                     "same number of rows (k2) for each of 3 classes"),
        "influential_class_missing": S("ablate", lambda p: infl_frame(p, classes=(0, 1)),
                                       "influential.parquet", "6 rows for classes [0, 1]",
                                       "for each of 3 classes"),
        "influential_class_out_of_range": S("ablate", lambda p: infl_frame(p, extra_class=True),
                                            "influential.parquet", "'class_index'", "0..5",
                                            "0..2"),
        "influential_feature_index_too_big": S("ablate", lambda p: infl_idx(
            p, [[0, 1, 99], [0, 1, 2], [3, 4, 5]]), "influential.parquet", "feature_index in 0..99",
            "expected 0..15"),
        "influential_feature_index_negative": S("ablate", lambda p: infl_idx(
            p, [[0, 1, -1], [0, 1, 2], [3, 4, 5]]), "influential.parquet", "-1..5",
            "expected 0..15"),
        "influential_duplicate_feature": S("ablate", lambda p: infl_idx(
            p, [[1, 1, 2], [0, 1, 2], [3, 4, 5]]), "influential.parquet", "class_index [0]",
            "twice", "3 distinct"),
        "influential_is_fc_table": S("ablate", lambda p: shutil.copy(p / FC, p / INFL),
                                     "influential.parquet", "is a fc_weights table",
                                     "expected a influential table"),
        "influential_zeroed_middle": S("decompose", lambda p: zero_middle(p / INFL),
                                       "influential.parquet", "CRC checksum verification failed",
                                       check=absent("metrics/m/decompose.json",
                                                    "plots/m/decompose")),
        # metrics JSON read by the depth study
        "depth_model_not_declared_in_dvc_yaml": S(
            "depth_study", lambda p: shutil.copy(ROOT / "dvc.yaml", p / "dvc.yaml"), "dvc.yaml",
            "stages.depth_study.deps", "add metrics/m"),
        "depth_metrics_missing": S("depth_study", depth_project(), "metrics/cifar_resnet20/",
                                   "missing", "run the stage"),
        "depth_metrics_not_json": S("depth_study", depth_project(b"{not json"),
                                    "metrics/cifar_resnet20/decompose.json", "not valid JSON"),
        "depth_metrics_key_missing": S("depth_study", depth_project(b"{}"),
                                       "metrics/cifar_resnet20/decompose.json",
                                       "no key acc_original", check=absent("metrics/depth.json")),
        # the explorer's inputs
        "explorer_model_not_declared_in_dvc_yaml": S(
            "explorer", lambda p: (shutil.copy(ROOT / "dvc.yaml", p / "dvc.yaml"),
                                   p.edit({"explorer.models": ["m"]})),
            "dvc.yaml", "stages.explorer.deps", "add data/m, metrics/m",
            check=absent("metrics/explorer.json", "explorer")),
        "explorer_model_without_weight_tables": S(
            "explorer", explorer_project(tables_too=False), "explorer.models", "'w'",
            "no weight tables", "data/w/fc_weights.parquet is missing",
            check=absent("metrics/explorer.json", "explorer")),
        "explorer_constant_weight_row": S(
            "explorer", explorer_project(constant_row=True), "data/w/fc_weights.parquet",
            "class 1", "constant weight row", check=absent("metrics/explorer.json", "explorer")),
        "explorer_ok": S("explorer", explorer_project(), must_succeed=True, check=explorer_ok),
        # the same inputs, intact: must pass with the right result
        "select_influential_ok": S("select_influential", None, must_succeed=True,
                                   check=infl_ok),
        "ablate_ok": S("ablate", None, must_succeed=True, check=ablate_ok),
        "k_grid_ok": S("k_grid", None, must_succeed=True, check=k_grid_ok),
    }


# ---------------------------------------------------------------- non-finite values

def ald_json_finite(proj: Project) -> list[str]:
    m = json.loads((proj / "metrics/m/ald.json").read_text())

    def nulls(obj, key=""):
        if isinstance(obj, dict):
            return [x for k, v in obj.items() for x in nulls(v, f"{key}.{k}")]
        return [key] if obj is None and "median" in key else []

    return [f"ald.json {k} is NaN" for k in nulls(m)]


def nan_ckpt(key: str, value=float("nan")) -> Callable[[Project], None]:
    def setup(proj: Project) -> None:
        ckpt(proj / "ck/r8.th", mutate=lambda sd: sd[key].view(-1).__setitem__(0, value))
        proj.edit({"models.m.weights": "ck/r8.th"})
    return setup


def overflow_ckpt(proj: Project) -> None:
    def scale(sd):
        for k, v in sd.items():
            if k.endswith("conv1.weight") or k.endswith("conv2.weight"):
                v.mul_(1e12)
    ckpt(proj / "ck/r8.th", mutate=scale)
    proj.edit({"models.m.weights": "ck/r8.th"})
    prepared_archive(proj)


class TestNonFinite(Catalogue):
    """NaN/inf in a checkpoint, in FC weights, in features; writers refuse them (in-process)."""

    category = "nonfinite"
    cases = {
        "checkpoint_nan_conv": S("extract_weights", nan_ckpt("conv1.weight"), "models.m",
                                 "ck/r8.th", "non-finite", "conv1.weight", "expected finite"),
        "checkpoint_inf_fc_weights_pictures": S(
            "weights_pictures", nan_ckpt("linear.weight", float("inf")), "models.m",
            "non-finite", "linear.weight"),
        "checkpoint_overflows_to_inf": S("extract_activations", overflow_ckpt, "m train",
                                         "non-finite features or logits",
                                         check=untouched(TRAIN)),
        "fc_nan_weight_select_influential": S("select_influential", lambda p: low_fc(
            p, w=with_nan(p.shared.head.w)), "fc_weights.parquet", "'weight'", "non-finite",
            "expected finite"),
        "fc_nan_weight_fit_ald": S("fit_ald", lambda p: low_fc(p, w=with_nan(p.shared.head.w)),
                                   "fc_weights.parquet", "'weight'", "non-finite",
                                   check=absent("metrics/m/ald.json")),
        "fc_inf_bias_build_trees": S("build_trees", lambda p: low_fc(
            p, b=with_nan(p.shared.head.b, np.inf, at=1)), "fc_weights.parquet", "'bias'",
            "non-finite"),
        "fc_nan_weight_decompose": S("decompose", lambda p: low_fc(
            p, w=with_nan(p.shared.head.w)), "fc_weights.parquet", "non-finite",
            check=absent("metrics/m/decompose.json")),
        "features_nan": S("select_influential", lambda p: low_features(
            p, x=with_nan(p.shared.x["train"])), "features_train.parquet", "'features'",
            "non-finite"),
        "features_inf_test_split": S("ablate", lambda p: low_features(
            p, "test", x=with_nan(p.shared.x["test"], np.inf)), "features_test.parquet",
            "'features'", "non-finite", check=absent("metrics/m/ablate.json")),
        "features_neg_inf_k_grid": S("k_grid", lambda p: low_features(
            p, x=with_nan(p.shared.x["train"], -np.inf)), "features_train.parquet",
            "non-finite"),
        "fit_ald_ok_finite_medians": S("fit_ald", None, must_succeed=True,
                                       check=ald_json_finite),
    }

    def test_writer_refuses_nan_fc_weights(self, request, tmp_path, shared):
        h = shared.head
        judge_call(request, lambda: tables.write_fc_weights(
            tmp_path / "fc_weights.parquet", tables.Head(with_nan(h.w), h.b, h.names)),
            ("fc_weights.parquet (writing)", "'weight'", "non-finite"),
            check=lambda: [str(p) for p in tmp_path.iterdir()])

    def test_feature_writer_refuses_inf(self, request, tmp_path, shared):
        x = with_nan(shared.x["train"], np.inf)
        judge_call(request, lambda: write_features(tmp_path / "features_train.parquet", x,
                                                   shared.y["train"], shared.pred["train"],
                                                   shared.head),
                   ("features_train.parquet (rows 0..29)", "non-finite", "expected finite"),
                   check=lambda: [str(p) for p in tmp_path.iterdir()])

    def test_write_frame_refuses_nan(self, request, tmp_path):
        import pandas as pd

        f = pd.DataFrame({"class_index": np.arange(3, dtype=np.int32), "class_name": NAMES,
                          "acc_original": [0.5, np.nan, 1.0], "acc_noise_influential": 0.1,
                          "acc_noise_noninfluential": 0.2, "n_images": 4.0})
        judge_call(request, lambda: tables.write_frame(tmp_path / "per_class.parquet", f,
                                                       tables.ABLATE_PER_CLASS, 3),
                   ("per_class.parquet (writing)", "'acc_original'", "non-finite"),
                   check=lambda: [str(p) for p in tmp_path.iterdir()])


# ---------------------------------------------------------------- offline and sources

def weights(path: str, **extra) -> Callable[[Project], None]:
    return lambda proj: proj.edit({"models.m.weights": path, **{f"models.m.{k}": v
                                                               for k, v in extra.items()}})


def real_ckpt(proj: Project, **kw) -> Path:
    return ckpt(proj / "ck/r8.th", **kw)


def ckpt_matches(proj: Project) -> list[str]:
    import torch

    sd = torch.load(proj / "ck/r8.th", weights_only=True)
    h = tables.read_fc_weights(proj / FC)
    return ([] if np.array_equal(h.w, sd["linear.weight"].numpy()) and
            np.array_equal(h.b, sd["linear.bias"].numpy()) else ["fc_weights differ from ckpt"])


def truncated_ckpt(proj: Project) -> None:
    truncate(real_ckpt(proj), 0.5)
    weights("ck/r8.th")(proj)


def download_cfg(proj: Project, archive: str = "dl/c.tgz") -> None:
    proj.edit({"datasets.a.archive": "absent.tar.gz", "datasets.a.download": {
        "url": f"{UNREACHABLE}/c.tgz", "checksum": "md5:" + "0" * 32, "archive": archive}})


class TestSources(Catalogue):
    """Checkpoints and datasets: absent while offline, corrupt, of another architecture."""

    category = "sources"
    cases = {
        "checkpoint_absent_url_offline": S(
            "extract_weights", weights("ck/r8.th", url=f"{UNREACHABLE}/r8.th", checksum=SHA0),
            "ck/r8.th", "models.m.weights", f"downloading {UNREACHABLE}/r8.th failed",
            "Offline, put either", check=both(absent("data/downloads/r8.th"), untouched(FC))),
        "checkpoint_absent_no_url": S("extract_weights", weights("ck/r8.th"), "ck/r8.th",
                                      "checkpoint not found", "models.m.weights",
                                      "expected an existing file"),
        "weights_typo": S("extract_weights", weights("radnom"), "radnom", "models.m.weights",
                          "one of random, hub, pypi"),
        "weights_is_directory": S("extract_weights", sequence(
            lambda p: (p / "ck").mkdir(), weights("ck")), "ck: is a directory",
            "models.m.weights", "expected a checkpoint file"),
        "checkpoint_random_bytes": S("extract_weights", sequence(
            lambda p: random_bytes(p / "ck/r8.th"), weights("ck/r8.th")), "ck/r8.th",
            "not a loadable torch checkpoint"),
        "checkpoint_empty": S("extract_weights", sequence(
            lambda p: random_bytes(p / "ck/r8.th", 0), weights("ck/r8.th")), "ck/r8.th",
            "not a loadable torch checkpoint"),
        "checkpoint_truncated": S("extract_weights", truncated_ckpt, "ck/r8.th",
                                  "not a loadable torch checkpoint"),
        "checkpoint_other_arch": S("extract_weights", sequence(
            lambda p: real_ckpt(p, depth=14), weights("ck/r8.th")), "ck/r8.th",
            "does not fit CifarResNet", "unexpected [layer1.1"),
        "checkpoint_not_a_state_dict": S("extract_weights", sequence(
            list_ckpt, weights("ck.th")), "ck.th", "expected a state dict, got list"),
        "checkpoint_bad_checksum": S("extract_weights", sequence(
            real_ckpt, weights("ck/r8.th", checksum="sha256:" + "1" * 64)), "ck/r8.th",
            "sha256 is", "expected 1111", "models.m.checksum"),
        "hub_offline": S("extract_weights", lambda p: p.edit({"models.h": {
            "arch": "resnet18", "weights": "hub", "num_classes": 3}}), "models.h.weights",
            "hub", "could not fetch pretrained resnet18", "Offline",
            flags={"model": "h"}, env={"HF_HUB_OFFLINE": "1"}),
        "arch_typo": S("extract_weights", lambda p: p.edit({"models.t": {
            "arch": "resnet18x", "weights": "random"}}), "models.t.arch", "'resnet18x'",
            "timm model name", flags={"model": "t"}),
        "pypi_for_other_timm_arch": S("extract_weights", lambda p: p.edit({"models.t": {
            "arch": "resnet18", "weights": "pypi", "num_classes": 3}}), "models.t.weights",
            "'pypi' only exists", flags={"model": "t"}),
        "unknown_model_flag": S("extract_weights", None, "params.yaml models", "'zz'",
                                "allowed: m", flags={"model": "zz"}),
        "checkpoint_ok": S("extract_weights", sequence(
            real_ckpt, lambda p: p.edit({"models.m.weights": "ck/r8.th",
                                         "models.m.checksum": "sha256:" + file_digest(
                                             p / "ck/r8.th")})), must_succeed=True,
            check=ckpt_matches),
        # datasets (prepare_data)
        "archive_absent_no_download": S("prepare_data", lambda p: p.edit(
            {"datasets.a.archive": "absent.tar.gz"}), "absent.tar.gz", "not found",
            "datasets.a.archive", "configure params.yaml datasets.a.download",
            flags={"dataset": "a"}),
        "archive_is_directory": S("prepare_data", sequence(
            lambda p: (p / "arch").mkdir(), lambda p: p.edit({"datasets.a.archive": "arch"})),
            "arch: is a directory", "datasets.a.archive", "expected an archive file",
            flags={"dataset": "a"}, check=absent("data/d/train.npz")),
        "archive_bad_checksum": S("prepare_data", lambda p: p.edit(
            {"datasets.a.checksum": "sha256:" + "2" * 64}), "tiny.tar.gz", "sha256 is",
            "expected 2222", "datasets.a.checksum", flags={"dataset": "a"},
            check=absent("data/d/train.npz")),
        "archive_absent_download_offline": S(
            "prepare_data", download_cfg, "absent.tar.gz", "datasets.a.archive",
            f"downloading {UNREACHABLE}/c.tgz failed", "Offline",
            flags={"dataset": "a"}, check=absent("dl/c.tgz", "dl/c.tgz.part")),
        "downloaded_archive_bad_checksum": S(
            "prepare_data", sequence(download_cfg, lambda p: random_bytes(p / "dl/c.tgz")),
            "dl/c.tgz", "md5 is", "datasets.a.download.checksum", flags={"dataset": "a"}),
        "archive_not_a_tar": S("prepare_data", sequence(
            lambda p: random_bytes(p / "bad.tar.gz"), lambda p: p.edit({"datasets.a": {
                "archive": "bad.tar.gz", "checksum": "sha256:" + file_digest(
                    p / "bad.tar.gz")}})), "bad.tar.gz", "cannot read as a CIFAR-10 archive",
            flags={"dataset": "a"}),
        "archive_wrong_layout": S("prepare_data", lambda p: use_archive(
            p, {"pics/a.jpg": jpeg(), "pics/b.jpg": jpeg(seed=1)}), "custom.tar.gz",
            "no images under */train/<class>/*.jpg", "expected the cifar10-jpeg layout",
            flags={"dataset": "a"}),
        "folder_absent": S("prepare_data", lambda p: p.edit({"datasets.d.folder": "nope"}),
                           "nope: not a directory", "datasets.d.folder", "expected"),
        "folder_without_val": S("prepare_data", lambda p: shutil.rmtree(own_folder(p) / "val"),
                                "no val or test/ subfolder", "datasets.d.folder"),
    }


# ---------------------------------------------------------------- dataset vs model

def folder_edit(fn) -> Callable[[Project], None]:
    def setup(proj: Project) -> None:
        fn(own_folder(proj))
    return setup


def extract_ok(proj: Project) -> list[str]:
    m = json.loads((proj / "metrics/m/extract.json").read_text())
    f = tables.read_features(proj / TRAIN, 3, 64)
    problems = [] if m["logit_max_abs_err"] < 1e-4 else [f"logit error {m['logit_max_abs_err']}"]
    if abs(m["acc_train"] - float((f.preds == f.labels).mean())) > 1e-4:
        problems.append("acc_train does not match the features table")
    if (m["n_train"], m["n_test"], m["feature_dim"], len(f.labels)) != (12, 12, 64, 12):
        problems.append(f"wrong counts {m}")
    return problems


def corrupt_jpg(folder: Path) -> None:
    (folder / "train/n02/001.JPEG").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")


class TestConsistency(Catalogue):
    """The dataset against itself and against the model."""

    category = "consistency"
    cases = {
        "num_classes_differs_from_data": S(
            "extract_activations", sequence(prepared_archive,
                                            lambda p: p.edit({"models.m.num_classes": 4})),
            "train.npz", "3 classes", "model m has 4 outputs", check=untouched(TRAIN)),
        "archive_class_only_in_train": S("prepare_data", lambda p: use_archive(
            p, cifar_members(skip={("test", "frog")})), "custom.tar.gz", "test split",
            "['frog']", "expected every class in every split", flags={"dataset": "a"}),
        "archive_one_class": S("prepare_data", lambda p: use_archive(
            p, cifar_members(classes=("cat",))), "custom.tar.gz", "1 class (cat)",
            "expected at least 2 classes", flags={"dataset": "a"}),
        "archive_corrupt_member": S("prepare_data", lambda p: use_archive(
            p, cifar_members(odd={"cifar10/train/dog/0001.jpg": b"garbage"})), "custom.tar.gz",
            "member cifar10/train/dog/0001.jpg", "cannot decode", flags={"dataset": "a"}),
        "archive_mixed_sizes": S("prepare_data", lambda p: use_archive(
            p, cifar_members(odd={"cifar10/train/dog/0001.jpg": jpeg(40)})), "custom.tar.gz",
            "images of different sizes", "40x40", "expected one size", flags={"dataset": "a"}),
        "folder_class_only_in_train": S("prepare_data", folder_edit(
            lambda f: shutil.rmtree(f / "val/n03")), "different class folders",
            "only in train: ['n03']", "expected the same classes"),
        "folder_empty_class": S("prepare_data", folder_edit(
            lambda f: [x.unlink() for x in (f / "train/n02").iterdir()]), "train",
            "class folders without images (n02", "expected at least one"),
        "folder_one_class": S("prepare_data", folder_edit(lambda f: [
            shutil.rmtree(f / s / c) for s in ("train", "val") for c in ("n02", "n03")]),
            "1 class (n01)", "expected at least 2 classes"),
        "folder_corrupt_jpeg": S("extract_activations", sequence(
            folder_edit(corrupt_jpg), lambda p: p.edit({"extract.num_workers": 1}),
            prepared_folder), "train/n02/001.JPEG", "cannot decode image",
            flags={"data": "data/d"}, check=untouched(TRAIN)),
        "checkpoint_num_classes_differs": S("extract_weights", sequence(
            lambda p: real_ckpt(p, num_classes=10), weights("ck/r8.th")), "ck/r8.th",
            "mismatched [linear.bias: checkpoint (10,) vs model (3,)",
            "linear.weight: checkpoint (10, 64) vs model (3, 64)"),
        "features_from_another_model": S("ablate", other_head, "features_train.parquet",
                                         "stored predictions", "different models",
                                         check=absent("metrics/m/ablate.json")),
        "extract_archive_ok": S("extract_activations", prepared_archive, must_succeed=True,
                                check=extract_ok),
        "geometry_split_without_a_class": S(
            "geometry", train_without_class_2, "data/m/features_train.parquet",
            "no image of class [2]", "expected at least one image per class",
            flags={"data": "data/m"}, check=absent("metrics/m/geometry.json")),
        "geometry_head_of_one_class": S(
            "geometry", one_class_head, "data/m/fc_weights.parquet", "1 class",
            "neural collapse needs at least 2 classes", check=absent("metrics/m/geometry.json")),
        "geometry_ok": S("geometry", None, flags={"data": "data/m"}, must_succeed=True,
                         check=geometry_ok),
    }


# ---------------------------------------------------------------- leftovers

def modes(proj: Project, rels: list[str], file_mode: int, dir_mode: int) -> list[str]:
    bad = []
    for rel in rels:
        root = proj / rel
        for p in [root, *(root.rglob("*") if root.is_dir() else [])]:
            want = dir_mode if p.is_dir() else file_mode
            if p.stat().st_mode & 0o777 != want:
                bad.append(f"{p.relative_to(proj.root)}: {oct(p.stat().st_mode & 0o777)}, "
                           f"expected {oct(want)}")
    return bad


def planted(*rels: str, directory: bool = False) -> Callable[[Project], None]:
    """Hidden temp files (or DVCLive temp dirs) as a SIGKILLed run of the stage leaves them."""
    def setup(proj: Project) -> None:
        for rel in rels:
            p = proj / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if directory:
                (p / "plots").mkdir(parents=True)
                (p / "metrics.json").write_text("{}")
            else:
                p.write_bytes(b"partial")
            proj.planted.add(p)
    return setup


def gone(*rels: str) -> Callable[[Project], list[str]]:
    return lambda proj: [f"stale {r} still there" for r in rels if (proj / r).exists()]


OLD_LIVE = "plots/m/decompose/metrics.json"


class TestLeftovers(Catalogue):
    """Failed stages leave no hidden temp files and no part of their outputs; written files
    follow the umask; stale temp files of a killed run are cleaned by the next run."""

    category = "leftovers"
    cases = {
        "fit_ald_plots_unwritable": S(
            "fit_ald", blocker, "blocker/ald", "cannot be written", "expected a writable path",
            flags={"plots": "blocker/ald"},
            check=absent("data/m/ald_params.parquet", "data/m/ald_gof.parquet",
                         "metrics/m/ald.json", "metrics/timing/fit_ald.json")),
        "fit_ald_plots_unwritable_keeps_old_outputs": S(
            "fit_ald", sequence(blocker, lambda p: plant(p, "data/m/ald_params.parquet"),
                                lambda p: plant(p, "metrics/m/ald.json")),
            "blocker/ald", "cannot be written", flags={"plots": "blocker/ald"},
            check=both(unchanged("data/m/ald_params.parquet", b"old"),
                       unchanged("metrics/m/ald.json", b"old"))),
        "build_trees_plot_unwritable": S(
            "build_trees", blocker, "blocker/trees.png", "cannot be written",
            flags={"plot": "blocker/trees.png"},
            check=absent("data/m/tree_nodes.parquet", "data/m/terminals.parquet",
                         "metrics/m/trees.json")),
        "ablate_per_class_is_directory": S(
            "ablate", lambda p: (p / "data/m/ablate_per_class.parquet").mkdir(),
            "ablate_per_class.parquet", "is a directory", check=absent("metrics/m/ablate.json")),
        "k_grid_csv_unwritable": S("k_grid", blocker, "blocker/k_grid.csv", "cannot be written",
                                   flags={"csv": "blocker/k_grid.csv"},
                                   check=absent("metrics/m/k_grid.json", "plots/m/k_grid.png")),
        "prepare_data_metrics_unwritable": S(
            "prepare_data", blocker, "blocker/d.json", "cannot be written",
            flags={"metrics": "blocker/d.json"}, check=absent("data/d/train.npz")),
        "select_influential_out_is_directory": S(
            "select_influential", lambda p: make_dir(p / INFL), "influential.parquet",
            "is a directory", "expected a file path"),
        "select_influential_bad_input_keeps_old_output": S(
            "select_influential", sequence(lambda p: plant(p, INFL),
                                           lambda p: truncate(p / TRAIN)),
            "features_train.parquet", "truncated", check=unchanged(INFL, b"old")),
        "decompose_live_is_a_file": S(
            "decompose", lambda p: plant(p, "plots/m/decompose"), "plots/m/decompose",
            "is a file", check=absent("metrics/m/decompose.json")),
        "decompose_metrics_unwritable_keeps_old_live_dir": S(
            "decompose", sequence(blocker, lambda p: plant(p, OLD_LIVE, b'{"old": 1}')),
            "blocker/decompose.json", "cannot be written",
            flags={"metrics": "blocker/decompose.json"},
            check=lambda p: unchanged(OLD_LIVE, b'{"old": 1}')(p) + (
                [] if sorted(x.name for x in (p / "plots/m/decompose").iterdir()) ==
                ["metrics.json"] else ["plots/m/decompose was changed"])),
        "umask_022_and_stale_temp_dirs_decompose": S(
            "decompose", sequence(planted("plots/m/.decompose.killed1.tmp", directory=True),
                                  planted("metrics/m/.decompose.json.killed2.tmp")),
            must_succeed=True,
            check=lambda p: modes(p, ["plots/m/decompose", "metrics/m/decompose.json"], 0o644,
                                  0o755) + gone("plots/m/.decompose.killed1.tmp",
                                                "metrics/m/.decompose.json.killed2.tmp")(p)),
        "umask_022_select_influential": S(
            "select_influential", None, must_succeed=True,
            check=lambda p: modes(p, [INFL], 0o644, 0o755)),
        "umask_077_select_influential": S(
            "select_influential", None, must_succeed=True, umask=0o077,
            check=lambda p: modes(p, [INFL], 0o600, 0o700)),
        "stale_temp_files_cleaned_select_influential": S(
            "select_influential", planted("data/m/.influential.parquet.killed.tmp"),
            must_succeed=True, check=gone("data/m/.influential.parquet.killed.tmp")),
        "stale_temp_files_cleaned_fit_ald": S(
            "fit_ald", planted("plots/m/ald/.kappa.png.killed.tmp",
                               "data/m/.ald_gof.parquet.killed.tmp"),
            must_succeed=True, check=gone("plots/m/ald/.kappa.png.killed.tmp",
                                          "data/m/.ald_gof.parquet.killed.tmp")),
    }


# ---------------------------------------------------------------- known bugs

def boundary_head(sign: float) -> Callable[[Project], None]:
    """Rows whose ALD MLE sits at the edge of the sample: every weight on one side of the
    largest (sign -1) or smallest (sign +1), an exponential law."""
    def setup(proj: Project) -> None:
        rng = np.random.default_rng(3)
        w = (sign * rng.exponential(size=(3, 64))).astype(np.float32)
        tables.write_fc_weights(proj / FC, tables.Head(w, np.zeros(3, np.float32), NAMES))
    return setup


def boundary_ok(status: str) -> Callable[[Project], list[str]]:
    def check(proj: Project) -> list[str]:
        st = set(tables.read_frame(proj / "data/m/ald_params.parquet", tables.ALD_PARAMS)
                 ["status"])
        return ald_json_finite(proj) + ([] if status in st else [f"status {st}"])
    return check


def folder_names_in_fc(proj: Project) -> list[str]:
    names = tables.read_fc_weights(proj / FC).names
    return [] if names == FOLDER_CLASSES else [f"fc_weights class names {names}, expected "
                                               f"the folder names {FOLDER_CLASSES}"]


class TestKnownBugs(Catalogue):
    """One case per bug that once passed silently."""

    category = "known_bugs"
    cases = {
        "ald_boundary_left_fits_finite_medians": S("fit_ald", boundary_head(-1.0),
                                                   must_succeed=True,
                                                   check=boundary_ok("boundary_exp_left")),
        "ald_boundary_right_fits_finite_medians": S("fit_ald", boundary_head(1.0),
                                                    must_succeed=True,
                                                    check=boundary_ok("boundary_exp_right")),
        "folder_dataset_class_names": S("extract_weights", None, must_succeed=True,
                                        check=folder_names_in_fc),
        "report_missing_metrics_named": S("report", None, "metrics/", "missing",
                                          "run the stage that writes it",
                                          check=absent("report/README.md")),
    }

    def test_feature_writer_failed_open_leaves_no_temp_file(self, request, tmp_path,
                                                            monkeypatch):
        def refuse(*a, **k):
            raise OSError("disk full")

        monkeypatch.setattr(tables.pq, "ParquetWriter", refuse)
        judge_call(request, lambda: FeatureWriter(tmp_path / "f.parquet", D, C,
                                                         10).__enter__(),
                   check=lambda: [str(p) for p in tmp_path.iterdir()],
                   needles=("f.parquet", "cannot be written", "disk full"))

    def test_feature_writer_error_midway_leaves_nothing(self, request, tmp_path, shared):
        def write_then_fail():
            with FeatureWriter(tmp_path / "f.parquet", D, C, 10) as w:
                x = shared.x["train"]
                w.write(np.arange(30), shared.y["train"], shared.pred["train"], x[:, 0], x)
                raise KeyboardInterrupt  # a user's Ctrl-C after the first row group

        def run():
            try:
                write_then_fail()
            except KeyboardInterrupt:
                pass

        judge_call(request, run, check=lambda: [str(p) for p in tmp_path.iterdir()],
                   must_succeed=True)
