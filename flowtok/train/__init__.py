"""One trainer for every flowtok model: a model plugs in as a TrainTask (see trainer.py)."""

from flowtok.device import resolve_device
from flowtok.train.trainer import Trainer, TrainTask

__all__ = ["TrainTask", "Trainer", "resolve_device"]
