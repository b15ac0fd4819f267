"""Pose heads: the deterministic ED-Pose head and DiffusionRegPose's diffusion head."""

from .diffusion import DiffusionKeypointHead
from .regression import RegressionKeypointHead

__all__ = ["DiffusionKeypointHead", "RegressionKeypointHead"]
