"""Human detection decoder: two-stage query selection and iterative box refinement (ED-Pose / DINO)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .ops import MSDeformAttn
from .utils import MLP, inverse_sigmoid, sine_embed

__all__ = ["HumanDecoder", "HumanDecoderOutput", "encoder_proposals"]


def encoder_proposals(memory, padding_mask, spatial_shapes, base_size: float = 0.05):
    """One proposal box per encoder token: its centre, size base_size * 2^level (inverse-sigmoid space).

    Returns:
        memory with padding and border tokens zeroed (B, S, D), proposals (B, S, 4) in inverse-sigmoid
        space (+inf where invalid).
    """
    b = memory.shape[0]
    props, start = [], 0
    for lvl, (h, w) in enumerate(spatial_shapes.tolist()):
        m = padding_mask[:, start:start + h * w].view(b, h, w)
        valid_h = (~m[:, :, 0]).sum(1)
        valid_w = (~m[:, 0, :]).sum(1)
        ys, xs = torch.meshgrid(torch.arange(h, device=memory.device), torch.arange(w, device=memory.device),
                                indexing="ij")
        grid = torch.stack([xs, ys], -1).float()  # (H, W, 2)
        scale = torch.stack([valid_w, valid_h], -1).view(b, 1, 1, 2).float()
        centre = (grid[None] + 0.5) / scale  # (B, H, W, 2)
        wh = torch.full_like(centre, base_size * 2.0 ** lvl)
        props.append(torch.cat([centre, wh], -1).view(b, -1, 4))
        start += h * w
    props = torch.cat(props, 1)  # (B, S, 4)
    valid = ((props > 0.01) & (props < 0.99)).all(-1, keepdim=True)
    props = torch.log(props / (1 - props))
    props = props.masked_fill(padding_mask[..., None] | ~valid, float("inf"))
    mem = memory.masked_fill(padding_mask[..., None] | ~valid, 0.0)
    return mem, props


@dataclass
class HumanDecoderOutput:
    """Attributes:
        hidden: (B, Q, D) final human tokens.
        logits: (L, B, Q) per-layer person logits. boxes: (L, B, Q, 4) per-layer boxes (cx, cy, w, h).
        enc_logits: (B, Q) and enc_boxes: (B, Q, 4), the selected encoder proposals (two-stage loss).
        dn_logits: (L, B, G, M), dn_boxes: (L, B, G, M, 4): the box-denoising queries' outputs in training
            (G groups of the M padded ground-truth persons), or None.
    """

    hidden: torch.Tensor
    logits: torch.Tensor
    boxes: torch.Tensor
    enc_logits: torch.Tensor
    enc_boxes: torch.Tensor
    dn_logits: torch.Tensor | None = None
    dn_boxes: torch.Tensor | None = None


class HumanDecoderLayer(nn.Module):
    def __init__(self, dim, heads, levels, points, ffn_dim, dropout, impl):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = MSDeformAttn(dim, heads, levels, points, impl=impl)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, tgt, query_pos, ref_boxes, memory, spatial_shapes, valid_ratios, padding_mask, attn_mask=None):
        q = tgt + query_pos
        tgt = self.norm1(tgt + self.self_attn(q, q, tgt, attn_mask=attn_mask, need_weights=False)[0])
        refs = ref_boxes[:, :, None] * torch.cat([valid_ratios, valid_ratios], -1)[:, None]  # (B, Q, L, 4)
        tgt = self.norm2(tgt + self.cross_attn(tgt + query_pos, refs, memory, spatial_shapes, padding_mask))
        return self.norm3(tgt + self.ffn(tgt))


class HumanDecoder(nn.Module):
    """Selects ``num_queries`` encoder tokens as human proposals and refines their boxes layer by layer.

    Args:
        num_queries: human queries (ED-Pose: 900 for detection, of which 100 go on to keypoints).
        layers: decoder layers. dim, heads, levels, points, ffn_dim: transformer sizes.
        dn_groups: box-denoising groups in training (DN-DETR): each group holds every ground-truth box,
            jittered (centre by up to ``dn_box_noise`` / 2 of its size, size by up to ``dn_box_noise``), as an
            extra query that must reconstruct it; the matching queries cannot see them, nor the groups each
            other. 0 turns it off.

    Forward: memory (B, S, D), padding_mask (B, S), spatial_shapes (L, 2), valid_ratios (B, L, 2), and in
    training optionally ``targets`` (for box denoising) -> :class:`HumanDecoderOutput`.
    """

    def __init__(self, num_queries: int = 100, layers: int = 6, dim: int = 256, heads: int = 8, levels: int = 4,
                 points: int = 4, ffn_dim: int = 1024, dropout: float = 0.0, impl: str = "pytorch",
                 dn_groups: int = 0, dn_box_noise: float = 0.4):
        super().__init__()
        self.num_queries, self.dim, self.heads = num_queries, dim, heads
        self.dn_groups, self.dn_box_noise = dn_groups, dn_box_noise
        self.dn_embed = nn.Embedding(1, dim) if dn_groups > 0 else None  # content of a denoising query
        self.enc_output = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))
        self.enc_class = nn.Linear(dim, 1)
        self.enc_box = MLP(dim, dim, 4, 3)
        self.tgt_embed = nn.Embedding(num_queries, dim)
        self.query_pos = MLP(4 * (dim // 2), dim, dim, 2)
        self.layers = nn.ModuleList(HumanDecoderLayer(dim, heads, levels, points, ffn_dim, dropout, impl)
                                    for _ in range(layers))
        self.class_heads = nn.ModuleList(nn.Linear(dim, 1) for _ in range(layers))
        self.box_heads = nn.ModuleList(MLP(dim, dim, 4, 3) for _ in range(layers))
        prior_logit = -4.595  # sigmoid = 0.01 (focal-loss prior)
        for head in [self.enc_class, *self.class_heads]:
            nn.init.constant_(head.bias, prior_logit)
        for mlp in [self.enc_box, *self.box_heads]:
            nn.init.zeros_(mlp.layers[-1].weight)
            nn.init.zeros_(mlp.layers[-1].bias)

    def _dn_queries(self, targets, b: int, q: int):
        """Denoising queries: (content (B, G M, D), boxes (B, G M, 4), attention mask (G M + Q, G M + Q))."""
        g, m = self.dn_groups, targets.boxes.shape[1]
        boxes = targets.boxes[:, None].expand(-1, g, -1, -1)  # (B, G, M, 4)
        noise = (torch.rand_like(boxes) * 2 - 1) * self.dn_box_noise  # U(-λ, λ)
        centre = boxes[..., :2] + noise[..., :2] * boxes[..., 2:] / 2
        size = boxes[..., 2:] * (1 + noise[..., 2:])
        noised = torch.cat([centre, size], -1).clamp(1e-3, 1 - 1e-3).reshape(b, g * m, 4)
        content = self.dn_embed.weight[None].expand(b, g * m, -1)
        n = g * m + q
        mask = torch.zeros(n, n, dtype=torch.bool, device=boxes.device)  # True = may not attend
        mask[g * m:, : g * m] = True  # matching queries never see the answers
        for i in range(g):
            block = slice(i * m, (i + 1) * m)
            mask[block, : i * m] = True
            mask[block, (i + 1) * m: g * m] = True  # nor does one group see another
        return content, noised, mask

    def forward(self, memory, padding_mask, spatial_shapes, valid_ratios, targets=None) -> HumanDecoderOutput:
        b = memory.shape[0]
        mem, props = encoder_proposals(memory, padding_mask, spatial_shapes)
        mem = self.enc_output(mem)  # (B, S, D)
        enc_logits = self.enc_class(mem)[..., 0].masked_fill(torch.isinf(props[..., 0]), float("-inf"))  # (B, S)
        k = min(self.num_queries, enc_logits.shape[1])
        top = enc_logits.topk(k, dim=1).indices  # (B, Q)
        enc_boxes_unact = props.gather(1, top[..., None].expand(-1, -1, 4)) + self.enc_box(
            mem.gather(1, top[..., None].expand(-1, -1, self.dim)))  # (B, Q, 4)
        sel_logits = enc_logits.gather(1, top)
        ref = enc_boxes_unact.sigmoid().detach()  # (B, Q, 4)
        tgt = self.tgt_embed.weight[:k][None].expand(b, -1, -1)
        attn_mask, n_dn = None, 0
        use_dn = self.training and self.dn_groups > 0 and targets is not None and targets.boxes.shape[1] > 0
        if use_dn:
            content, noised, attn_mask = self._dn_queries(targets, b, k)
            n_dn = content.shape[1]
            tgt = torch.cat([content, tgt], 1)  # (B, G M + Q, D)
            ref = torch.cat([noised, ref], 1)
        all_logits, all_boxes = [], []
        for layer, cls_head, box_head in zip(self.layers, self.class_heads, self.box_heads):
            query_pos = self.query_pos(sine_embed(ref, self.dim // 2))  # (B, Q, D)
            tgt = layer(tgt, query_pos, ref, memory, spatial_shapes, valid_ratios, padding_mask, attn_mask)
            boxes = (inverse_sigmoid(ref) + box_head(tgt)).sigmoid()  # iterative box refinement
            all_boxes.append(boxes)
            all_logits.append(cls_head(tgt)[..., 0])
            ref = boxes.detach()
        logits, boxes = torch.stack(all_logits), torch.stack(all_boxes)  # (L, B, G M + Q), (L, B, G M + Q, 4)
        dn_logits = dn_boxes = None
        if use_dn:
            layers, g, m = logits.shape[0], self.dn_groups, targets.boxes.shape[1]
            dn_logits = logits[:, :, :n_dn].reshape(layers, b, g, m)
            dn_boxes = boxes[:, :, :n_dn].reshape(layers, b, g, m, 4)
            logits, boxes, tgt = logits[:, :, n_dn:], boxes[:, :, n_dn:], tgt[:, n_dn:]
        return HumanDecoderOutput(hidden=tgt, logits=logits, boxes=boxes, enc_logits=sel_logits,
                                  enc_boxes=enc_boxes_unact.sigmoid(), dn_logits=dn_logits, dn_boxes=dn_boxes)
