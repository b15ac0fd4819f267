"""Model blocks; each is a plain nn.Module with keyword arguments."""

from .backbones import TimmBackbone
from .encoder import DeformableEncoder
from .human_decoder import HumanDecoder
from .keypoint_decoder import KeypointDecoder, PoseOutput
from .matcher import HungarianMatcher
from .ops import MSDeformAttn
from .pose_model import OneStagePoseModel
from .topdown import TopDownModel

__all__ = ["DeformableEncoder", "HumanDecoder", "HungarianMatcher", "KeypointDecoder", "MSDeformAttn",
           "OneStagePoseModel", "PoseOutput", "TimmBackbone", "TopDownModel"]
