"""Datasets: COCO-format keypoint files (COCO, CrowdPose), SynthCrowd, Human3.6M."""

from .coco import (
    AnnotationError,
    CocoKeypointDataset,
    ImageError,
    PersonArrays,
    collate,
    crowd_index,
    load_person_arrays,
)

__all__ = ["AnnotationError", "CocoKeypointDataset", "ImageError", "PersonArrays", "collate", "crowd_index",
           "load_person_arrays"]
