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

:class:`ReleasedGraphDenoiser` is the denoiser of DiffPose's released code instead (``denoiser="released"``):
Chebyshev graph convolutions (:class:`ChebConv`), GraFormer's learnt-adjacency GCN beside the attention, the
timestep added between two convolutions of each block, and no context input.
"""

from __future__ import annotations

import torch
from torch import nn

from ...skeletons import Skeleton, get_skeleton
from ..utils import timestep_embedding

__all__ = ["ChebConv", "GraphConv", "GraphAttentionBlock", "GraphDenoiser", "GraphLifter", "ReleasedGraphDenoiser",
           "skeleton_adjacency"]


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


# -- the released DiffPose code's denoiser ------------------------------------------------------------------------
def chebyshev_basis(adjacency: torch.Tensor, order: int) -> torch.Tensor:
    """(order + 1, J, J) Chebyshev polynomials T_k(L) of the graph the released code convolves over: Â the
    adjacency with self loops, row-normalised; L = I − D^{-1/2} Â D^{-1/2}; T_0 = I, T_1 = L,
    T_k = 2 L T_{k−1} − T_{k−2}."""
    j = adjacency.shape[0]
    eye = torch.eye(j)
    a = adjacency + eye
    a = a / a.sum(-1, keepdim=True)                                                # row-normalised, self loops
    d = a.sum(-1).rsqrt()
    lap = eye - d[:, None] * a * d[None, :]                                        # (J, J)
    basis = [eye, lap]
    for _ in range(2, order + 1):
        basis.append(2 * lap @ basis[-1] - basis[-2])
    return torch.stack(basis[: order + 1])                                         # (K + 1, J, J)


class ChebConv(nn.Module):
    """x' = Σ_k T_k(L) x W_k + b over (B, J, C_in) → (B, J, C_out): ChebNet's graph convolution (Defferrard et
    al., NeurIPS 2016) of order ``order`` (the released code's K = 2: three terms)."""

    def __init__(self, in_dim: int, out_dim: int, adjacency: torch.Tensor, order: int = 2):
        super().__init__()
        self.register_buffer("basis", chebyshev_basis(adjacency, order), persistent=False)
        self.weight = nn.Parameter(torch.empty(order + 1, in_dim, out_dim))
        # the released code's Xavier-normal init of a (K + 1, 1, in, out) tensor: std √(2 / ((K + 2)·in·out))
        nn.init.normal_(self.weight, std=(2.0 / ((order + 2) * in_dim * out_dim)) ** 0.5)
        self.bias = nn.Parameter(torch.zeros(out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.einsum("kij,bjc->kbic", self.basis.to(x.dtype), x)                # (K + 1, B, J, C_in)
        return torch.einsum("kbic,kcd->bid", y, self.weight) + self.bias             # (B, J, C_out)


class LearntAdjacencyGCN(nn.Module):
    """GraFormer's GCN beside the attention: a learnt (J, J) adjacency A (from I), L = D^{-1/2} A D^{-1/2} with
    D its column sums; x → ReLU(W_1 L x) (width 2C) → W_2 L x (width C)."""

    def __init__(self, dim: int, num_joints: int):
        super().__init__()
        self.adjacency = nn.Parameter(torch.eye(num_joints))
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = (self.adjacency.sum(0) + 1e-5).rsqrt()
        lap = (d[:, None] * self.adjacency * d[None, :]).to(x.dtype)                  # (J, J)
        return self.fc2(lap @ torch.relu(self.fc1(lap @ x)))                          # (B, J, C)


class _ReleasedBlock(nn.Module):
    """Pre-norm self-attention and learnt-adjacency GCN, each residual; then a residual pair of ChebConvs (each
    ReLU and dropout) with the projected time embedding added between them."""

    def __init__(self, dim: int, adjacency: torch.Tensor, heads: int, time_dim: int, dropout: float,
                 conv_dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=0.1, batch_first=True)
        self.gcn = LearntAdjacencyGCN(dim, adjacency.shape[0])
        self.drop = nn.Dropout(dropout)
        self.conv1, self.conv2 = ChebConv(dim, dim, adjacency), ChebConv(dim, dim, adjacency)
        self.conv_drop = nn.Dropout(conv_dropout)
        self.time = nn.Linear(time_dim, dim)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, h, need_weights=False)[0])               # (B, J, C)
        x = x + self.drop(self.gcn(self.norm2(x)))
        out = self.conv_drop(torch.relu(self.conv1(x))) + self.time(nn.functional.silu(temb))[:, None]
        return x + self.conv_drop(torch.relu(self.conv2(out)))                     # (B, J, C)


class ReleasedGraphDenoiser(nn.Module):
    """The released DiffPose denoiser (GONGJIA0208/Diffpose ``GCNdiff``): (h_k (B, J, D), k (B,), context) →
    (B, J, D), the context unread (the released code passes its feature but never uses it).

    A ChebConv to ``dim`` (96 in its configs); ``blocks`` (5) blocks of :class:`_ReleasedBlock`; a ChebConv to D.
    The timestep: sinusoid(k) of width ``dim`` → Linear(dim, 4·dim) → SiLU → Linear(4·dim, 4·dim) (384 wide at
    96), projected into each block. Dropout 0.25 after the attention and the GCN (its configs' ``dropout``), 0.1
    on the attention weights and after each ChebConv.
    """

    def __init__(self, skeleton: str = "h36m17", dim: int = 96, blocks: int = 5, heads: int = 4, in_dim: int = 5,
                 out_dim: int = 5, dropout: float = 0.25, conv_dropout: float = 0.1):
        super().__init__()
        adj = skeleton_adjacency(skeleton)
        self.dim, self.context_dim = dim, 0
        self.inp = ChebConv(in_dim, dim, adj)
        self.time = nn.Sequential(nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, 4 * dim))
        self.blocks = nn.ModuleList(_ReleasedBlock(dim, adj, heads, 4 * dim, dropout, conv_dropout)
                                    for _ in range(blocks))
        self.out = ChebConv(dim, out_dim, adj)

    def forward(self, h: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        temb = self.time(timestep_embedding(t, self.dim).to(h.dtype))              # (B, 4·dim)
        x = self.inp(h)                                                            # (B, J, dim)
        for block in self.blocks:
            x = block(x, temb)
        return self.out(x)                                                         # (B, J, D)
