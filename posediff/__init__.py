"""posediff: diffusion-based human pose estimation from interchangeable blocks."""

from . import skeletons
from .skeletons import COCO17, CROWDPOSE14, H36M17, Skeleton, get_skeleton

__version__ = "0.1.0"

__all__ = ["COCO17", "CROWDPOSE14", "H36M17", "Skeleton", "get_skeleton", "skeletons", "__version__"]
