"""timm backbones: feature maps chosen by stride."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["TimmBackbone"]


class TimmBackbone(nn.Module):
    """Any timm model with ``features_only``, returning the levels whose stride is in ``strides``.

    Levels are picked from ``feature_info`` by their reduction, not by hard-coded indices, and NHWC
    outputs (e.g. Swin, ConvNeXt in some timm versions) are returned as NCHW.

    Args:
        name: timm model name (``"resnet50"``, ``"convnext_tiny"``, ...).
        strides: wanted output strides, e.g. (8, 16, 32).
        pretrained: passed to timm (downloads weights; no network on our test machines).
        frozen_bn: replace BatchNorm by FrozenBatchNorm (as ED-Pose trains with small batches).
        freeze: no gradients for the backbone at all (a pretrained feature extractor; about a third less
            compute per training step for ResNet-18 on CPU).
        **kwargs: passed to ``timm.create_model``.

    Attributes:
        channels: channels of each returned level. strides: the strides returned.

    Forward: (B, 3, H, W) -> list of (B, C_i, H / s_i, W / s_i).
    """

    def __init__(self, name: str = "resnet50", strides: Sequence[int] = (8, 16, 32), pretrained: bool = False,
                 frozen_bn: bool = True, freeze: bool = False, **kwargs):
        super().__init__()
        import timm

        if not timm.is_model(name):
            import difflib

            close = difflib.get_close_matches(name, timm.list_models(), n=5)
            raise ValueError(f"TimmBackbone: timm has no model {name!r}" + (f"; similar names: {close}" if close else
                                                                            "; timm.list_models() lists them"))
        probe = timm.create_model(name, features_only=True, pretrained=False, **kwargs)
        reductions = list(probe.feature_info.reduction())
        missing = [s for s in strides if s not in reductions]
        if missing:
            raise ValueError(f"TimmBackbone: {name!r} has no feature level with stride {missing}; "
                             f"its strides are {reductions}")
        out_indices = tuple(reductions.index(s) for s in strides)
        self.body = timm.create_model(name, features_only=True, out_indices=out_indices, pretrained=pretrained,
                                      **kwargs)
        del probe
        self.channels = list(self.body.feature_info.channels())
        self.strides = list(self.body.feature_info.reduction())
        self.nhwc = getattr(self.body, "output_fmt", "NCHW") == "NHWC"
        if frozen_bn:
            from timm.layers import freeze_batch_norm_2d

            self.body = freeze_batch_norm_2d(self.body)
        self.freeze = freeze
        if freeze:
            self.body.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if self.freeze:
            with torch.no_grad():
                feats = self.body(images)
        else:
            feats = self.body(images)
        if self.nhwc:
            feats = [f.permute(0, 3, 1, 2).contiguous() for f in feats]
        return list(feats)
