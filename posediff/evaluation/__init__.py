"""Metrics: COCO / CrowdPose keypoint AP (``coco_eval``); where the AP goes (``errors``)."""

from .coco_eval import (
    COCO_KEYS,
    CROWDPOSE_KEYS,
    KeypointEvaluator,
    evaluate_keypoints,
    results_to_crowdpose14,
    to_coco_results,
    write_coco_results,
)
from .errors import keypoint_errors

__all__ = ["COCO_KEYS", "CROWDPOSE_KEYS", "KeypointEvaluator", "evaluate_keypoints", "results_to_crowdpose14",
           "to_coco_results", "write_coco_results", "keypoint_errors"]
