"""Datasets: COCO-format keypoint files (COCO, CrowdPose), SynthCrowd, Human3.6M."""

from .coco import PersonArrays, load_person_arrays

__all__ = ["PersonArrays", "load_person_arrays"]
