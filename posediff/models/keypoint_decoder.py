"""Human-to-keypoint expansion and the keypoint decoder (ED-Pose), shared by both pose heads.

Each of N persons is a group of 1 + K tokens: its human token and K keypoint tokens. A decoder layer:

1. within-person self-attention over the 1 + K tokens of each person;
2. cross-attention from every token to ``context`` tokens (ED-Pose: the human tokens of all persons,
   its human-to-human interaction; DiffusionRegPose: the detection's human-to-keypoint tokens, K-CA);
3. deformable cross-attention into the image memory, keypoints sampled around their current position
   (a small box per joint) and human tokens around their box;
4. a feed-forward block, optionally modulated by a conditioning scale / shift (the diffusion timestep);
5. refinement: keypoints and boxes move by predicted offsets in inverse-sigmoid space; a logit per person.
   The positions a layer samples at are detached; with ``look_forward_twice`` (DINO's name, what ED-Pose's
   official code does) the offsets are added to the undetached input, so that layer k's loss also trains
   layer k - 1 and the initial estimate. The predictions are the same either way; only the gradients differ.

``fine_layers`` more layers of the same kind may follow, whose deformable attention samples only a
high-resolution map that skipped the encoder (``EncoderState.fine``, e.g. stride 4): a posediff option for
small persons, whose OKS wants a few pixels of precision. Their predictions are further entries of the
output: their keypoints are supervised like any layer's; their boxes are the coarse layers' (detached) and
their logits a correction to the last coarse logits (detached), so no coarse head is supervised twice.
Every other weight keeps its name, so a checkpoint without fine layers initialises one with them
(``init_from``, ``--init``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .encoder import EncoderState
from .ops import MSDeformAttn
from .utils import MLP, inverse_sigmoid, sine_embed

__all__ = ["KeypointDecoder", "PoseOutput", "expand_human_tokens"]


@dataclass
class PoseOutput:
    """Per-layer predictions of a pose head.

    Attributes:
        logits: (L, B, N) person logits. boxes: (L, B, N, 4) cx, cy, w, h normalised.
        keypoints: (L, B, N, K, 2) normalised x, y.
    """

    logits: torch.Tensor
    boxes: torch.Tensor
    keypoints: torch.Tensor

    def after(self, logits: torch.Tensor, boxes: torch.Tensor, keypoints: torch.Tensor) -> PoseOutput:
        """These layers after a first entry (B, N), (B, N, 4), (B, N, K, 2): the heads' initial regression."""
        return PoseOutput(logits=torch.cat([logits[None], self.logits]), boxes=torch.cat([boxes[None], self.boxes]),
                          keypoints=torch.cat([keypoints[None], self.keypoints]))


def expand_human_tokens(human: torch.Tensor, joint_embed: torch.Tensor) -> torch.Tensor:
    """Human tokens (B, N, D) -> human-to-keypoint tokens (B, N, 1 + K, D): the human, then human + joint."""
    kp = human[:, :, None] + joint_embed[None, None]  # (B, N, K, D)
    return torch.cat([human[:, :, None], kp], 2)


class KeypointDecoderLayer(nn.Module):
    def __init__(self, dim, heads, levels, points, ffn_dim, dropout, impl):
        super().__init__()
        self.group_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.context_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.deform = MSDeformAttn(dim, heads, levels, points, impl=impl)
        self.norm3 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.norm4 = nn.LayerNorm(dim)

    def forward(self, tokens, pos, refs, context, memory, spatial_shapes, valid_ratios, padding_mask, cond=None):
        b, n, g, d = tokens.shape  # (B, N, 1 + K, D)
        x = (tokens + pos).reshape(b * n, g, d)
        tokens = self.norm1(tokens + self.group_attn(x, x, tokens.reshape(b * n, g, d),
                                                     need_weights=False)[0].view(b, n, g, d))
        q = (tokens + pos).reshape(b, n * g, d)
        tokens = self.norm2(tokens + self.context_attn(q, context, context, need_weights=False)[0].view(b, n, g, d))
        r = refs.reshape(b, n * g, 1, 4) * torch.cat([valid_ratios, valid_ratios], -1)[:, None]  # (B, NG, L, 4)
        tokens = self.norm3(tokens + self.deform((tokens + pos).reshape(b, n * g, d), r, memory, spatial_shapes,
                                                 padding_mask).view(b, n, g, d))
        h = self.ffn(tokens)
        if cond is not None:  # timestep conditioning: scale and shift per channel, (B, 1, 1, D) each
            scale, shift = cond
            h = h * (1.0 + scale) + shift
        return self.norm4(tokens + h)


