"""The learning-rate schedule as a per-iteration multiplier of the base lr."""

from __future__ import annotations

import math

__all__ = ["LRSchedule"]


class LRSchedule:
    """Per-iteration multiplier of the base lr (a callable object, so ``LambdaLR`` checkpoints it).

    ``step``: ``gamma ** (number of milestones <= current epoch)`` (epoch-wise steps as in the
    paper's tables); ``cosine``: half-cosine over all steps; ``constant``. A linear warm-up over
    ``warmup_epochs`` multiplies any of them.
    """

    def __init__(self, kind: str, steps_per_epoch: int, total_steps: int,
                 milestones: list[int], gamma: float, warmup_epochs: float = 0.0):
        self.kind = kind
        self.steps_per_epoch = int(steps_per_epoch)
        self.total_steps = int(total_steps)
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)
        self.warmup_steps = int(round(warmup_epochs * steps_per_epoch))

    def __call__(self, step: int) -> float:
        if self.kind == "step":
            epoch = step // self.steps_per_epoch
            f = self.gamma ** sum(epoch >= m for m in self.milestones)
        elif self.kind == "cosine":
            f = 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / max(1, self.total_steps))))
        else:
            f = 1.0
        if self.warmup_steps > 0 and step < self.warmup_steps:
            f *= (step + 1) / self.warmup_steps
        return f
