"""Metrics: COCO / CrowdPose keypoint AP (``coco_eval``)."""

from .coco_eval import (
    COCO_KEYS,
    CROWDPOSE_KEYS,
    KeypointEvaluator,
    evaluate_keypoints,
    results_to_crowdpose14,
    to_coco_results,
    write_coco_results,
)

__all__ = ["COCO_KEYS", "CROWDPOSE_KEYS", "KeypointEvaluator", "evaluate_keypoints", "results_to_crowdpose14",
           "to_coco_results", "write_coco_results"]
