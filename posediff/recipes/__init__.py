"""Built-in recipes: each a config dataclass with tested defaults and a builder."""

from .onestage import OneStageConfig, build_one_stage, diffusion_regpose, diffusion_regpose_tiny, edpose, edpose_tiny

__all__ = ["OneStageConfig", "build_one_stage", "diffusion_regpose", "diffusion_regpose_tiny", "edpose",
           "edpose_tiny"]
