"""Metrics: COCO / CrowdPose keypoint AP (``coco_eval``); where the AP goes (``errors``); 3D pose errors
(``mpjpe``: P1, P2, N-MPJPE, per action, over hypotheses)."""

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
from .mpjpe import action_means, hypothesis_errors, mpjpe, n_mpjpe, p_mpjpe, root_relative

__all__ = ["COCO_KEYS", "CROWDPOSE_KEYS", "KeypointEvaluator", "evaluate_keypoints", "results_to_crowdpose14",
           "to_coco_results", "write_coco_results", "keypoint_errors", "action_means", "hypothesis_errors", "mpjpe",
           "n_mpjpe", "p_mpjpe", "root_relative"]
