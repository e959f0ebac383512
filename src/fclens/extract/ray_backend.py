"""The ray backend of extraction (params.yaml extract.backend: ray), on Ray Data.

CPU tasks read the split and make the model's inputs: an image folder's files are decoded and
resized/cropped to uint8 by the model's own preprocessing (`models.inputs.uint8_transform`),
in-memory
arrays are sliced from the object store. An actor pool runs the model: each actor receives it
once through the object store and calls `extract.extract` on each batch, so normalization, AMP,
pinned memory and the FC(features) == logits check are the local backend's own. Both splits
share one pipeline (one actor pool). The driver receives the rows (in order: Ray Data's
preserve_order; rows that came early would wait for their turn) and writes them a row group at
a time into the same resumable parts as the local backend (`parts.FeatureParts`): the tables
do not depend on the backend, up to float rounding. A dead actor is restarted and its batch
redone by Ray Data (max_restarts and max_task_retries default to -1 for actor pools).

Ray is imported only here, and this module only when the backend is ray: a torch-only install
needs none of it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import asdict
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from fclens.core.errors import FclensError
from fclens.extract import engines
from fclens.extract.backend import batches_per_part
from fclens.extract.loop import ExtractResult, RowBuffer, extract
from fclens.extract.parts import FeatureParts
from fclens.models.inputs import load_uint8, uint8_transform

if TYPE_CHECKING:
    from fclens.core.params import Extract

log = logging.getLogger(__name__)

PIP = 'pip install "ray[data,client]==2.60.0"'
ADDRESS = "params.yaml extract.ray_address"
CONNECT_TIMEOUT_S = 10.0  # ray.init itself retries an unreachable cluster for minutes
PROBE_TIMEOUT_MS = 3000  # a GCS answers at once; a non-Ray port makes it retry
MAX_BLOCKS = 2000  # input blocks of row ids: enough decode tasks to keep the actors busy


def _ray():
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise FclensError(f"params.yaml extract.backend: 'ray' needs Ray, which is not installed "
                          f"({e}); install it with: {PIP} (or set extract.backend: local)"
                          ) from None
    return ray


def check_address(address: str) -> None:
    """Fail in seconds when nothing listens at `address` (host:port of a cluster's GCS, or
    ray://host:port of its client server): ray.init would retry for minutes first."""
    if address in ("", "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit():
        raise FclensError(f"{ADDRESS}: {address!r}; expected host:port (the address `ray start "
                          f"--head` prints), ray://host:10001, auto, or \"\" for a local Ray")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise FclensError(f"{ADDRESS}: {address!r}: no Ray cluster answers there "
                          f"({e.strerror or e}); expected the address of a running cluster "
                          f"(`ray start --head` on its head node), or \"\" to start a local Ray"
                          ) from None
    if address.startswith("ray://"):
        return  # Ray Client: ray.init gives up by itself after ~30 s of retries
    from ray._raylet import InnerGcsClient  # what ray.init connects to first (pinned Ray)
    from ray.exceptions import RayError

    try:
        InnerGcsClient.standalone(address, None, PROBE_TIMEOUT_MS)
    except RayError as e:
        if "auth" in str(e).lower():  # a GCS, one that wants a token (Ray >= 2.5x default)
            raise FclensError(f"{ADDRESS}: {address!r}: the Ray cluster there asks for its "
                              f"authentication token ({str(e).split('. ')[0]}); run with "
                              f"RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN "
                              f"or ~/.ray/auth_token") from None
        raise FclensError(f"{ADDRESS}: {address!r}: something listens there, but not a Ray "
                          f"cluster's GCS ({e}); expected host:port as `ray start --head` "
                          f"prints it (port 6379 by default; 8265 is the dashboard, 10001 the "
                          f"client server: ray://host:10001)") from None


def _cause(e: BaseException) -> str | None:
    """The message of the FclensError a Ray task raised, however Ray wrapped it: the error
    itself when it came back as an object, else the last line Ray's traceback text gives it
    (Ray Data returns a UserCodeException without its cause)."""
    seen = set()
    x = e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        cause = getattr(x, "cause", None)
        if isinstance(cause, FclensError) and not hasattr(cause, "cause"):
            return str(cause)
        x = cause if isinstance(cause, BaseException) else x.__cause__
    text = str(e)
    if "FclensError: " in text:
        return text.rsplit("FclensError: ", 1)[-1].splitlines()[0].strip()
    return None


def _get(ref):
    """An object from the store (Ray Data passes ObjectRefs in fn_kwargs as they are)."""
    import ray

    return ray.get(ref)  # numpy arrays: a zero-copy view, once per node


def _array_rows(batch: dict, images, labels, start: int, job: int) -> dict:
    """Row ids -> uint8 (B, H, W, 3) images of an in-memory split (shared via the store)."""
    idx = batch["id"] + start
    images, labels = _get(images), _get(labels)
    return {"job": np.full(len(idx), job), "index": idx,
            "label": labels[idx].astype(np.int64), "image": images[idx]}


def _folder_rows(batch: dict, root: str, paths, labels, start: int, job: int,
                 transform) -> dict:
    """Row ids -> decoded, resized, cropped uint8 (B, H, W, 3) images of a folder split."""
    idx = batch["id"] + start
    paths, labels = _get(paths), _get(labels)
    images = [load_uint8(Path(root) / str(paths[i]), transform).numpy() for i in idx]
    return {"job": np.full(len(idx), job), "index": idx,
            "label": labels[idx].astype(np.int64), "image": np.stack(images)}


class ModelActor:
    """One model per actor, received once; `extract` on each batch (an engine other than
    torch is built on the first and reused: engines.engine_for)."""

    def __init__(self, model, cfg: Extract) -> None:
        self.model, self.cfg = _get(model), cfg  # (an ObjectRef of) an nn.Module
        self.engine = engines.for_config(cfg)

    def __call__(self, batch: dict) -> dict:
        rows = RowBuffer()
        xy = (torch.from_numpy(batch["image"]), torch.from_numpy(batch["label"]))
        r = extract(self.model, [xy], self.cfg, rows, total=1, desc="ray actor",
                    engine=self.engine)
        label, pred, logit_true, features = rows.columns()
        b = len(label)
        setup = np.zeros(b)
        setup[0] = r.setup_seconds  # an engine's build, on this actor's first batch only
        return {"job": batch["job"], "index": batch["index"], "label": label, "pred": pred,
                "logit_true": logit_true, "features": features,
                "err": np.full(b, r.logit_max_abs_err), "device": np.full(b, r.device),
                "engine": np.full(b, r.engine), "engine_err": np.full(b, r.engine_max_abs_err),
                "setup_s": setup}


class RayBackend:
    """Connects on first use (a local Ray when extract.ray_address is empty), checks the
    cluster has what extract.ray_actors asks for, and computes splits into parts."""

    def __init__(self, model: nn.Module, cfg: Extract) -> None:
        self.model, self.cfg = model, cfg
        self._ray = None
        self._started = False  # whether this process started Ray (then it stops it too)
        self._gpu = False
        self._actor_cpus = 1

    def _connect(self):
        if self._ray is not None:
            return self._ray
        ray, cfg = _ray(), self.cfg
        check_address(cfg.ray_address)
        if not ray.is_initialized():
            try:
                if cfg.ray_address:
                    ray.init(address=cfg.ray_address)
                else:
                    gpu = cfg.device.startswith("cuda") or (cfg.device == "auto"
                                                            and torch.cuda.is_available())
                    need = cfg.ray_actors * (1 if gpu else max(1, cfg.num_threads)) + 1
                    # logical CPUs: the actors and at least one decoding task fit at once
                    ray.init(num_cpus=max(len(os.sched_getaffinity(0)), need),
                             include_dashboard=False)
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
                raise FclensError(f"{ADDRESS}: {cfg.ray_address!r}: cannot start or join Ray "
                                  f"({type(e).__name__}: {str(e)[:300]})") from None
            self._started = True
        self._ray = ray
        node_cpus = [nd["Resources"].get("CPU", 0) for nd in ray.nodes() if nd["Alive"]]
        self._plan(ray.cluster_resources(), max(node_cpus, default=0))
        return ray

    def _plan(self, res: dict, node_cpus: float) -> None:
        """GPU or CPU actors, and their CPUs, from what the cluster has (res: its total
        resources; node_cpus: the CPUs of its biggest node, the most one actor can have)."""
        cfg = self.cfg
        cpus, gpus = res.get("CPU", 0), res.get("GPU", 0)
        if cfg.device.startswith("cuda") and gpus < 1:
            raise FclensError(f"params.yaml extract.device: {cfg.device!r} but the Ray cluster "
                              f"has no GPU; allowed: auto or cpu")
        self._gpu = cfg.device.startswith("cuda") or (cfg.device == "auto" and gpus >= 1)
        if self._gpu and gpus < cfg.ray_actors:
            raise FclensError(f"params.yaml extract.ray_actors: {cfg.ray_actors} actors of one "
                              f"GPU each; the Ray cluster has {gpus:g} GPUs")
        if self._gpu:
            self._actor_cpus = 1  # the GPU does the work
        elif cfg.num_threads:
            self._actor_cpus = cfg.num_threads
        else:  # CPU actors share the CPUs (the model is the slow part), one left to decode
            self._actor_cpus = max(1, int(min(cpus - 1, node_cpus) // cfg.ray_actors))
        need = cfg.ray_actors * self._actor_cpus + 1
        if cpus < need:
            raise FclensError(f"params.yaml extract.ray_actors: {cfg.ray_actors} actors of "
                              f"{self._actor_cpus} CPU (extract.num_threads) and one decoding "
                              f"task need {need} CPUs; the Ray cluster has {cpus:g}")

    def device_type(self) -> str:
        self._connect()
        return "cuda" if self._gpu else "cpu"

    def compute(self, jobs: list[tuple]) -> None:
        """For each (split, parts, desc): rows parts.done..N-1 of `split`, appended to `parts`
        a row group at a time. Splits whose images have one shape share one pipeline (one
        actor pool, the model loaded once per actor)."""
        from fclens.datasets.splits import Split

        def shape(job: tuple) -> tuple:
            split = job[0]
            return split.images.shape[1:] if isinstance(split, Split) else ("folder",)

        for _, group in groupby(jobs, key=shape):
            self._run(list(group))

    def _run(self, jobs: list[tuple]) -> None:
        from fclens.datasets.splits import Split

        ray, cfg = self._connect(), self.cfg
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # rows come back in index order
        ctx.enable_progress_bars = False  # a log line per part instead
        bs = cfg.batch_size
        inputs = []
        for j, (split, parts, _) in enumerate(jobs):
            rows = len(split.labels) - parts.done
            ds = ray.data.range(rows, override_num_blocks=min(-(-rows // bs), MAX_BLOCKS))
            kw = dict(labels=ray.put(np.asarray(split.labels)), start=parts.done, job=j)
            if isinstance(split, Split):
                ds = ds.map_batches(_array_rows, batch_size=bs,
                                    fn_kwargs=dict(images=ray.put(split.images), **kw))
            else:
                ds = ds.map_batches(_folder_rows, batch_size=bs, fn_kwargs=dict(
                    root=split.root, paths=ray.put(split.paths),
                    transform=uint8_transform(self.model), **kw))
            inputs.append(ds)
        # each actor's own GPU is its cuda:0; a CPU actor must not take a GPU it was not given;
        # CUDA runs torch (extract() would warn about the engine on every batch)
        actor_cfg = cfg.model_copy(update={"device": "cuda" if self._gpu else "cpu",
                                           "engine": "torch" if self._gpu else cfg.engine})
        ds = (inputs[0].union(*inputs[1:]) if len(inputs) > 1 else inputs[0]).map_batches(
            ModelActor, batch_size=bs, zero_copy_batch=False,
            fn_constructor_kwargs=dict(model=ray.put(self.model), cfg=actor_cfg),
            compute=ray.data.ActorPoolStrategy(size=cfg.ray_actors),
            num_cpus=self._actor_cpus, num_gpus=1 if self._gpu else None,
            # extract() opens a progress bar per call, i.e. per batch in an actor
            runtime_env={"env_vars": {"TQDM_DISABLE": "1"}})
        # Ray Data restarts a dead actor and retries its batch (max_restarts and
        # max_task_retries default to -1 for actor pools)
        bufs: list[list[dict]] = [[] for _ in jobs]
        t0 = time.perf_counter()
        try:
            for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for j in np.unique(b["job"]):
                    sel = b["job"] == j
                    bufs[j].append({k: v[sel] for k, v in b.items()})
                    t0 = self._flush(jobs[j], bufs[j], t0)
        except Exception as e:
            if (msg := _cause(e)) is not None:  # the message, without Ray's traceback
                raise FclensError(msg) from None
            raise
        for split, parts, desc in jobs:
            if parts.done != len(split.labels):
                raise FclensError(f"{desc}: Ray returned rows up to {parts.done - 1}; "
                                  f"expected {len(split.labels)} rows")

    def _flush(self, job: tuple, buf: list[dict], t0: float) -> float:
        """Write each complete part (and the last, short one) that the rows in `buf` hold from
        row parts.done on; returns the time the last part was written. Rows may arrive in any
        order (a union of splits interleaves them): they wait in `buf` until their turn."""
        split, parts, desc = job
        n, per_part = len(split.labels), batches_per_part(self.cfg) * self.cfg.batch_size
        have = sum(len(x["index"]) for x in buf)
        if have < per_part and parts.done + have < n:  # no part can be complete yet
            return t0
        cols = {k: np.concatenate([x[k] for x in buf]) for k in buf[0]}
        order = np.argsort(cols["index"], kind="stable")
        cols = {k: v[order] for k, v in cols.items()}
        while True:
            ok = cols["index"] == parts.done + np.arange(len(order))
            ready = len(ok) if ok.all() else int(np.argmin(ok))  # consecutive from parts.done
            if not (ready >= per_part or (ready and parts.done + ready == n)):
                break
            k, now = min(per_part, ready), time.perf_counter()
            self._write(parts, {c: v[:k] for c, v in cols.items()}, now - t0)
            log.info("%s: rows %d..%d of %d (%.1f img/s)", desc, parts.done - k,
                     parts.done - 1, n, k / (now - t0))
            t0, cols, order = now, {c: v[k:] for c, v in cols.items()}, order[k:]
        buf[:] = [cols] if len(order) else []
        return t0

    @staticmethod
    def _write(parts: FeatureParts, c: dict, seconds: float) -> None:
        # seconds: the driver's wall time for the part (actor start and engine builds too)
        r = ExtractResult(n=len(c["index"]), n_correct=int((c["label"] == c["pred"]).sum()),
                          logit_max_abs_err=float(c["err"].max()), seconds=seconds,
                          device=str(c["device"][0]), feature_dim=c["features"].shape[1],
                          engine=str(c["engine"][0]), setup_seconds=float(c["setup_s"].sum()),
                          engine_max_abs_err=float(c["engine_err"].max()))
        parts.write(c["index"], c["label"], c["pred"], c["logit_true"], c["features"],
                    meta=asdict(r))

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False
