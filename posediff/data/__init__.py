"""Datasets: COCO-format keypoint files (COCO, CrowdPose) and SynthCrowd, the embedded default (2D);
Human3.6M in VideoPose3D's format (2D → 3D lifting)."""

from .base import ImageError, PoseDataset, collate
from .coco import AnnotationError, CocoKeypointDataset, PersonArrays, crowd_index, load_person_arrays
from .h36m import H36MError, H36MLifting
from .synthcrowd import SceneConfig, SynthCrowdDataset, make_scene, synthcrowd_split

__all__ = ["AnnotationError", "CocoKeypointDataset", "H36MError", "H36MLifting", "ImageError",
           "PersonArrays", "PoseDataset", "SceneConfig",
           "SynthCrowdDataset", "collate", "crowd_index", "load_person_arrays", "make_scene", "synthcrowd_split"]
