"""The diffusion math shared by the three papers, independent of images and networks."""

from .completion import GaussianPosePrior, conditional_gaussian
from .gmm import GaussianMixture, GMMForwardProcess
from .padding import PADDING_STRATEGIES, pad_poses
from .schedulers import (
    SampleOutput,
    check_scheduler,
    ddim_sample,
    gaussian_posterior_mean,
    make_scheduler,
    q_sample,
    sample,
    trailing_timesteps,
)
from .signal import SignalCodec

__all__ = [
    "GaussianMixture",
    "GaussianPosePrior",
    "GMMForwardProcess",
    "PADDING_STRATEGIES",
    "SampleOutput",
    "SignalCodec",
    "check_scheduler",
    "conditional_gaussian",
    "ddim_sample",
    "gaussian_posterior_mean",
    "make_scheduler",
    "pad_poses",
    "q_sample",
    "sample",
    "trailing_timesteps",
]
