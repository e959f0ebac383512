"""FC weights and penultimate features (the exact input of the FC layer), batched and streamed.

Images travel as uint8 NHWC and are normalized on the compute device: on a GPU that moves 4x
fewer bytes over PCIe and keeps the CPU out of the hot loop; `permute` of NHWC gives a
channels_last NCHW view for free.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .errors import FclensError
from .tables import FeatureWriter, Head

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


def fc_layer(model: nn.Module) -> nn.Linear:
    fc = model.get_classifier()
    if not isinstance(fc, nn.Linear):
        raise FclensError(f"{type(model).__name__}: classifier is {type(fc).__name__}, not a "
                          f"single nn.Linear; fclens explains linear last layers only")
    return fc


def fc_head(model: nn.Module, names: list[str]) -> Head:
    """The model's FC layer as a Head record (float32 numpy)."""
    fc = fc_layer(model)
    w = fc.weight.detach().float().cpu().numpy()  # (C, D)
    b = (fc.bias.detach().float().cpu().numpy() if fc.bias is not None
         else np.zeros(w.shape[0], np.float32))
    return Head(w, b, tuple(names))


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

    @property
    def accuracy(self) -> float:
        return self.n_correct / self.n if self.n else float("nan")

    @property
    def images_per_s(self) -> float:
        return self.n / self.seconds if self.seconds else float("nan")


def prepare_model(model: nn.Module, cfg: ExtractConfig
                  ) -> tuple[nn.Module, nn.Module, torch.device]:
    """(normalizer, model) on the configured device and memory format."""
    dev = resolve_device(cfg.device)
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
    """Run the model once per batch; write features/labels/preds; check FC(features) == logits."""
    norm, inner, dev = prepare_model(model, cfg)
    w64 = fc_layer(inner).weight.double()  # (C, D)
    b64 = fc_layer(inner).bias.double() if fc_layer(inner).bias is not None else 0.0
    amp = AMP_DTYPES[cfg.amp]
    if amp is torch.float16 and dev.type != "cuda":
        raise FclensError("params.yaml extract.amp: fp16 needs CUDA; use bf16 or none on CPU")
    pin = cfg.pin_memory and dev.type == "cuda"
    res = ExtractResult(device=str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev))
    offset = 0
    t0 = time.perf_counter()
    for x, y in tqdm(batches, total=total, desc=desc, mininterval=5, unit="batch"):
        if pin:
            x = x.pin_memory()
        x = x.to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            fmap = inner.forward_features(norm(x))
            feats = inner.forward_head(fmap, pre_logits=True)  # (B, D)
            logits = inner.forward_head(fmap)  # (B, C): the model's own head path
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
    res.seconds = time.perf_counter() - t0
    res.n = offset
    return res


def extract_splits(model: nn.Module, data: str | Path, out: str | Path, cfg: ExtractConfig,
                   name: str) -> tuple[dict, dict]:
    """Features of data/{train,test}.npz -> out/features_{split}.parquet.

    Returns (metrics, timing). The dataset's classes must be the model's classes.
    """
    from .data import Split, load_split

    data, out = Path(data), Path(out)
    n_classes = fc_layer(model).out_features
    metrics: dict = {}
    seconds, n_total = 0.0, 0
    for split in ("train", "test"):
        s = load_split(data / f"{split}.npz")
        if len(s.class_names) != n_classes:
            raise FclensError(f"{data / f'{split}.npz'}: {len(s.class_names)} classes "
                              f"({', '.join(s.class_names[:5])}...); model {name} has "
                              f"{n_classes} outputs; expected the same number")
        batches = (uint8_batches(s.images, s.labels, cfg.batch_size) if isinstance(s, Split)
                   else folder_batches(s, model, cfg.batch_size, cfg.num_workers))
        with FeatureWriter(out / f"features_{split}.parquet", model.num_features, n_classes,
                           cfg.row_group_size) as w:
            r = extract(model, batches, cfg, w, total=-(-len(s.labels) // cfg.batch_size),
                        desc=f"{name} {split}")
        metrics.update({f"acc_{split}": r.accuracy, f"n_{split}": r.n})
        metrics["logit_max_abs_err"] = max(metrics.get("logit_max_abs_err", 0.0),
                                           r.logit_max_abs_err)
        seconds, n_total = seconds + r.seconds, n_total + r.n
    metrics.update(feature_dim=r.feature_dim, device=r.device, batch_size=cfg.batch_size,
                   amp=cfg.amp, channels_last=cfg.channels_last)
    return metrics, {"images_per_s": n_total / seconds, "seconds": seconds}
