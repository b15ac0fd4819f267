"""Built-in recipes: each a config dataclass with tested defaults and a builder."""

from .lifting import (
    LiftingConfig,
    build_lifter,
    diffpose,
    diffpose_released,
    diffpose_video,
    diffpose_video_tiny,
    lifting_baseline,
    lifting_context,
)
from .onestage import OneStageConfig, build_one_stage, diffusion_regpose, diffusion_regpose_tiny, edpose, edpose_tiny
from .topdown import (
    TopDownConfig,
    build_topdown,
    diffusionpose,
    diffusionpose_tiny,
    simplebaseline,
    simplebaseline_tiny,
)

__all__ = ["LiftingConfig", "OneStageConfig", "build_lifter", "build_one_stage", "diffpose", "diffpose_released",
           "diffpose_video", "diffpose_video_tiny", "diffusion_regpose", "diffusion_regpose_tiny", "edpose",
           "edpose_tiny", "lifting_baseline", "lifting_context", "TopDownConfig", "build_topdown", "diffusionpose",
           "diffusionpose_tiny", "diffusionpose_tiny_control", "simplebaseline", "simplebaseline_tiny"]
