"""Training, checkpoints, inference."""

from ..tasks.multiperson import DataConfig, evaluate
from .checkpoint import latest_checkpoint, load_checkpoint, load_model, save_checkpoint
from .config import TrainConfig, apply_overrides, load_config
from .infer import Predictor
from .train import train

__all__ = ["DataConfig", "Predictor", "TrainConfig", "apply_overrides", "evaluate", "latest_checkpoint",
           "load_checkpoint", "load_config", "load_model", "save_checkpoint", "train"]
