"""Learning-rate schedule: linear warmup, then cosine decay to a floor or a constant rate."""

from __future__ import annotations

import math

from flowtok.config import TrainConfig
from flowtok.errors import ConfigError

SCHEDULES = ("cosine", "constant")


def lr_multiplier(step: int, cfg: TrainConfig) -> float:
    """Factor applied to cfg.lr at ``step`` (0-based): warmup from 1/warmup to 1, then the
    schedule; cosine reaches ``min_lr_ratio`` at ``max_steps``."""
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {cfg.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.min_lr_ratio
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
