"""Training, checkpoints, inference."""

from .checkpoint import latest_checkpoint, load_checkpoint, load_model, save_checkpoint
from .infer import Predictor
from .train import DataConfig, TrainConfig, apply_overrides, evaluate, load_config, train

__all__ = ["DataConfig", "Predictor", "TrainConfig", "apply_overrides", "evaluate", "latest_checkpoint",
           "load_checkpoint", "load_config", "load_model", "save_checkpoint", "train"]
