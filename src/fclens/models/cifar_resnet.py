"""CIFAR ResNet (He et al. 2016, option-A shortcuts), matching akamaster/pytorch_resnet_cifar10.

Exposes the timm head API (`forward_features`, `forward_head(x, pre_logits=True)`,
`get_classifier`) so extraction treats it exactly like a timm model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CIFAR10_MEAN = (0.485, 0.456, 0.406)  # what the published checkpoints were trained with
CIFAR10_STD = (0.229, 0.224, 0.225)


class _BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        # option A: parameter-free shortcut (subsample + zero-pad channels)
        self.pad = planes // 4 if (stride != 1 or in_planes != planes) else 0
        self.stride = stride

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad == 0 and self.stride == 1:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self._shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int = 20, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        n = (depth - 2) // 6
        self.depth = depth
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, in_planes = [], width
        for i, planes in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for j in range(n):
                blocks.append(_BasicBlock(in_planes, planes, 2 if (i > 0 and j == 0) else 1))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.num_features = in_planes
        self.linear = nn.Linear(in_planes, num_classes)
        self.pretrained_cfg = dict(
            input_size=(3, 32, 32), mean=CIFAR10_MEAN, std=CIFAR10_STD, num_classes=num_classes,
            crop_pct=1.0, interpolation="bilinear",  # image folders: resize to 32, no border crop
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))  # (N, 16, 32, 32)
        return self.layer3(self.layer2(self.layer1(x)))  # (N, 64, 8, 8), post-ReLU

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))  # (N, 64): global average pool
        return x if pre_logits else self.linear(x)

    def get_classifier(self) -> nn.Linear:
        return self.linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
