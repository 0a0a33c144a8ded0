"""Weight initialisation shared by the model definitions."""

from __future__ import annotations

from torch import nn


def init_weights(model: nn.Module, zero_init_residual_bn: tuple[type, ...] = ()) -> None:
    """Kaiming-normal (fan_out, ReLU) convolutions, unit/zero BatchNorm, default Linear."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
