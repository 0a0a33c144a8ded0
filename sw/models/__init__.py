"""Model definitions (torchvision cannot be imported beside the pinned torch build).

``build(name, num_classes)`` is the registry used by the training CLI and the benchmarks::

    >>> from sw.models import build
    >>> model = build("resnet18", num_classes=10)

Every model uses plain ``nn.Conv2d`` / ``nn.Linear`` / ``nn.BatchNorm2d`` so that
``sw.swatify`` can replace its convolutions and linear layers in place.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .densenet import densenet121
from .digits import digits_cnn
from .resnet import resnet18, resnet50
from .vgg import vgg16_bn
from .wrn import wrn16_8

__all__ = [
    "MODELS",
    "build",
    "densenet121",
    "digits_cnn",
    "input_shape",
    "names",
    "resnet18",
    "resnet50",
    "vgg16_bn",
    "wrn16_8",
]

#: name -> (constructor(num_classes, **kwargs), input shape [C, H, W] of one sample)
MODELS: dict[str, tuple[Callable[..., nn.Module], tuple[int, int, int]]] = {
    "resnet18": (resnet18, (3, 32, 32)),
    "vgg16_bn": (vgg16_bn, (3, 32, 32)),
    "densenet121": (densenet121, (3, 32, 32)),
    "wrn16_8": (wrn16_8, (3, 32, 32)),
    "resnet50": (resnet50, (3, 224, 224)),
    "digits_cnn": (digits_cnn, (1, 8, 8)),
}

_ALIASES = {
    "resnet-18": "resnet18",
    "vgg16": "vgg16_bn",
    "vgg-16": "vgg16_bn",
    "vgg16-bn": "vgg16_bn",
    "densenet-121": "densenet121",
    "wrn-16-8": "wrn16_8",
    "wrn16-8": "wrn16_8",
    "resnet-50": "resnet50",
    "digits": "digits_cnn",
    "digits-cnn": "digits_cnn",
}


def names() -> list[str]:
    """The canonical model names, in registry order."""
    return list(MODELS)


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return key


def input_shape(name: str) -> tuple[int, int, int]:
    """Shape ``(C, H, W)`` of one input sample the model is designed for."""
    return MODELS[_canonical(name)][1]


def build(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """Construct model ``name`` with a ``num_classes``-way classifier.

    Raises ``ValueError`` naming the known models when ``name`` is unknown, and when
    ``num_classes`` is not a positive integer.
    """
    key = _canonical(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return MODELS[key][0](num_classes=num_classes, **kwargs)
