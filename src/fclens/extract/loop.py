"""FC weights and penultimate features (the exact input of the FC layer), batched and streamed.

Images travel as uint8 NHWC and are normalized on the compute device: on a GPU that moves 4x
fewer bytes over PCIe and keeps the CPU out of the hot loop; `permute` of NHWC gives a
channels_last NCHW view for free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from fclens.core.errors import FclensError
from fclens.core.tables import FeatureParts, FeatureWriter, Head
from fclens.extract.engines import FeaturePath, engine_for
from fclens.models.heads import LinearHead, linear_head

log = logging.getLogger(__name__)

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class ExtractConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = 128
    channels_last: bool = True
    amp: str = "none"  # none | bf16 | fp16 (fp16 only on CUDA)
    num_threads: int = 0  # 0 = leave torch's default
    num_workers: int = 2  # decoding processes for image-folder datasets
    row_group_size: int = 10_000
    pin_memory: bool = True  # only used on CUDA
    engine: str = "torch"  # torch | openvino | onnxruntime (CPU only)
    backend: str = "local"  # local | ray
    ray_address: str = ""  # ray backend: "" = start a local Ray
    ray_actors: int = 2

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise FclensError(f"params.yaml extract.batch_size: expected >= 1, got "
                              f"{self.batch_size}")
        if self.amp not in AMP_DTYPES:
            raise FclensError(f"params.yaml extract.amp: {self.amp!r}; allowed {list(AMP_DTYPES)}")
        if self.row_group_size < 1:
            raise FclensError("params.yaml extract.row_group_size: expected >= 1")

    @property
    def batches_per_part(self) -> int:
        """Batches in one resumable part (a row group, rounded up: parts end on batch
        boundaries, on every backend)."""
        return -(-self.row_group_size // self.batch_size)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise FclensError(f"params.yaml extract.device: {name!r} is not a device; allowed auto, "
                          f"cpu, cuda, cuda:N") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FclensError(f"params.yaml extract.device: {name!r} but no CUDA device is present")
    return dev


def fc_layer(model: nn.Module, exact: bool = False) -> LinearHead:
    """The classifier as one linear map of the pre_logits features, whatever its timm head type
    (nn.Linear, 1x1 conv, BN-folded, distillation pair, ...: see models/heads.py). exact=True:
    also the logits must be exactly that map (feature extraction checks them)."""
    return linear_head(model, exact)


def fc_head(model: nn.Module, names: list[str]) -> Head:
    """The model's FC layer as a Head record (float32 numpy)."""
    fc = fc_layer(model)
    w = fc.weight.detach().float().cpu().numpy()  # (C, D)
    return Head(w, fc.bias.detach().float().cpu().numpy(), tuple(names))


