"""Lifting recipes (2D → 3D): ``lifting_baseline`` (DiffPose's Baseline A) and ``diffpose`` / ``diffpose_video``.

All share the context encoder and the denoiser network; they differ in the head. Defaults follow DiffPose
(CVPR 2023): GraFormer-style graph networks (pose embedding J × 128 concatenated with a J × 128 context, width
256, 3 GCN-attention blocks), a frozen pretrained context encoder, M = 5 GMM components with full covariances,
K = 50 diffusion steps, N = 5 hypotheses averaged, 5 DDIM steps. ``diffpose_video`` reads T = 243 frames
through a MixSTE-style encoder; ``diffpose_video_tiny`` T = 9 frames, width 64, 2 layer pairs, for CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import register_model, with_config

__all__ = ["LiftingConfig", "RELEASED", "build_lifter", "lifting_context", "lifting_baseline", "diffpose",
           "diffpose_control", "diffpose_released", "diffpose_video", "diffpose_video_tiny"]


@dataclass(frozen=True)
class LiftingConfig:
    head: str = "diffpose"  # "regression" (Baseline A) | "diffpose" | "none" (the context encoder alone)
    context: str = "graph"  # "graph" (frame-based, GraFormer-style) | "temporal" (video, MixSTE-style)
    frames: int = 1
    num_joints: int = 17
    dim: int = 128  # E ∈ R^{J×dim}
    context_dim: int = 128  # f_ST ∈ R^{J×context_dim}
    blocks: int = 3  # GCN-attention blocks of the denoiser
    heads: int = 4
    context_blocks: int = 3  # of the graph context encoder
    context_depth: int = 4  # spatial + temporal layer pairs of the temporal context encoder
    dropout: float = 0.0
    freeze_context: bool = True
    # the pretrained context encoder: a safetensors file (a run's checkpoint or a zoo file) whose context.* tensors
    # are loaded at build time; "": none (a fresh encoder)
    context_weights: str = ""
    # DiffPose head
    num_train_timesteps: int = 50  # K
    beta_schedule: str = "squaredcos_cap_v2"  # ᾱ_K ≈ 0, as Eq. 7 needs
    num_components: int = 5  # M
    gmm_samples: int = 256  # draws of H_K the EM fits
    em_iterations: int = 10
    covariance: str = "full"  # "full" (3J × 3J, the paper) | "joint" (3 × 3 per joint)
    depth: str = "context"  # "context" | "histogram"
    # "x0": ‖ĥ_0 − h_0‖² at every k alike (DDPM's simplified objective, which the paper says it follows); "step": Eq. 9
    # read through the DDIM step (c_k² weights: 1 at k = 1, about 0.001 beyond k = 20), measured worse
    # (docs/recipes.md); "epsilon": the released code's
    loss: str = "x0"
    hypotheses: int = 5  # N
    steps: int = 5  # DDIM steps
    sigma_2d: float = 0.005  # 2D spread (screen units) when no detector mixture is given
    # behaviours of the released code (GMMDiffusionHead, docs/recipes.md); the defaults are the paper's
    state: str = "xyz"  # "uvxyz": the 2D diffused with the 3D
    noise: str = "gmm"  # "per_joint": zero-mean per-joint 2D noise, N(0, 1) on xyz, no fitted GMM
    train_timesteps: str = "uniform"  # "antithetic": t and K-1-t in pairs
    test_start: str = "gmm"  # "point": sampling starts from H_K's point, no noise
    timesteps: tuple[int, ...] | None = None  # explicit sampling timesteps, e.g. (12, 0)
    context_input: bool = True  # False: the denoiser gets no context
    beta_start: float | None = None  # the scheduler's (linear schedules)
    beta_end: float | None = None
    diffusion: bool = True  # False: the diffusion-off control (x_t replaced by fresh draws of the GMM)
    # "graph": posediff's GraFormer-style denoiser (the paper's description); "released": the released code's
    # (ChebConv, a learnt-adjacency GCN beside the attention; width ``dim``, ``blocks`` blocks, its configs' dropout
    # 0.25 / 0.1 in place of ``dropout``; it reads no context, so it needs context_input=False)
    denoiser: str = "graph"


def build_lifter(cfg: LiftingConfig):
    from ..models.denoisers.graph import GraphDenoiser, GraphLifter, ReleasedGraphDenoiser
    from ..models.lifter import GMMDiffusionHead, LiftingModel, RegressionLiftingHead
    from ..models.temporal import TemporalLifter

    if cfg.context == "graph":
        context = GraphLifter(dim=cfg.context_dim, blocks=cfg.context_blocks, heads=cfg.heads, dropout=cfg.dropout)
    elif cfg.context == "temporal":
        context = TemporalLifter(cfg.frames, num_joints=cfg.num_joints, dim=cfg.context_dim, depth=cfg.context_depth,
                                 heads=cfg.heads, dropout=cfg.dropout)
    else:
        raise ValueError(f"config field context must be 'graph' or 'temporal', got {cfg.context!r}")
    if cfg.context == "graph" and cfg.frames != 1:
        raise ValueError(f"config: context='graph' reads one frame, got frames={cfg.frames}")
    dims = 5 if cfg.state == "uvxyz" else 3
    if cfg.denoiser == "graph":
        denoiser = GraphDenoiser(dim=cfg.dim, context_dim=cfg.context_dim, blocks=cfg.blocks, heads=cfg.heads,
                                 dropout=cfg.dropout, in_dim=dims, out_dim=dims)
    elif cfg.denoiser == "released":
        if cfg.context_input:
            raise ValueError("config: denoiser='released' reads no context (the released code's); give "
                             "context_input=False")
        denoiser = ReleasedGraphDenoiser(dim=cfg.dim, blocks=cfg.blocks, heads=cfg.heads, in_dim=dims, out_dim=dims)
    else:
        raise ValueError(f"config field denoiser must be 'graph' or 'released', got {cfg.denoiser!r}")
    if cfg.context_weights:
        _load_context(context, cfg.context_weights)
    if cfg.head == "none":
        head = None
    elif cfg.head == "regression":
        head = RegressionLiftingHead(denoiser, timestep=cfg.num_train_timesteps - 1)
    elif cfg.head == "diffpose":
        head = GMMDiffusionHead(denoiser, num_joints=cfg.num_joints, num_train_timesteps=cfg.num_train_timesteps,
                                beta_schedule=cfg.beta_schedule, num_components=cfg.num_components,
                                gmm_samples=cfg.gmm_samples, em_iterations=cfg.em_iterations,
                                covariance=cfg.covariance, depth=cfg.depth, loss=cfg.loss,
                                hypotheses=cfg.hypotheses, steps=cfg.steps, sigma_2d=cfg.sigma_2d, state=cfg.state,
                                noise=cfg.noise, train_timesteps=cfg.train_timesteps, test_start=cfg.test_start,
                                timesteps=cfg.timesteps, context_input=cfg.context_input, beta_start=cfg.beta_start,
                                beta_end=cfg.beta_end, diffusion=cfg.diffusion)
    else:
        raise ValueError(f"config field head must be 'regression', 'diffpose' or 'none', got {cfg.head!r}")
    return LiftingModel(context, head, frames=cfg.frames, freeze_context=cfg.freeze_context,
                        num_joints=cfg.num_joints)


def _load_context(context, path: str) -> None:
    """Fill ``context`` from the ``context.*`` tensors of a safetensors file; every tensor must be there."""
    from ..io import read_safetensors

    try:
        _, tensors = read_safetensors(path, "the pretrained context encoder (model.context_weights)")
    except OSError as err:
        raise ValueError(str(err)) from err
    own = context.state_dict()
    found = {k[len("context."):]: v for k, v in tensors.items() if k.startswith("context.")}
    missing = sorted(set(own) - set(found))
    wrong = sorted(k for k in own if k in found and found[k].shape != own[k].shape)
    if missing or wrong:
        raise ValueError(f"{path}: model.context_weights must hold this recipe's context encoder; "
                         f"{len(missing)} tensors missing (e.g. {missing[:2]}), {len(wrong)} of another shape "
                         f"(e.g. {wrong[:2]})")
    context.load_state_dict({k: found[k].to(own[k].dtype) for k in own})


@register_model
@with_config(LiftingConfig(head="none", freeze_context=False), task="lifting")
def lifting_context(**overrides):
    """The context encoder alone as a lifter (GraFormer-style frames; ``context="temporal"`` for video): what
    ``lifting_baseline`` and ``diffpose`` take, pretrained and frozen, through ``context_weights``."""
    return build_lifter(lifting_context.config(**overrides))


@register_model
@with_config(LiftingConfig(head="regression"), task="lifting")
def lifting_baseline(**overrides):
    """DiffPose's Baseline A: the same network, one deterministic pass from the frame context."""
    return build_lifter(lifting_baseline.config(**overrides))


