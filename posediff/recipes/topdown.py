"""Top-down recipes (one person crop in, its heatmaps out): ``simplebaseline`` and ``diffusionpose``.

``simplebaseline`` is SimpleBaseline (Xiao et al. ECCV 2018): ResNet-50, three 256-wide deconvolutions, 256x192
input, 64x48 heatmaps of sigma 2, flip test. ``diffusionpose`` is DiffusionPose (arXiv 2306.17074) on HRNet-W32's
stride-4 branch: the same coarse head and the structure-guided diffusion head
(:class:`~posediff.models.heads.DiffusionHeatmapHead`). The ``_tiny`` forms share one CPU size: ResNet-18,
128-wide deconvolutions, 128x96 input, 32x24 heatmaps of sigma 1.5, and no flip test (SynthCrowd draws left limbs
darker, so a mirrored crop shows a person whose sides a model trained without flips reads the wrong way round).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import register_model, with_config

__all__ = ["TopDownConfig", "build_topdown", "diffusionpose", "diffusionpose_tiny", "diffusionpose_tiny_control",
           "simplebaseline", "simplebaseline_tiny"]


@dataclass(frozen=True)
class TopDownConfig:
    head: str = "heatmap"  # "heatmap" (SimpleBaseline) | "diffusion" (DiffusionPose)
    skeleton: str = "coco17"
    backbone: str = "resnet50"
    backbone_stride: int = 32  # the backbone level the head reads (HRNet: 4, its high-resolution branch)
    pretrained_backbone: bool = False  # timm's ImageNet weights (a download)
    frozen_bn: bool = False
    freeze_backbone: bool = False  # no backbone gradients (a pretrained feature extractor)
    input_size: tuple[int, int] = (192, 256)  # (W, H)
    stride: int = 4  # of the heatmaps
    sigma: float = 2.0  # of the heatmaps' Gaussians, in cells
    deconv_channels: int = 256
    flip_test: bool = True
    padding: float = 1.25  # a box's padding into its crop
    # DiffusionPose (models/heads/diffusion_heatmap.py); what the paper leaves open is chosen in docs/recipes.md
    space: str = "coordinates"  # "coordinates" (the paper) | "pixels" (the heatmap diffused, Feng et al. ICCV 2023)
    signal_scale: float = 2.0  # ζ (DiffusionDet's)
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    steps: int = 1  # DDIM steps (best of 1/2/4 from the noised start, of 1/2 from "coarse_clean": docs/recipes.md)
    # "coarse_clean": the coarse estimate itself, un-noised, as x_t at start_timestep (chosen on val over "coarse",
    # the estimate noised to start_timestep, and "noise", pure at T - 1: docs/recipes.md)
    start: str = "coarse_clean"
    start_timestep: int = 500
    mask_sigma: float = 2.0  # the keypoint mask (cells)
    limb_width: float = 1.0  # the limb mask (cells)
    guidance: bool = True  # False: the condition is the features alone (ablation)
    unet_dim: int = 64
    unet_levels: int = 2
    unet_blocks: int = 1
    attn_heads: int = 4
    window: int = 8
    coarse_weight: float = 1.0
    detach_features: bool = True  # the denoiser's loss does not reach the backbone and the neck (measured)
    train_start: str = "truth"  # "coarse": x_t from the coarse estimate in training (a posediff option)
    diffusion: bool = True  # False: the diffusion-off control (x_t replaced by fresh noise)
    residual: bool = True  # Ĥ_0 = the coarse heatmap + the U-Net's correction (measured)
    blend: bool = False  # the output: the mean of the coarse heatmap and Ĥ_0 (needs residual=False; measured)


def build_topdown(cfg: TopDownConfig):
    from ..data.topdown import HeatmapCodec
    from ..models.backbones import TimmBackbone
    from ..models.heads.diffusion_heatmap import DiffusionHeatmapHead
    from ..models.heads.heatmap import HeatmapHead
    from ..models.topdown import TopDownModel
    from ..skeletons import get_skeleton

    if cfg.head not in ("heatmap", "diffusion"):
        raise ValueError(f"config field head must be 'heatmap' or 'diffusion', got {cfg.head!r}")
    if (not isinstance(cfg.input_size, (tuple, list)) or len(cfg.input_size) != 2
            or any(not isinstance(v, int) or v < 32 or v % 32 for v in cfg.input_size)):
        raise ValueError(f"config field input_size must be (W, H), integers >= 32 and multiples of 32, got "
                         f"{cfg.input_size!r}")
    skeleton = get_skeleton(cfg.skeleton)
    kwargs = {"feature_location": ""} if cfg.backbone.startswith("hrnet") else {}  # HRNet's raw branches
    backbone = TimmBackbone(cfg.backbone, strides=(cfg.backbone_stride,), pretrained=cfg.pretrained_backbone,
                            frozen_bn=cfg.frozen_bn, freeze=cfg.freeze_backbone, **kwargs)
    codec = HeatmapCodec(tuple(cfg.input_size), cfg.stride, cfg.sigma)
    coarse = HeatmapHead(backbone.channels[-1], in_stride=cfg.backbone_stride, out_stride=cfg.stride,
                         channels=cfg.deconv_channels, num_keypoints=skeleton.num_joints)
    if cfg.head == "heatmap":
        head = coarse
    else:
        head = DiffusionHeatmapHead(coarse, skeleton, codec.heatmap_size, stride=cfg.stride, sigma=cfg.sigma,
                                    space=cfg.space, signal_scale=cfg.signal_scale,
                                    num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                                    steps=cfg.steps, start=cfg.start, start_timestep=cfg.start_timestep,
                                    mask_sigma=cfg.mask_sigma, limb_width=cfg.limb_width, guidance=cfg.guidance,
                                    dim=cfg.unet_dim, levels=cfg.unet_levels, blocks=cfg.unet_blocks,
                                    heads=cfg.attn_heads, window=cfg.window, coarse_weight=cfg.coarse_weight,
                                    detach_features=cfg.detach_features, diffusion=cfg.diffusion,
                                    train_start=cfg.train_start, residual=cfg.residual,
                                    blend=cfg.blend)
    return TopDownModel(backbone, head, codec, skeleton, flip_test=cfg.flip_test, padding=cfg.padding)


TINY = dict(backbone="resnet18", input_size=(96, 128), sigma=1.5, deconv_channels=128, flip_test=False, unet_dim=32)


@register_model
@with_config(TopDownConfig(head="heatmap"), task="topdown")
def simplebaseline(**overrides):
    """SimpleBaseline (ECCV 2018): ResNet-50, deconvolutions, 256x192, the deterministic top-down baseline."""
    return build_topdown(simplebaseline.config(**overrides))


@register_model
@with_config(TopDownConfig(head="diffusion", backbone="hrnet_w32", backbone_stride=4), task="topdown")
def diffusionpose(**overrides):
    """DiffusionPose (arXiv 2306.17074): HRNet-W32, keypoints diffused as heatmaps, structure-guided U-Net."""
    return build_topdown(diffusionpose.config(**overrides))


@register_model
@with_config(TopDownConfig(head="heatmap", **TINY), task="topdown")
def simplebaseline_tiny(**overrides):
    """simplebaseline sized for CPU: ResNet-18, 128-wide deconvolutions, 128x96 input, no flip test."""
    return build_topdown(simplebaseline_tiny.config(**overrides))


@register_model
@with_config(TopDownConfig(head="diffusion", **TINY), task="topdown")
def diffusionpose_tiny(**overrides):
    """diffusionpose at simplebaseline_tiny's size (ResNet-18, the same neck), a 32-wide U-Net, for CPU."""
    return build_topdown(diffusionpose_tiny.config(**overrides))


@register_model
@with_config(TopDownConfig(head="diffusion", diffusion=False, **TINY), task="topdown")
def diffusionpose_tiny_control(**overrides):
    """diffusionpose_tiny's diffusion-off control: the same head and budget, x_t replaced by fresh noise."""
    return build_topdown(diffusionpose_tiny_control.config(**overrides))