class KeypointDecoder(nn.Module):
    """Refines N persons' boxes and K keypoints layer by layer.

    Forward:
        tokens (B, N, 1 + K, D) human-to-keypoint tokens; keypoints (B, N, K, 2) and boxes (B, N, 4)
        initial normalised estimates; context (B, C, D) tokens for the cross-attention; enc: the
        :class:`~posediff.models.encoder.EncoderState` (its ``fine`` map when there are fine layers); cond:
        optional ((B, D), (B, D)) scale / shift applied in every layer's feed-forward block.
        Returns (:class:`PoseOutput` with ``layers + fine_layers`` entries, final tokens (B, N, 1 + K, D)).
    """

    def __init__(self, num_keypoints: int = 17, layers: int = 6, dim: int = 256, heads: int = 8, levels: int = 4,
                 points: int = 4, ffn_dim: int = 1024, dropout: float = 0.0, impl: str = "pytorch",
                 fine_layers: int = 0, look_forward_twice: bool = False):
        super().__init__()
        self.look_forward_twice = look_forward_twice
        self.num_keypoints, self.dim = num_keypoints, dim
        self.layers = nn.ModuleList(KeypointDecoderLayer(dim, heads, levels, points, ffn_dim, dropout, impl)
                                    for _ in range(layers))
        self.kp_pos = MLP(2 * (dim // 2), dim, dim, 2)
        self.box_pos = MLP(4 * (dim // 2), dim, dim, 2)
        self.kp_size = nn.Parameter(torch.full((num_keypoints, 2), -2.2))  # joint box = sigmoid(.) * person box
        self.kp_heads = nn.ModuleList(MLP(dim, dim, 2, 3) for _ in range(layers))
        self.box_heads = nn.ModuleList(MLP(dim, dim, 4, 3) for _ in range(layers))
        self.class_heads = nn.ModuleList(nn.Linear(dim, 1) for _ in range(layers))
        if fine_layers and not layers:
            raise ValueError("KeypointDecoder: fine layers refine the coarse layers' output; layers must be >= 1")
        self.fine_layers = nn.ModuleList(KeypointDecoderLayer(dim, heads, 1, points, ffn_dim, dropout, impl)
                                         for _ in range(fine_layers))
        self.fine_kp_heads = nn.ModuleList(MLP(dim, dim, 2, 3) for _ in range(fine_layers))
        self.fine_class_heads = nn.ModuleList(nn.Linear(dim, 1) for _ in range(fine_layers))
        for mlp in [*self.kp_heads, *self.box_heads, *self.fine_kp_heads]:
            nn.init.zeros_(mlp.layers[-1].weight)
            nn.init.zeros_(mlp.layers[-1].bias)
        for head in self.class_heads:
            nn.init.constant_(head.bias, -4.595)
        for head in self.fine_class_heads:  # a fresh fine layer changes no score
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def _stages(self, enc: EncoderState):
        """(layer, keypoint head, box head or None, class head, the state it samples) for every layer."""
        for layer, kp_head, box_head, cls_head in zip(self.layers, self.kp_heads, self.box_heads, self.class_heads):
            yield layer, kp_head, box_head, cls_head, enc
        if len(self.fine_layers) and enc.fine is None:
            raise ValueError("KeypointDecoder: fine layers need EncoderState.fine (a model built with fine_level)")
        for layer, kp_head, cls_head in zip(self.fine_layers, self.fine_kp_heads, self.fine_class_heads):
            yield layer, kp_head, None, cls_head, enc.fine  # boxes stay where the coarse layers left them

    def forward(self, tokens, keypoints, boxes, context, enc: EncoderState,
                cond=None) -> tuple[PoseOutput, torch.Tensor]:
        logits_l, boxes_l, kps_l = [], [], []
        kp, box = keypoints, boxes
        for layer, kp_head, box_head, cls_head, state in self._stages(enc):
            kp_d, box_d = kp.detach(), box.detach()
            pos = torch.cat([self.box_pos(sine_embed(box_d, self.dim // 2))[:, :, None],
                             self.kp_pos(sine_embed(kp_d, self.dim // 2))], 2)  # (B, N, 1 + K, D)
            kp_wh = self.kp_size.sigmoid()[None, None] * box_d[:, :, None, 2:]  # (B, N, K, 2)
            refs = torch.cat([box_d[:, :, None], torch.cat([kp_d, kp_wh], -1)], 2)  # (B, N, 1 + K, 4)
            tokens = layer(tokens, pos, refs, context, state.memory, state.spatial_shapes, state.valid_ratios,
                           state.padding_mask, cond)
            kp_in, box_in = (kp, box) if self.look_forward_twice else (kp_d, box_d)
            kp = (inverse_sigmoid(kp_in) + kp_head(tokens[:, :, 1:])).sigmoid()  # (B, N, K, 2)
            logit = cls_head(tokens[:, :, 0])[..., 0]  # (B, N)
            if box_head is not None:
                box = (inverse_sigmoid(box_in) + box_head(tokens[:, :, 0])).sigmoid()  # (B, N, 4)
            else:  # a fine layer: the coarse boxes, and a correction to the last coarse logits
                box, logit = box_d, logits_l[-1].detach() + logit
            kps_l.append(kp)
            boxes_l.append(box)
            logits_l.append(logit)
        out = PoseOutput(logits=torch.stack(logits_l), boxes=torch.stack(boxes_l), keypoints=torch.stack(kps_l))
        return out, tokens