def uint8_batches(images: np.ndarray, labels: np.ndarray, batch_size: int
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(N, H, W, 3) uint8 in memory -> (B, H, W, 3) uint8 tensors (views, no copy)."""
    x = torch.from_numpy(images)
    y = torch.from_numpy(labels.astype(np.int64))
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size], y[i:i + batch_size]


def uint8_transform(model: nn.Module):
    """The model's timm eval preprocessing (resize, center crop) ending in uint8 (3, H, W):
    normalization happens on the compute device, as for in-memory arrays."""
    from timm.data import create_transform, resolve_model_data_config
    from torchvision.transforms import Compose, PILToTensor

    tf = create_transform(**resolve_model_data_config(model), is_training=False)
    steps = [t for t in tf.transforms if type(t).__name__ not in
             ("ToTensor", "MaybeToTensor", "Normalize")]
    return Compose([*steps, PILToTensor()])


def load_uint8(image, transform) -> torch.Tensor:
    """A path or PIL image -> (H, W, 3) uint8 through `transform` (see `uint8_transform`)."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        try:
            with Image.open(image) as im:
                return transform(im.convert("RGB")).permute(1, 2, 0)
        except (OSError, ValueError) as e:
            raise FclensError(f"{image}: cannot decode image ({e})") from None
    return transform(image.convert("RGB")).permute(1, 2, 0)


class _FolderImages(torch.utils.data.Dataset):
    def __init__(self, split, transform) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return load_uint8(self.split.path(i), self.transform), int(self.split.labels[i])


def folder_batches(split, model: nn.Module, batch_size: int, num_workers: int
                   ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Image-folder split -> (B, H, W, 3) uint8 batches decoded by `num_workers` processes."""
    loader = torch.utils.data.DataLoader(
        _FolderImages(split, uint8_transform(model)), batch_size=batch_size, shuffle=False,
        num_workers=num_workers, persistent_workers=False)
    try:
        yield from loader
    except FclensError as e:  # re-raised from a worker with its traceback in the message
        raise FclensError(str(e).rsplit("FclensError: ", 1)[-1].strip()) from None


class _Normalize(nn.Module):
    """uint8 NHWC -> float NCHW normalized; float NCHW input is passed through."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(std).view(1, 3, 1, 1)))
        self.register_buffer("shift", (torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            return x
        x = x.permute(0, 3, 1, 2).float()  # (B, 3, H, W), channels_last memory
        return x * self.scale - self.shift


def normalizer(model: nn.Module) -> _Normalize:
    """The model's own input normalization (pretrained_cfg mean/std), applied on the device."""
    return _Normalize(model.pretrained_cfg["mean"], model.pretrained_cfg["std"])


@dataclass
class ExtractResult:
    n: int = 0
    n_correct: int = 0
    logit_max_abs_err: float = 0.0
    seconds: float = 0.0
    device: str = "cpu"
    feature_dim: int = 0
    engine: str = "torch"
    engine_max_abs_err: float = 0.0  # engine vs torch features on the first batch
    setup_seconds: float = 0.0  # engine export + compile + check; not in `seconds`

    @property
    def accuracy(self) -> float:
        return self.n_correct / self.n if self.n else float("nan")

    @property
    def images_per_s(self) -> float:
        return self.n / self.seconds if self.seconds else float("nan")


_RESULT_FIELDS = tuple(f.name for f in fields(ExtractResult))


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


@functools.cache  # a process-wide setting: once (extract() runs per part and per Ray batch)
def keep_freed_memory() -> bool:
    """Let glibc serve blocks up to 32 MB from its heap and keep up to 1 GB freed there.

    Eager torch frees and reallocates every layer's activations (MBs at batch 64) on each
    batch; glibc's defaults return some of them to the kernel, so each batch pays page faults,
    and how many depends on the process's heap history. ResNet20 at batch 64 on 2 cores:
    1,383-1,583 img/s over four fresh processes with the defaults, 2,016-2,254 with this
    (metrics/bench/extract.json torch_process_spread). Both settings are needed: the mmap one
    alone was no better, the trim one alone halved the rate. Where mallopt is missing or
    refuses (not glibc), nothing changes and this returns False.
    """
    try:  # find_library None: CDLL(None) is this process's own symbols, its libc's among them
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):  # macOS, Windows: no mallopt
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD,
                                                                        1 << 30))


def prepare_model(model: nn.Module, cfg: ExtractConfig
                  ) -> tuple[nn.Module, nn.Module, torch.device]:
    """(normalizer, model) on the configured device and memory format."""
    dev = resolve_device(cfg.device)
    keep_freed_memory()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    norm = normalizer(model).to(dev)
    model = model.eval().to(dev)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return norm, model, dev


@torch.inference_mode()
def extract(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
            cfg: ExtractConfig, writer: FeatureWriter | None = None, total: int | None = None,
            desc: str = "extract") -> ExtractResult:
    """Run the model once per batch; write features/labels/preds; check FC(features) == logits.

    On CPU, cfg.engine other than torch runs the same path exported to ONNX (engines.py),
    checked against torch on the first batch. CUDA always runs torch: an engine there is
    ignored with a warning, so one params.yaml serves CPU and GPU hosts (device: auto).
    """
    dev = resolve_device(cfg.device)
    engine = cfg.engine if dev.type == "cpu" else "torch"
    if engine != cfg.engine:
        log.warning("params.yaml extract.engine: %r ignored on %s; CUDA runs torch", cfg.engine,
                    dev)
    if engine != "torch":  # the engine picks its own layout; export from the plain model
        cfg = replace(cfg, channels_last=False)
    norm, inner, dev = prepare_model(model, cfg)
    path = FeaturePath(norm, inner)
    fc = fc_layer(inner, exact=True)
    w64, b64 = fc.weight.double(), fc.bias.double()  # (C, D), (C,)
    amp = AMP_DTYPES[cfg.amp]
    if amp is torch.float16 and dev.type != "cuda":
        raise FclensError("params.yaml extract.amp: fp16 needs CUDA; use bf16 or none on CPU")
    pin = cfg.pin_memory and dev.type == "cuda"
    res = ExtractResult(device=str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
                        engine=engine)
    run = None  # the engine's runner, built on the first batch (its input shape and dtype)
    offset = 0
    t0 = time.perf_counter()
    for x, y in tqdm(batches, total=total, desc=desc, mininterval=5, unit="batch"):
        if engine != "torch":
            if run is None:
                eng = engine_for(engine, path, x, cfg.num_threads, bf16=amp is torch.bfloat16)
                run, res.engine_max_abs_err = eng.run, eng.max_abs_err
                res.setup_seconds = eng.setup_seconds
            f_np, l_np = run(np.ascontiguousarray(x.numpy()))  # (B, D), (B, C)
            feats, logits = torch.from_numpy(f_np), torch.from_numpy(l_np)
        else:
            if pin:
                x = x.pin_memory()
            x = x.to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                feats, logits = path(x)  # (B, D), (B, C): logits from the model's own head
        feats = feats.float()
        # the stored features must reproduce the model's logits through the FC layer
        err = (feats.double() @ w64.T + b64 - logits.double()).abs().max().item()
        if not np.isfinite(err):  # max(x, nan) would hide it
            raise FclensError(f"{desc}: non-finite features or logits in images "
                              f"{offset}..{offset + len(y) - 1}; expected finite values")
        res.logit_max_abs_err = max(res.logit_max_abs_err, err)
        pred = logits.argmax(1)
        y_dev = y.to(dev, non_blocking=True)
        res.n_correct += int((pred == y_dev).sum())
        if writer is not None:
            lt = logits.float().gather(1, y_dev.clamp(min=0).view(-1, 1)).squeeze(1)
            writer.write(np.arange(offset, offset + len(y)), y.numpy(), pred.cpu().numpy(),
                         lt.cpu().numpy(), feats.cpu().numpy())
        offset += len(y)
        res.feature_dim = feats.shape[1]
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    res.seconds = time.perf_counter() - t0 - res.setup_seconds
    res.n = offset
    return res


class RowBuffer:
    """FeatureWriter's `write`, kept in memory: the rows of one part (or one Ray batch)."""

    def __init__(self) -> None:
        self._rows: list[tuple[np.ndarray, ...]] = []

    def write(self, index: np.ndarray, label: np.ndarray, pred: np.ndarray,
              logit_true: np.ndarray, features: np.ndarray) -> None:
        self._rows.append((label, pred, logit_true, features))

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(label (N,), pred (N,), logit_true (N,), features (N, D)) in write order."""
        return tuple(np.concatenate(c) for c in zip(*self._rows))


def weights_digest(model: nn.Module) -> str:
    """sha256 of every state-dict tensor (name, dtype, shape, bytes): the weights, exactly."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        h.update(f"{k} {v.dtype} {tuple(v.shape)}".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def model_fingerprint(model: nn.Module, cfg: ExtractConfig, device_type: str) -> dict:
    """What, besides the dataset, determines the features: parts with another fingerprint are
    recomputed. batch_size, workers, threads and the backend only change float rounding."""
    return {"format": 1, "model": type(model).__name__, "weights": weights_digest(model),
            "mean": list(model.pretrained_cfg["mean"]), "std": list(model.pretrained_cfg["std"]),
            "device": device_type, "amp": cfg.amp, "channels_last": cfg.channels_last,
            "engine": cfg.engine}


def split_fingerprint(path: Path, split, inputs: str) -> dict:
    """The split file (its bytes: a folder split's index of files, not the images) and how its
    images become model inputs (`inputs`: the preprocessing's repr)."""
    from fclens.core.io import file_digest

    return {"dataset": f"{path.name} sha256:{file_digest(path)}", "rows": len(split.labels),
            "inputs": inputs}


def combine_results(metas: list[dict]) -> ExtractResult:
    """One ExtractResult from the parts' (asdict of each part's): counts and times add up,
    errors take the max, the rest (device, engine, ...) is the last part's."""
    parts = [ExtractResult(**{k: v for k, v in m.items() if k in _RESULT_FIELDS})
             for m in metas]
    out = {}
    for k in _RESULT_FIELDS:
        vals = [getattr(p, k) for p in parts]
        out[k] = (sum(vals) if k in ("n", "n_correct") or k.endswith("seconds") else
                  max(vals) if k.endswith("_err") else vals[-1])
    return ExtractResult(**out)


class LocalBackend:
    """extract() in this process, one call per part: each part carries its own result."""

    def __init__(self, model: nn.Module, cfg: ExtractConfig) -> None:
        self.model, self.cfg = model, cfg

    def device_type(self) -> str:
        return resolve_device(self.cfg.device).type

    def compute(self, jobs: list[tuple]) -> None:
        """For each (split, parts, desc): rows parts.done..N-1 of `split`, appended to `parts`
        a row group at a time."""
        for split, parts, desc in jobs:
            self._compute(split, parts, desc)

    def _compute(self, split, parts: FeatureParts, desc: str) -> None:
        from fclens.datasets.splits import Split

        cfg, start, n = self.cfg, parts.done, len(split.labels)
        if isinstance(split, Split):
            batches = uint8_batches(split.images[start:], split.labels[start:], cfg.batch_size)
        else:
            rest = replace(split, paths=split.paths[start:], labels=split.labels[start:])
            batches = folder_batches(rest, self.model, cfg.batch_size, cfg.num_workers)
        per_part = cfg.batches_per_part
        it = iter(batches)
        while parts.done < n:
            rows = RowBuffer()
            left = -(-(n - parts.done) // cfg.batch_size)
            r = extract(self.model, islice(it, per_part), cfg, rows, total=min(per_part, left),
                        desc=f"{desc} from row {parts.done}")
            if r.n == 0:
                raise FclensError(f"{desc}: the images ended at row {parts.done}; expected {n}")
            parts.write(np.arange(parts.done, parts.done + r.n), *rows.columns(),
                        meta=asdict(r))

    def close(self) -> None:
        pass


def _ray_backend(model: nn.Module, cfg: ExtractConfig):
    from fclens.extract.ray_backend import RayBackend  # Ray only for those who ask for it

    return RayBackend(model, cfg)


def extract_splits(model: nn.Module, data: str | Path, out: str | Path, cfg: ExtractConfig,
                   name: str) -> tuple[dict, dict]:
    """Features of data/{train,test}.npz -> out/features_{split}.parquet.

    Returns (metrics, timing). The dataset's classes must be the model's classes.
    cfg.backend: local (this process) or ray (extract_ray.py). Either way the rows land a row
    group at a time in resumable parts (tables.FeatureParts): a killed run's successor starts
    at the last complete part, and the final tables are the parts merged, then the parts go.
    Metrics and timing add up the parts' results, so a resumed run reports what one run would.
    """
    from fclens.datasets.splits import Split, load_split

    data, out = Path(data), Path(out)
    fc = fc_layer(model)  # its input width, not model.num_features: a pre-logits layer
    n_classes, dim = fc.out_features, fc.in_features  # (e.g. MobileNetV3's) changes it
    metrics: dict = {}
    seconds, n_total, setup = 0.0, 0, 0.0
    backend = LocalBackend(model, cfg) if cfg.backend == "local" else _ray_backend(model, cfg)
    jobs: list[tuple] = []  # (split name, split, its parts)
    try:
        fp = model_fingerprint(model, cfg, backend.device_type())
        for split in ("train", "test"):
            s = load_split(data / f"{split}.npz")
            if len(s.class_names) != n_classes:
                raise FclensError(f"{data / f'{split}.npz'}: {len(s.class_names)} classes "
                                  f"({', '.join(s.class_names[:5])}...); model {name} has "
                                  f"{n_classes} outputs; expected the same number")
            inp = "uint8 arrays" if isinstance(s, Split) else repr(uint8_transform(model))
            parts = FeatureParts(out / f"features_{split}.parquet",
                                 {**fp, **split_fingerprint(data / f"{split}.npz", s, inp)},
                                 dim, n_classes)
            if done := parts.open():
                log.info("%s %s: resuming at row %d of %d", name, split, done, len(s.labels))
            jobs.append((split, s, parts))
        # both splits in one go: the ray backend starts its actors (and loads the model) once
        backend.compute([(s, parts, f"{name} {split}") for split, s, parts in jobs
                         if parts.done < len(s.labels)])
    finally:
        backend.close()
    for split, s, parts in jobs:
        parts.merge(len(s.labels), cfg.row_group_size)
        r = combine_results(parts.metas)
        metrics.update({f"acc_{split}": r.accuracy, f"n_{split}": r.n})
        metrics["logit_max_abs_err"] = max(metrics.get("logit_max_abs_err", 0.0),
                                           r.logit_max_abs_err)
        seconds, n_total, setup = seconds + r.seconds, n_total + r.n, setup + r.setup_seconds
        if r.engine != "torch":
            metrics["engine_max_abs_err"] = max(metrics.get("engine_max_abs_err", 0.0),
                                                r.engine_max_abs_err)
    for _, _, parts in jobs:  # only once both tables are written
        parts.remove()
    metrics.update(feature_dim=r.feature_dim, device=r.device, batch_size=cfg.batch_size,
                   amp=cfg.amp, channels_last=cfg.channels_last, engine=r.engine)
    timing = {"images_per_s": n_total / seconds, "seconds": seconds}
    if setup:  # engine export + compile (once: later parts reuse it), outside `seconds`
        timing["engine_setup_seconds"] = setup
    return metrics, timing
