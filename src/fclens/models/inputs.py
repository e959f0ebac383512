"""What every user of a model needs around it: the device, the model's own input normalization
(applied on the device), uint8 batches and the model's eval preprocessing for image files.

Images travel as uint8 NHWC and are normalized on the compute device: on a GPU that moves 4x
fewer bytes over PCIe and keeps the CPU out of the hot loop; `permute` of NHWC gives a
channels_last NCHW view for free.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from fclens.core.errors import FclensError


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
