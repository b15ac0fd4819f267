"""Denoisers: K-SA / K-CA for poses (DiffusionRegPose)."""

from .keypoint_attention import TIME_SPLITS, KeypointAttentionDenoiser

__all__ = ["KeypointAttentionDenoiser", "TIME_SPLITS"]
