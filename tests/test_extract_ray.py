"""The ray backend (extract_ray.py) on a local Ray: the local backend's tables, an actor killed
mid-run changes nothing, an unreachable cluster is a clear error. One local Ray for the module:
it takes ~10 s to start. And on a cluster of nodes started by the test (`ray.cluster_utils.
Cluster`, as Ray tests itself): the local tables, also when a worker node is lost mid-run."""

import os
import sys
import threading
import time

import numpy as np
import pytest

from conftest import ROOT, assert_same_tables, make_image_folder
from fclens.core.constants import CIFAR10_CLASSES
from fclens.core.errors import FclensError
from fclens.core.params import Extract, ModelSpec
from fclens.datasets.splits import Split, save_split, scan_image_folder
from fclens.extract import ray_backend as extract_ray
from fclens.extract.backend import extract_splits
from fclens.models.registry import build_model

CFG = Extract(batch_size=8, row_group_size=16, num_workers=0)
# tests that start a Ray runtime (a local Ray or a 2-node cluster: seconds each) are e2e, so
# `make test-fast` skips them; `make test` runs them
STARTS_RAY = pytest.mark.e2e
RAY = Extract(batch_size=8, row_group_size=16, backend="ray", ray_actors=2)


@pytest.fixture(scope="module")
def ray_module():
    ray = pytest.importorskip("ray")
    yield ray
    ray.shutdown()


@pytest.fixture
def ray_local(ray_module):
    """The module's local Ray, started by the first test that asks (and again after a cluster
    test: a driver is in one Ray at a time)."""
    if not ray_module.is_initialized():
        # logical CPUs: two model actors and a decoding task run at once (on the 2 cores here)
        ray_module.init(num_cpus=3, include_dashboard=False)
    return ray_module


@pytest.fixture
def ray_cluster(ray_module):
    """A cluster on this machine, as Ray tests itself: a head node of one CPU (the driver joins
    it), and the worker nodes the test adds. The module's local Ray stops first."""
    from ray.cluster_utils import Cluster

    ray_module.shutdown()
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        yield cluster
    finally:
        ray_module.shutdown()  # the backend left it; a failed test may not have
        cluster.shutdown()


def _arrays(d, n_train=45, n_test=20):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        save_split(d / f"{split}.npz", Split(rng.integers(0, 256, (n, 32, 32, 3), np.uint8),
                                             rng.integers(0, 10, n).astype(np.int16),
                                             CIFAR10_CLASSES))
    return d, build_model(ModelSpec(name="t", arch="cifar_resnet8"), seed=1)


def _folder(d):
    root = make_image_folder(d / "images", n_train=7, n_val=3)  # 40x40 JPEGs, resized to 32
    for split, s in scan_image_folder(root, "datasets.tiny").items():
        save_split(d / f"{split}.npz", s)
    return d, build_model(ModelSpec(name="t", arch="cifar_resnet8", num_classes=3), seed=1)


def _assert_same_metrics(m_ray, m_local):
    assert {k: v for k, v in m_ray.items() if k != "logit_max_abs_err"} == \
        {k: v for k, v in m_local.items() if k != "logit_max_abs_err"}
    assert m_ray["logit_max_abs_err"] < 1e-4


@STARTS_RAY
@pytest.mark.parametrize("source", [_arrays, _folder])
def test_ray_backend_gives_the_local_tables(ray_local, tmp_path, source):
    data, model = source(tmp_path)
    m_local, _ = extract_splits(model, data, tmp_path / "local", CFG, "t")
    m_ray, t_ray = extract_splits(model, data, tmp_path / "ray", RAY, "t")
    assert_same_tables(tmp_path / "local", tmp_path / "ray")
    _assert_same_metrics(m_ray, m_local)
    assert t_ray["images_per_s"] > 0
    assert ray_local.is_initialized()  # a Ray it did not start is left running


class CrashOnce(extract_ray.ModelActor):
    """Dies (the whole actor process) on its second batch, once: a lost node, an OOM kill."""

    marker = ""

    def __call__(self, batch):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 2 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return super().__call__(batch)


