"""One-stage recipes: ``edpose`` (deterministic ED-Pose head) and ``diffusion_regpose`` (diffusion head).

Both share every block but the head. Defaults follow the papers: ResNet-50, 4 feature levels, width 256,
6 encoder layers, 6 decoder layers (2 human-box layers, then 4 keypoint layers, as ED-Pose), 100 human
queries, box-denoising training (5 groups); DiffusionRegPose: 100 candidates, signal scale ζ = 5, padding by
the batch's ground-truth poses, completion by the COCO prior, 4 DDIM steps. The ``_tiny`` variants are sized for
CPU training; ``anchor="regression"`` anchors the diffusion head to ED-Pose's regression (a posediff option).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import register_model, with_config

__all__ = ["OneStageConfig", "build_one_stage", "edpose", "edpose_tiny", "diffusion_regpose", "diffusion_regpose_tiny",
           "diffusion_regpose_tiny_control"]


@dataclass(frozen=True)
class OneStageConfig:
    head: str = "regression"  # "regression" (ED-Pose) | "diffusion" (DiffusionRegPose)
    num_keypoints: int = 17
    skeleton: str = "coco17"  # OKS sigmas; "crowdpose14" for CrowdPose
    backbone: str = "resnet50"
    strides: tuple[int, ...] = (8, 16, 32)
    # a high-resolution level (e.g. 4: ResNet layer1) that skips the encoder and that only ``fine_layers`` extra
    # keypoint-decoder layers sample (a posediff option, not the papers': precision for small persons); 0: none
    fine_stride: int = 0
    fine_layers: int = 1
    # keypoint-decoder layer k predicts on its undetached input, so layer k's loss also trains layer k - 1 and the
    # initial regression (DINO's "look forward twice", as in ED-Pose's official code); a training change only
    look_forward_twice: bool = False
    # weight of a dense auxiliary heatmap loss on the encoder memory, training only (a posediff option; 0: off)
    aux_heatmap: float = 0.0
    pretrained_backbone: bool = False
    frozen_bn: bool = True
    freeze_backbone: bool = False  # no backbone gradients (a pretrained feature extractor)
    dim: int = 256
    heads: int = 8
    levels: int = 4
    points: int = 4
    ffn_dim: int = 1024
    encoder_layers: int = 6
    human_layers: int = 2
    keypoint_layers: int = 4
    num_queries: int = 100
    num_group: int = 100  # persons expanded into keypoint groups (edpose); diffusion: num_proposals
    dn_groups: int = 5  # box-denoising groups in training (0: off)
    max_det: int = 100
    attn_impl: str = "pytorch"
    # diffusion head
    num_proposals: int = 100
    # candidates sampled at inference (None: all N; anchor="regression": one for each of this many best persons).
    # COCO's keypoint AP keeps at most 20 persons per image (the ResNet-50 recipe's 30 of 100 are timed in
    # docs/benchmarks.md, "Inference speed")
    inference_proposals: int | None = 30
    signal_scale: float = 5.0
    # None: the anchor's own, "repeat_batch" (paper form: copies of the batch's ground-truth poses, so that x_t cannot
    # tell a padded candidate from a real one, models/heads/diffusion.py) or "empty" (regression anchor); the
    # paper's Table 4: "repeat", "empty" (its default), "noise", "mean"
    padding: str | None = None
    sampling_steps: int = 4
    completion: bool = True
    scheduler: str = "ddim"
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    eta: float = 0.0
    renewal: bool = False
    renewal_threshold: float = 0.05
    ensemble: str = "trajectory"  # "trajectory" | "pool" | "last" (models/heads/diffusion.py)
    # the pose-NMS OKS threshold of the diffusion heads' candidates: chosen on the val split by the standard bench's
    # sweep (0.5-0.9; 0.5 best on the mean of its runs, docs/recipes.md); OKS scales with each person's area
    nms_threshold: float = 0.5
    # "paper": free candidates in the image frame select ED-Pose's tokens by K-CA (Eq. 5-8); "regression": one
    # proposal per person, the decoder started from E[x_0 | x_t] under a Gaussian prior N(ED-Pose's regressed pose,
    # prior_std²) (a posediff option, docs/recipes.md)
    anchor: str = "paper"
    prior_std: float = 0.0  # 0: the decoder starts from ED-Pose's pose, x_t reaches it through the tokens alone
    diffusion: bool = True  # False: the diffusion-off control (x_t replaced by fresh noise at every step)
    # anchor="paper": K-CA's logit bias towards candidate i's own person i, learnt from this value (None: candidates
    # select freely among the persons). Overfitting one batch of 2 scenes, 1000 steps: AP 0.89 with 4.0, 0.06 free
    # (benchmarks/overfit.py, docs/recipes.md)
    home_bias: float | None = 4.0
    # official-code behaviours (docs/recipes.md), off by default
    # "uniform" (DiffusionDet's), "sampling" (the sampler's own timesteps), "zero" (the official code's t = 0)
    train_timestep: str = "uniform"
    time_split: str = "channels"  # "official": time embedding split along the token axis
    ensemble_drop_last: bool = False  # True: the official code drops the last step from its ensemble


def build_one_stage(cfg: OneStageConfig):
    from ..diffusion import SignalCodec, make_scheduler
    from ..models import DeformableEncoder, HumanDecoder, KeypointDecoder, OneStagePoseModel, TimmBackbone
    from ..models.denoisers import KeypointAttentionDenoiser
    from ..models.heads import DiffusionKeypointHead, RegressionKeypointHead
    from ..skeletons import get_skeleton

    skeleton = get_skeleton(cfg.skeleton)
    if skeleton.num_joints != cfg.num_keypoints:
        raise ValueError(f"config: skeleton {cfg.skeleton!r} has {skeleton.num_joints} joints but num_keypoints is "
                         f"{cfg.num_keypoints}")
    if cfg.fine_stride and not (0 < cfg.fine_stride < min(cfg.strides) and cfg.fine_layers >= 1):
        raise ValueError(f"config: fine_stride={cfg.fine_stride} needs fine_layers >= 1 (got {cfg.fine_layers}) and a "
                         f"stride finer than every one of strides={tuple(cfg.strides)}")
    common = dict(dim=cfg.dim, heads=cfg.heads, levels=cfg.levels, points=cfg.points, ffn_dim=cfg.ffn_dim,
                  impl=cfg.attn_impl)
    kp_decoder = KeypointDecoder(num_keypoints=cfg.num_keypoints, layers=cfg.keypoint_layers,
                                 fine_layers=cfg.fine_layers if cfg.fine_stride else 0,
                                 look_forward_twice=cfg.look_forward_twice, **common)
    strides = ((cfg.fine_stride,) if cfg.fine_stride else ()) + tuple(cfg.strides)
    if cfg.head == "regression":
        head = RegressionKeypointHead(kp_decoder, num_group=cfg.num_group)
    elif cfg.head == "diffusion":
        scheduler = make_scheduler(cfg.scheduler, num_train_timesteps=cfg.num_train_timesteps,
                                   beta_schedule=cfg.beta_schedule, prediction_type="sample",
                                   signal_scale=cfg.signal_scale)
        denoiser = KeypointAttentionDenoiser(dim=cfg.dim, num_keypoints=cfg.num_keypoints, heads=cfg.heads,
                                             time_split=cfg.time_split,
                                             cross="select" if cfg.anchor == "paper" else "own",
                                             home_bias=cfg.home_bias if cfg.anchor == "paper" else None)
        head = DiffusionKeypointHead(denoiser, scheduler, SignalCodec(cfg.signal_scale), padding=cfg.padding,
                                     sampling_steps=cfg.sampling_steps, num_proposals=cfg.num_proposals,
                                     decoder=kp_decoder, completion=cfg.completion,
                                     train_timestep=cfg.train_timestep, renewal=cfg.renewal,
                                     renewal_threshold=cfg.renewal_threshold, ensemble=cfg.ensemble,
                                     ensemble_drop_last=cfg.ensemble_drop_last, eta=cfg.eta,
                                     inference_proposals=cfg.inference_proposals, anchor=cfg.anchor,
                                     prior_std=cfg.prior_std, diffusion=cfg.diffusion)
    else:
        raise ValueError(f"config field head must be 'regression' or 'diffusion', got {cfg.head!r}")
    return OneStagePoseModel(
        backbone=TimmBackbone(cfg.backbone, strides=strides, pretrained=cfg.pretrained_backbone,
                              frozen_bn=cfg.frozen_bn, freeze=cfg.freeze_backbone),
        encoder=DeformableEncoder(layers=cfg.encoder_layers, **common),
        human_decoder=HumanDecoder(num_queries=cfg.num_queries, layers=cfg.human_layers, dn_groups=cfg.dn_groups,
                                   **common),
        head=head, num_keypoints=cfg.num_keypoints, sigmas=skeleton.sigmas, max_det=cfg.max_det,
        nms_threshold=cfg.nms_threshold, fine_level=bool(cfg.fine_stride), aux_heatmap=cfg.aux_heatmap)


def _skeleton_of(cfg: OneStageConfig, overrides: dict) -> dict:
    """``num_keypoints`` alone also sets the skeleton of that joint count."""
    if "num_keypoints" in overrides and "skeleton" not in overrides:
        overrides = dict(overrides, skeleton={17: "coco17", 14: "crowdpose14"}.get(overrides["num_keypoints"],
                                                                                   cfg.skeleton))
    return overrides


TINY = dict(backbone="resnet18", dim=128, heads=4, levels=3, ffn_dim=512, encoder_layers=2, human_layers=2,
            keypoint_layers=2, num_queries=30, num_group=10, num_proposals=10, inference_proposals=None, max_det=20,
            dn_groups=0)


@register_model
@with_config(OneStageConfig(head="regression"), adjust=_skeleton_of)
def edpose(**overrides):
    """ED-Pose (ICLR 2023): the deterministic baseline."""
    return build_one_stage(edpose.config(**overrides))


@register_model
@with_config(OneStageConfig(head="diffusion"), adjust=_skeleton_of)
def diffusion_regpose(**overrides):
    """DiffusionRegPose (CVPR 2024): ED-Pose with the diffusion keypoint head."""
    return build_one_stage(diffusion_regpose.config(**overrides))


@register_model
@with_config(OneStageConfig(head="regression", **TINY), adjust=_skeleton_of)
def edpose_tiny(**overrides):
    """edpose sized for CPU: ResNet-18, 3 levels, width 128, 2 + 2 + 2 layers, 30 queries, 10 persons, no DN."""
    return build_one_stage(edpose_tiny.config(**overrides))


@register_model
@with_config(OneStageConfig(head="diffusion", **TINY), adjust=_skeleton_of)
def diffusion_regpose_tiny(**overrides):
    """diffusion_regpose sized for CPU, with the sizes of edpose_tiny."""
    return build_one_stage(diffusion_regpose_tiny.config(**overrides))


@register_model
@with_config(OneStageConfig(head="diffusion", diffusion=False, **TINY), adjust=_skeleton_of)
def diffusion_regpose_tiny_control(**overrides):
    """diffusion_regpose_tiny's diffusion-off control: the same head and budget, x_t replaced by fresh noise at every
    step, so that the image alone decides (what diffusion adds, measured against it)."""
    return build_one_stage(diffusion_regpose_tiny_control.config(**overrides))