@register_model
@with_config(LiftingConfig(head="diffpose"), task="lifting")
def diffpose(**overrides):
    """DiffPose, frame-based (CVPR 2023): H_K, a per-pose GMM, Eq. 7, DDIM, N = 5 hypotheses averaged."""
    return build_lifter(diffpose.config(**overrides))


@register_model
@with_config(LiftingConfig(head="diffpose", diffusion=False), task="lifting")
def diffpose_control(**overrides):
    """DiffPose's diffusion-off control: the same head and budget, x_t replaced by a fresh draw of the fitted GMM at
    t = K − 1 at every step (training and sampling), so that what the reverse process adds can be measured."""
    return build_lifter(diffpose_control.config(**overrides))


# the released frame-based code's behaviours (GONGJIA0208/Diffpose, its CPN configuration; docs/recipes.md)
RELEASED = dict(state="uvxyz", noise="per_joint", loss="epsilon", num_train_timesteps=51, beta_schedule="linear",
                beta_start=1e-4, beta_end=1e-3, train_timesteps="antithetic", test_start="point", timesteps=(12, 0),
                context_input=False, hypotheses=1, denoiser="released", dim=96, blocks=5)


@register_model
@with_config(LiftingConfig(head="diffpose", **RELEASED), task="lifting")
def diffpose_released(**overrides):
    """DiffPose as its released code trains and samples it (uvxyz state, zero-mean per-joint 2D noise, ε loss,
    linear β over 51 steps, start at an H_K point, timesteps 12 and 0, no context, one hypothesis, its ChebConv
    denoiser of width 96 and 5 blocks)."""
    return build_lifter(diffpose_released.config(**overrides))


@register_model
@with_config(LiftingConfig(head="diffpose", context="temporal", frames=243), task="lifting")
def diffpose_video(**overrides):
    """DiffPose, video: the context from a spatial-temporal encoder over T = 243 frames."""
    return build_lifter(diffpose_video.config(**overrides))


@register_model
@with_config(LiftingConfig(head="diffpose", context="temporal", frames=9, context_dim=64, context_depth=2),
             task="lifting")
def diffpose_video_tiny(**overrides):
    """diffpose_video over T = 9 frames with a smaller encoder (width 64, 2 layer pairs), for CPU."""
    return build_lifter(diffpose_video_tiny.config(**overrides))