@STARTS_RAY
def test_resumes_local_parts_and_survives_a_killed_actor(ray_local, tmp_path, monkeypatch,
                                                         caplog):
    from ray import cloudpickle

    from fclens.extract import local as ex

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers lack tests/ on path
    data, model = _arrays(tmp_path, n_train=40, n_test=8)
    real = ex.uint8_batches

    def dies_after_two(*a):  # a local run killed after two batches: rows 0..15 in one part
        yield from list(real(*a))[:2]
        raise RuntimeError("killed")

    monkeypatch.setattr(ex, "uint8_batches", dies_after_two)
    with pytest.raises(RuntimeError):
        extract_splits(model, data, tmp_path / "ray", CFG, "t")
    monkeypatch.setattr(ex, "uint8_batches", real)
    monkeypatch.setattr(CrashOnce, "marker", str(tmp_path / "crashed"))
    monkeypatch.setattr(extract_ray, "ModelActor", CrashOnce)
    cfg = Extract(batch_size=8, row_group_size=16, backend="ray", ray_actors=1)
    with caplog.at_level("INFO"):
        extract_splits(model, data, tmp_path / "ray", cfg, "t")
    assert "t train: resuming at row 16 of 40" in caplog.text
    assert "t train: rows 16..31 of 40" in caplog.text
    assert "t train: rows 0..15" not in caplog.text  # Ray computed rows 16.. only
    assert (tmp_path / "crashed").exists()
    extract_splits(model, data, tmp_path / "local", CFG, "t")
    assert_same_tables(tmp_path / "local", tmp_path / "ray")


class OnNodes(extract_ray.ModelActor):
    """Notes each batch in `seen`: a file named (before|after)-<node id>-<pid>-<call>, after
    once the file `lost` exists. With `hold`, an actor's third batch waits for `lost` (a minute
    at most; noted as holding-<node id>-<pid>): there is work in flight, and left, when the
    test loses a node."""

    seen = ""
    hold = False

    def __call__(self, batch):
        import ray

        self.calls = getattr(self, "calls", 0) + 1
        lost = os.path.join(self.seen, "..", "lost")
        node = ray.get_runtime_context().get_node_id()
        if self.hold and self.calls == 3 and not os.path.exists(lost):
            open(os.path.join(self.seen, f"holding-{node}-{os.getpid()}"), "w").close()
            t0 = time.monotonic()
            while not os.path.exists(lost) and time.monotonic() - t0 < 60:
                time.sleep(0.05)
        when = "after" if os.path.exists(lost) else "before"
        open(os.path.join(self.seen, f"{when}-{node}-{os.getpid()}-{self.calls}"), "w").close()
        return super().__call__(batch)


