"""Wide ResNet (Zagoruyko & Komodakis 2016), pre-activation blocks; WRN-16-8 for 32x32 inputs."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ._init import init_weights


class WideBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(o)
        out = self.conv1(o)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class WideResNet(nn.Module):
    def __init__(self, depth: int = 16, widen: int = 8, num_classes: int = 10,
                 dropout: float = 0.0):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        c = widths[0]
        groups = []
        for i, (w, s) in enumerate(zip(widths[1:], (1, 2, 2), strict=True)):
            blocks = []
            for j in range(n):
                blocks.append(WideBlock(c, w, s if j == 0 else 1, dropout))
                c = w
            groups.append(nn.Sequential(*blocks))
            del i
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1)
        return self.fc(torch.flatten(out, 1))


def wrn16_8(num_classes: int = 10, dropout: float = 0.0) -> WideResNet:
    """WRN-16-8 (Table 12 of the paper uses dropout 0.3 for WRN-28-10; pass ``dropout=``)."""
    return WideResNet(16, 8, num_classes, dropout)
