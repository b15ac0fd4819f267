"""Graph networks over a skeleton: graph convolutions interlaced with self-attention (GraFormer-style).

DiffPose (CVPR 2023, Sec. 4.5) builds its denoiser g from GraFormer (Zhao et al., CVPR 2022): a graph
convolution maps the pose h_k ∈ R^{J×3} to E ∈ R^{J×d}; E is concatenated with the context feature
f_ST ∈ R^{J×d} and the step embedding f_D^k ∈ R^{2d} is added; 3 GCN-attention blocks (each: a self-attention
layer and two graph convolutions, residual) follow, and a last graph convolution maps to h ∈ R^{J×3}. The frame
context encoder (:class:`GraphLifter`) is the same kind of network from 2D: it lifts (J, 2) to (J, 3) and
its last hidden features are f_ST.

Graph convolution here (:class:`GraphConv`): x'_j = W_self x_j + Σ_i Â_ji W_nb x_i + b, with Â the skeleton's
adjacency (no self loops) normalised by D^{-1/2} A D^{-1/2}, and a learnt weight per edge (initialised at 1),
as SemGCN's modulated adjacency.
"""

from __future__ import annotations

import torch
from torch import nn

from ...skeletons import Skeleton, get_skeleton
from ..utils import timestep_embedding

__all__ = ["GraphConv", "GraphAttentionBlock", "GraphDenoiser", "GraphLifter", "skeleton_adjacency"]


def skeleton_adjacency(skeleton: Skeleton | str) -> torch.Tensor:
    """(J, J) symmetric 0/1 adjacency of the skeleton's limbs, no self loops."""
    sk = get_skeleton(skeleton)
    adj = torch.zeros(sk.num_joints, sk.num_joints)
    for a, b in sk.limbs:
        adj[a, b] = adj[b, a] = 1.0
    return adj


class GraphConv(nn.Module):
    """x'_j = W_self x_j + Σ_i Â_ji w_ji W_nb x_i + b over (B, J, C_in) → (B, J, C_out)."""

    def __init__(self, in_dim: int, out_dim: int, adjacency: torch.Tensor):
        super().__init__()
        deg = adjacency.sum(-1).clamp_min(1.0)
        norm = adjacency / torch.sqrt(deg[:, None] * deg[None, :])                # D^{-1/2} A D^{-1/2}
        self.register_buffer("adjacency", norm, persistent=False)
        self.register_buffer("mask", adjacency > 0, persistent=False)
        self.edge_weight = nn.Parameter(torch.ones_like(adjacency))
        self.self_proj = nn.Linear(in_dim, out_dim)
        self.nb_proj = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.where(self.mask, self.adjacency * self.edge_weight, torch.zeros_like(self.adjacency))  # (J, J)
        return self.self_proj(x) + a @ self.nb_proj(x)                           # (B, J, C_out)


class GraphAttentionBlock(nn.Module):
    """Self-attention over the joints, then two graph convolutions, each residual with pre-norm."""

    def __init__(self, dim: int, adjacency: torch.Tensor, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.gcn1 = GraphConv(dim, dim, adjacency)
        self.gcn2 = GraphConv(dim, dim, adjacency)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, h, need_weights=False)[0])             # (B, J, C)
        h = self.gcn2(torch.nn.functional.gelu(self.gcn1(self.norm2(x))))
        return x + self.drop(h)                                                 # (B, J, C)


class GraphLifter(nn.Module):
    """The frame context encoder: (B, J, 2) screen-normalised 2D → features (B, J, dim) and (B, J, 3) metres.

    ``in_dim`` > 2 takes more per-joint inputs (e.g. 2D and a confidence).
    """

    def __init__(self, skeleton: str = "h36m17", dim: int = 128, blocks: int = 3, heads: int = 4,
                 in_dim: int = 2, dropout: float = 0.0):
        super().__init__()
        adj = skeleton_adjacency(skeleton)
        self.dim = dim
        self.inp = GraphConv(in_dim, dim, adj)
        self.blocks = nn.ModuleList(GraphAttentionBlock(dim, adj, heads, dropout) for _ in range(blocks))
        self.norm = nn.LayerNorm(dim)
        self.out = GraphConv(dim, 3, adj)

    def forward(self, keypoints_2d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if keypoints_2d.dim() == 4:                                              # (B, T, J, 2): the centre frame
            keypoints_2d = keypoints_2d[:, keypoints_2d.shape[1] // 2]
        x = self.inp(keypoints_2d)                                               # (B, J, dim)
        for block in self.blocks:
            x = block(x)
        features = self.norm(x)                                                  # (B, J, dim) f_ST
        return features, self.out(features)                                      # (B, J, 3)


class GraphDenoiser(nn.Module):
    """DiffPose's g: (h_k (B, J, 3), k (B,), f_ST (B, J, C)) → (B, J, 3).

    E = GCN(h_k) (B, J, dim); v_1 = [E, f_ST] + MLP(sinusoid(k)) (B, J, dim + C); ``blocks`` GCN-attention
    blocks; a last GCN to 3 coordinates. ``context_dim=0`` runs without a context.
    """

    def __init__(self, skeleton: str = "h36m17", dim: int = 128, context_dim: int = 128, blocks: int = 3,
                 heads: int = 4, in_dim: int = 3, out_dim: int = 3, dropout: float = 0.0):
        super().__init__()
        adj = skeleton_adjacency(skeleton)
        width = dim + context_dim
        self.context_dim = context_dim
        self.inp = GraphConv(in_dim, dim, adj)
        self.time = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        self.width = width
        self.blocks = nn.ModuleList(GraphAttentionBlock(width, adj, heads, dropout) for _ in range(blocks))
        self.norm = nn.LayerNorm(width)
        self.out = GraphConv(width, out_dim, adj)

    def forward(self, h: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        e = self.inp(h)                                                          # (B, J, dim) E
        if self.context_dim:
            e = torch.cat([e, context.to(e.dtype)], dim=-1)                      # (B, J, dim + C)
        f_d = self.time(timestep_embedding(t, self.width).to(e.dtype))           # (B, dim + C) f_D^k
        x = e + f_d[:, None]                                                     # v_1
        for block in self.blocks:
            x = block(x)
        return self.out(self.norm(x))                                            # (B, J, 3)