def _on_nodes(tmp_path, monkeypatch, hold=False):
    """OnNodes as the backend's actor; returns seen(when): the node ids of the batches so far
    ("before" or "after" the loss; both by default), or of the actors holding ("holding")."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers lack tests/ on path
    (tmp_path / "seen").mkdir()
    monkeypatch.setattr(OnNodes, "seen", str(tmp_path / "seen"))
    monkeypatch.setattr(OnNodes, "hold", hold)
    monkeypatch.setattr(extract_ray, "ModelActor", OnNodes)
    return lambda *when: [f.split("-")[1] for f in os.listdir(tmp_path / "seen")
                          if f.startswith(when or ("before", "after"))]


@STARTS_RAY
def test_a_two_node_cluster_gives_the_local_tables(ray_cluster, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    worker = ray_cluster.add_node(num_cpus=2)  # with the head's one: 2 actors and a decoder
    ray_cluster.wait_for_nodes()
    seen = _on_nodes(tmp_path, monkeypatch)
    data, model = _arrays(tmp_path)
    m_local, _ = extract_splits(model, data, tmp_path / "local", CFG, "t")
    cfg = RAY.model_copy(update={"ray_address": ray_cluster.address})
    m_ray, _ = extract_splits(model, data, tmp_path / "ray", cfg, "t")
    assert_same_tables(tmp_path / "local", tmp_path / "ray")
    _assert_same_metrics(m_ray, m_local)
    assert worker.node_id in seen()  # the head has one CPU: an actor ran on the worker
    assert not ray.is_initialized()  # the backend joined the cluster, and left it


@STARTS_RAY
def test_a_worker_node_lost_mid_run_changes_nothing(ray_cluster, tmp_path, monkeypatch):
    # two workers: once one is gone, the head's and the other's 3 CPUs still hold the 2 actors
    # (the lost one restarted by Ray Data) and a decoding task: no replacement node needed
    workers = [ray_cluster.add_node(num_cpus=2) for _ in range(2)]
    ray_cluster.wait_for_nodes()
    seen = _on_nodes(tmp_path, monkeypatch, hold=True)
    data, model = _arrays(tmp_path, n_train=80, n_test=24)  # 13 batches; 5 + 2 parts of 2
    write, parts, lost = extract_ray.RayBackend._write, [], []

    def count(p, c, seconds):
        write(p, c, seconds)
        parts.append(len(c["index"]))

    def lose_a_node():  # the worker node of an actor holding a batch
        try:
            while not (on := [w for w in workers if w.node_id in seen("holding")]):
                if (tmp_path / "lost").exists():  # the run is over
                    return
                time.sleep(0.05)
            ray_cluster.remove_node(on[0])  # its processes killed: the actor, its batch, blocks
            lost.append((on[0].node_id, len(parts)))
        finally:
            (tmp_path / "lost").touch()  # the held actors go on

    monkeypatch.setattr(extract_ray.RayBackend, "_write", staticmethod(count))
    cfg = RAY.model_copy(update={"ray_address": ray_cluster.address})
    loser = threading.Thread(target=lose_a_node)
    loser.start()
    try:
        m_ray, _ = extract_splits(model, data, tmp_path / "ray", cfg, "t")
    finally:
        (tmp_path / "lost").touch()  # the thread stops too
        loser.join()
    assert lost and lost[0][1] < len(parts) == 7  # the loss was mid-run: parts came after it
    node, _ = lost[0]
    assert len(seen("before")) <= 4 and node not in seen("after")  # 2 actors, 2 batches each
    # the rest on the other nodes, the lost batch too (and any whose block the node held)
    assert len(seen("before", "after")) >= 13 and sum(parts) == 104
    m_local, _ = extract_splits(model, data, tmp_path / "local", CFG, "t")
    assert_same_tables(tmp_path / "local", tmp_path / "ray")
    _assert_same_metrics(m_ray, m_local)


@pytest.mark.parametrize("address, says", [
    ("127.0.0.1:1", "no Ray cluster answers there"),
    ("head-node", "expected host:port"),
])
def test_unreachable_address_is_a_clear_error(tmp_path, address, says):
    pytest.importorskip("ray")
    data, model = _arrays(tmp_path, n_train=8, n_test=8)
    cfg = Extract(backend="ray", ray_address=address)
    with pytest.raises(FclensError, match=f"params.yaml extract.ray_address: '{address}'.*{says}"):
        extract_splits(model, data, tmp_path / "out", cfg, "t")


def test_missing_ray_names_the_pip_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    data, model = _arrays(tmp_path, n_train=8, n_test=8)
    with pytest.raises(FclensError, match=r"extract.backend: 'ray' needs Ray.*pip install "
                                          r"\"ray\[data,client\]==2.60.0\""):
        extract_splits(model, data, tmp_path / "out", Extract(backend="ray"), "t")
    assert extract_ray.PIP.split()[-1].strip('"') in (ROOT / "requirements.txt").read_text().split()


def test_an_error_raised_in_a_ray_task_keeps_its_message():
    # Ray Data hands back a UserCodeException without its cause: the message is in the text
    text = ("ray::MapBatches(_folder_rows)() (pid=1)\n  File \"extract.py\", line 3\n"
            "fclens.core.errors.FclensError: d/train/n02/001.JPEG: cannot decode image (junk)\n\n"
            "ray.exceptions.UserCodeException: UDF failed to process a data block.")
    assert extract_ray._cause(RuntimeError(text)) == \
        "d/train/n02/001.JPEG: cannot decode image (junk)"
    assert extract_ray._cause(RuntimeError("object store full")) is None
