"""One-stage multi-person pose model: backbone -> encoder -> human decoder -> pose head."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .encoder import EncoderState, flatten_levels
from .losses import SetCriterion
from .matcher import HungarianMatcher
from .postprocess import image_sizes, pose_nms, to_predictions

__all__ = ["OneStagePoseModel", "EncoderState", "sine_position_embedding"]


def sine_position_embedding(mask: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """DETR's normalised 2D sine embedding: mask (B, H, W) True on padding -> (B, dim, H, W)."""
    not_mask = ~mask
    y = not_mask.cumsum(1, dtype=torch.float32)
    x = not_mask.cumsum(2, dtype=torch.float32)
    eps = 1e-6
    y = (y - 0.5) / (y[:, -1:, :] + eps) * 2 * math.pi
    x = (x - 0.5) / (x[:, :, -1:] + eps) * 2 * math.pi
    half = dim // 2
    freqs = temperature ** (2 * (torch.arange(half, device=mask.device) // 2) / half)
    px, py = x[..., None] / freqs, y[..., None] / freqs
    px = torch.stack([px[..., 0::2].sin(), px[..., 1::2].cos()], -1).flatten(3)
    py = torch.stack([py[..., 0::2].sin(), py[..., 1::2].cos()], -1).flatten(3)
    return torch.cat([py, px], -1).permute(0, 3, 1, 2)


def _projection(in_channels: int, dim: int, kernel_size: int = 1, **conv) -> nn.Sequential:
    """A feature map to the model width: convolution, then GroupNorm (Deformable DETR's input projection)."""
    groups = 32 if dim % 32 == 0 else 8
    return nn.Sequential(nn.Conv2d(in_channels, dim, kernel_size, **conv), nn.GroupNorm(groups, dim))


def _padding_at(pixel_mask: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
    """Pixel mask (B, H, W), True on real pixels -> padding mask (B, h, w) at a feature map's resolution."""
    return F.interpolate((~pixel_mask)[None].float(), size=feature.shape[-2:])[0].bool()


def _heatmap_targets(targets, size: tuple[int, int], padded: tuple[int, int]) -> torch.Tensor:
    """Heatmaps (B, K, h, w) of a padded batch: ``size`` (h, w) cells over the padded (H, W) pixels, each image
    in its top-left corner (targets' keypoints are normalised to their own image)."""
    from .pretrain import render_heatmaps

    hw = torch.as_tensor(padded, dtype=torch.float32, device=targets.keypoints.device)  # (2,) H, W
    to_padded = (targets.sizes.to(hw) / hw).flip(-1)  # (B, 2) x, y: each image's share of the padded batch
    keypoints = targets.keypoints * to_padded[:, None, None]  # (B, M, K, 2) normalised to the padded batch
    return render_heatmaps(keypoints, targets.visibility, targets.valid, targets.areas, size, tuple(padded))


class OneStagePoseModel(nn.Module):
    """ED-Pose's architecture with an interchangeable pose head.

    Args:
        backbone: :class:`~posediff.models.TimmBackbone`.
        encoder: :class:`~posediff.models.DeformableEncoder` (its ``levels`` may exceed the backbone's:
            extra levels come from stride-2 convolutions on the last map, as in Deformable DETR).
        human_decoder: :class:`~posediff.models.HumanDecoder`.
        head: :class:`~posediff.models.heads.RegressionKeypointHead` or
            :class:`~posediff.models.heads.DiffusionKeypointHead`.
        num_keypoints: K. sigmas: OKS sigmas of the skeleton (K,).
        max_det: persons returned per image. nms_threshold: pose-NMS OKS threshold (diffusion ensembles).
        loss_weights: overrides of :class:`~posediff.models.losses.SetCriterion`'s weights.
        fine_level: the backbone's first level is a high-resolution map (e.g. stride 4) that skips the encoder:
            projected to the model width, it is ``EncoderState.fine``, read only by the keypoint decoder's fine
            layers (``KeypointDecoder(fine_layers=...)``), for the precision that small persons need.
        aux_heatmap: weight of a dense auxiliary loss in training (0: none, the papers'): a small convolutional
            head on the encoder's finest level predicts keypoint heatmaps, trained with CenterNet's focal loss
            (:func:`~posediff.models.pretrain.heatmap_focal_loss`), so that every pixel near a joint teaches
            the memory that the keypoint decoder samples. The head is not used at inference.

    Forward:
        ``model(images, pixel_mask=None, targets=None)``: images (B, 3, H, W); pixel_mask (B, H, W) True on
        real pixels. In training mode with targets (:class:`~posediff.structures.PoseTargets`) it returns
        the loss dict (``"loss"`` is the weighted total); in eval mode one dict per image with
        ``keypoints`` (N, K, 3: x, y, score in input pixels), ``scores`` (N,) and ``boxes`` (N, 4, xyxy).
    """

    MAX_ABS_INPUT = 20.0  # ImageNet-normalised pixels lie within about ±2.7

    def __init__(self, backbone, encoder, human_decoder, head, num_keypoints: int = 17, sigmas=None,
                 max_det: int = 100, nms_threshold: float = 0.9, loss_weights: dict | None = None,
                 fine_level: bool = False, aux_heatmap: float = 0.0):
        super().__init__()
        dim, levels = encoder.dim, encoder.levels
        self.backbone, self.encoder, self.human_decoder, self.head = backbone, encoder, human_decoder, head
        self.num_keypoints, self.max_det, self.nms_threshold = num_keypoints, max_det, nms_threshold
        chans = list(backbone.channels)
        self.fine_proj = None
        if fine_level:
            if len(chans) < 2:
                raise ValueError("OneStagePoseModel: fine_level needs a backbone with a fine level and at least "
                                 "one more")
            self.fine_proj = _projection(chans[0], dim)
            chans = chans[1:]
        if levels < len(chans):
            raise ValueError(f"OneStagePoseModel: encoder has {levels} levels but the backbone gives {len(chans)}")
        proj = [_projection(c, dim) for c in chans]
        in_c = chans[-1]
        for _ in range(levels - len(chans)):
            proj.append(_projection(in_c, dim, kernel_size=3, stride=2, padding=1))
            in_c = dim
        self.input_proj = nn.ModuleList(proj)
        self.level_embed = nn.Parameter(torch.randn(levels, dim) * 0.02)
        sig = torch.as_tensor(sigmas if sigmas is not None else [0.05] * num_keypoints, dtype=torch.float32)
        self.register_buffer("sigmas", sig, persistent=False)
        self.criterion = SetCriterion(HungarianMatcher(sigmas=sig), weights=loss_weights, sigmas=sig)
        if aux_heatmap < 0:
            raise ValueError(f"OneStagePoseModel: aux_heatmap is a loss weight, >= 0; got {aux_heatmap}")
        self.aux_heatmap = aux_heatmap
        self.heatmap_head = None
        if aux_heatmap > 0:
            self.heatmap_head = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU(),
                                              nn.Conv2d(dim, num_keypoints, 1))
            nn.init.constant_(self.heatmap_head[-1].bias, -2.19)  # sigmoid = 0.1, CenterNet's prior

    def check_inputs(self, images, pixel_mask=None) -> None:
        """Refuse, before any layer runs, what the model cannot read: anything but a non-empty (B, 3, H, W) batch
        of the weights' floating dtype, a non-finite value, pixels not normalised (|x| > ``MAX_ABS_INPUT``: 0-255
        values, say), a pixel mask of another shape."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"OneStagePoseModel: images must be a (B, 3, H, W) tensor, got {got}")
        if images.shape[0] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
            raise ValueError(f"OneStagePoseModel: images is an empty batch {tuple(images.shape)}; expected at least "
                             f"one image of at least one pixel")
        dtype = self.level_embed.dtype
        autocast = images.is_floating_point() and torch.is_autocast_enabled(images.device.type)
        if images.dtype != dtype and not autocast:  # under autocast the layers cast their inputs
            hint = f" (convert with images.to({dtype}))" if images.is_floating_point() else \
                " (pixels 0-255: convert with images.float() / 255, then normalise)"
            raise ValueError(f"OneStagePoseModel: images are {images.dtype}, the model's weights {dtype}{hint}")
        if pixel_mask is not None and (not isinstance(pixel_mask, torch.Tensor)
                                       or tuple(pixel_mask.shape) != (images.shape[0], *images.shape[2:])):
            got = tuple(pixel_mask.shape) if isinstance(pixel_mask, torch.Tensor) else type(pixel_mask).__name__
            raise ValueError(f"OneStagePoseModel: pixel_mask must be (B, H, W) = {(images.shape[0], *images.shape[2:])}"
                             f", True on real pixels, got {got}")
        largest = float(images.detach().abs().amax())  # NaN if any value is NaN
        if not math.isfinite(largest):
            bad = (~torch.isfinite(images)).nonzero()[0].tolist()
            raise ValueError(f"OneStagePoseModel: images hold non-finite values (image {bad[0]}, channel {bad[1]}, "
                             f"row {bad[2]}, column {bad[3]} is {float(images[tuple(bad)])})")
        if largest > self.MAX_ABS_INPUT:
            raise ValueError(f"OneStagePoseModel: images hold values up to {largest:g}; expected pixels normalised "
                             f"with the ImageNet mean and std (posediff.data.transforms.IMAGENET_MEAN / _STD), which "
                             f"lie within ±{self.MAX_ABS_INPUT:g}")

    def encode(self, images: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> EncoderState:
        """Image features, computed once per image (the inputs checked first, :meth:`check_inputs`)."""
        self.check_inputs(images, pixel_mask)
        if pixel_mask is None:
            pixel_mask = torch.ones(images.shape[0], *images.shape[-2:], dtype=torch.bool, device=images.device)
        feats = self.backbone(images)
        fine = None
        if self.fine_proj is not None:
            fine_map = self.fine_proj(feats[0])  # (B, D, H / s_fine, W / s_fine)
            f_tokens, f_pad, _, f_shapes, _, f_valid = flatten_levels([fine_map], [_padding_at(pixel_mask, fine_map)])
            fine = EncoderState(memory=f_tokens, padding_mask=f_pad, spatial_shapes=f_shapes, valid_ratios=f_valid)
            feats = feats[1:]
        maps, masks = [], []
        for lvl, proj in enumerate(self.input_proj):
            src = proj(feats[lvl]) if lvl < len(feats) else proj(feats[-1] if lvl == len(feats) else maps[-1])
            maps.append(src)
            masks.append(_padding_at(pixel_mask, src))
        pos = [sine_position_embedding(m, self.encoder.dim) for m in masks]
        tokens, pad, pos_t, shapes, _, valid = flatten_levels(maps, masks, pos, self.level_embed)
        memory = self.encoder(tokens, pos_t, shapes, valid, pad)
        return EncoderState(memory=memory, padding_mask=pad, spatial_shapes=shapes, valid_ratios=valid, fine=fine)

    def _heatmap_loss(self, enc: EncoderState, images: torch.Tensor, targets) -> torch.Tensor:
        """The auxiliary heatmap loss on the encoder's finest level (``aux_heatmap``), in float32, normalised by
        the peaks of the whole batch (all processes of a torchrun job, as the set losses are)."""
        from .pretrain import heatmap_focal_loss

        h, w = enc.spatial_shapes[0].tolist()
        b, _, d = enc.memory.shape
        fmap = enc.memory[:, :h * w].transpose(1, 2).reshape(b, d, h, w)  # (B, D, h, w): level 0
        heat = _heatmap_targets(targets, (h, w), images.shape[-2:])  # (B, K, h, w)
        with torch.autocast(device_type=fmap.device.type, enabled=False):
            logits = self.heatmap_head(fmap.float())  # (B, K, h, w)
        return heatmap_focal_loss(logits, heat)

    def forward(self, images, pixel_mask=None, targets=None, steps: int | None = None,
                generator: torch.Generator | None = None):
        enc = self.encode(images, pixel_mask)
        humans = self.human_decoder(enc.memory, enc.padding_mask, enc.spatial_shapes, enc.valid_ratios,
                                    targets=targets if self.training else None)
        if self.training:
            if targets is None:
                raise ValueError("OneStagePoseModel: training mode needs targets (call model.eval() to predict)")
            pose = self.head(humans, enc, targets)
            losses = self.criterion(pose, humans, targets)
            if self.heatmap_head is not None:
                losses["aux_heatmap"] = self._heatmap_loss(enc, images, targets)
                losses["loss"] = losses["loss"] + self.aux_heatmap * losses["aux_heatmap"]
            return losses
        return self._predictions(humans, enc, image_sizes(pixel_mask, images), steps, generator)

    @torch.no_grad()
    def predict_at_steps(self, images, pixel_mask, steps: Sequence[int | None],
                         generators: Sequence[torch.Generator | None]) -> list[list[dict]]:
        """The predictions of ``forward(images, pixel_mask, steps=s, generator=g)`` for each (s, g) pair, with the
        backbone, encoder and human decoder run once: only the head samples once per step count (an evaluation
        of several sampling-step counts costs one feature pass). Eval mode only."""
        if self.training or len(steps) != len(generators):
            raise ValueError("OneStagePoseModel.predict_at_steps: eval mode, and one generator per step count")
        enc = self.encode(images, pixel_mask)
        humans = self.human_decoder(enc.memory, enc.padding_mask, enc.spatial_shapes, enc.valid_ratios)
        sizes = image_sizes(pixel_mask, images)
        return [self._predictions(humans, enc, sizes, s, g) for s, g in zip(steps, generators)]

    def check_steps(self, steps) -> None:
        """Refuse sampling ``steps`` the head cannot take: any for a one-pass head, and for a diffusion head
        anything but an integer from 1 to its ``max_sampling_steps`` (None: the head's own)."""
        if steps is None:
            return
        total = getattr(self.head, "max_sampling_steps", None)
        if total is None:
            raise ValueError(f"sampling steps (steps=, --steps) {steps!r}: this model's {type(self.head).__name__} "
                             f"predicts in one pass and does not sample; sampling steps apply to diffusion models only")
        if isinstance(steps, bool) or not hasattr(steps, "__index__") or not 1 <= steps <= total:
            raise ValueError(f"sampling steps (steps=, --steps) {steps!r}: expected an integer from 1 to {total} (the "
                             f"scheduler's num_train_timesteps), or None for the head's own "
                             f"{getattr(self.head, 'sampling_steps', '')}")

    def _predictions(self, humans, enc, sizes, steps, generator) -> list[dict]:
        self.check_steps(steps)
        logits, boxes, keypoints = self.head.predict(humans, enc, steps=steps, generator=generator)
        if not getattr(self.head, "nms", False):
            return to_predictions(logits, boxes, keypoints, sizes, self.max_det)
        preds = to_predictions(logits, boxes, keypoints, sizes, logits.shape[1])
        out = []
        for p in preds:
            wh = (p["boxes"][:, 2:] - p["boxes"][:, :2]).clamp_min(1.0)
            keep = pose_nms(p["keypoints"][..., :2], p["scores"], wh.prod(-1) * 0.53, self.sigmas,
                            self.nms_threshold, self.max_det)
            out.append({k: v[keep] for k, v in p.items()})
        return out
