"""Pose heads: ED-Pose's regression and DiffusionRegPose's diffusion head (one-stage); SimpleBaseline's heatmaps and
DiffusionPose's diffusion head (top-down)."""

from .diffusion import DiffusionKeypointHead
from .diffusion_heatmap import DiffusionHeatmapHead
from .heatmap import HeatmapHead
from .regression import RegressionKeypointHead

__all__ = ["DiffusionHeatmapHead", "DiffusionKeypointHead", "HeatmapHead", "RegressionKeypointHead"]
