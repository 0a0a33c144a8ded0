"""Small CNN for the 8x8 scikit-learn digits (1 input channel): the model the hardware
comparison trains with SWAT and streams through the core."""

from __future__ import annotations

import torch
from torch import nn

from ._init import init_weights


class DigitsCNN(nn.Module):
    """conv3x3(1->16)-BN-ReLU, conv3x3(16->32)-BN-ReLU, max-pool (4x4),
    conv3x3(32->64)-BN-ReLU, max-pool (2x2), linear(256 -> classes)."""

    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.Conv2d(w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1, bias=False), nn.BatchNorm2d(4 * w),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(4 * w * 2 * 2, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def digits_cnn(num_classes: int = 10, width: int = 16) -> DigitsCNN:
    return DigitsCNN(num_classes, width)
