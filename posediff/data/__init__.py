"""Datasets: COCO-format keypoint files (COCO, CrowdPose) and SynthCrowd, the embedded default."""

from .base import ImageError, PoseDataset, collate
from .coco import AnnotationError, CocoKeypointDataset, PersonArrays, crowd_index, load_person_arrays
from .synthcrowd import SceneConfig, SynthCrowdDataset, make_scene, synthcrowd_split

__all__ = ["AnnotationError", "CocoKeypointDataset", "ImageError", "PersonArrays", "PoseDataset", "SceneConfig",
           "SynthCrowdDataset", "collate", "crowd_index", "load_person_arrays", "make_scene", "synthcrowd_split"]
