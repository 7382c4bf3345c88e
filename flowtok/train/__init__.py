"""One trainer for every flowtok model: a model plugs in as a TrainTask (see trainer.py)."""

from flowtok.train.trainer import Trainer, TrainTask, resolve_device

__all__ = ["TrainTask", "Trainer", "resolve_device"]
