"""posediff: diffusion-based human pose estimation from interchangeable blocks."""

from . import skeletons
from .registry import create_model, get_config, list_models
from .skeletons import COCO17, CROWDPOSE14, H36M17, Skeleton, get_skeleton

__version__ = "0.1.0"

__all__ = ["COCO17", "CROWDPOSE14", "H36M17", "Skeleton", "create_model", "get_config", "get_skeleton", "list_models",
           "skeletons", "__version__"]
