"""DiffusionPose's head (arXiv 2306.17074): keypoints diffused, rendered as heatmaps, denoised with structure.

What the paper gives (its abstract and a public review; no code was ever released, ``../shared/papers/README.md``):
the keypoints are diffused with a signal scale (DiffusionDet-style) and rendered into a noisy heatmap and into
keypoint and limb ("skeleton") masks; the condition is the backbone's features masked by those masks, mixed by
a channel + spatial-window attention with keypoint features as queries and limb features as keys / values, and
concatenated with the features; a U-Net of residual blocks predicts the clean heatmap (L2); a coarse heatmap
head trained beside it (L2) gives sampling its start; the masks are re-rendered from the current estimate at
every DDIM step; keypoints are read from the last heatmap.

Notation (per person crop, heatmaps h x w, K joints):
    x_0 = (2 k / (w, h) - 1) ζ            k the joints in heatmap units: the signal (``space="coordinates"``)
    x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε           the forward process
    Ĥ_0 = sg(H_coarse) + U-Net([G(x_t), C(sg(F), M_kp(x_t), M_limb(x_t))], t)
                                          G: Gaussian rendering, C: structure guidance, sg: stop-gradient
    L = ‖Ĥ_0 - H‖² + ‖H_coarse - H‖²      both weighted per joint as SimpleBaseline's loss

The paper says only that the U-Net predicts the clean heatmap from the features; the correction of the coarse
heatmap (``residual``) and the stop-gradients (``detach_features``) are the measured choice (``docs/recipes.md``),
each an option (False: Ĥ_0 = U-Net(·), its loss reaching F).

``space="pixels"`` is the other reading (Feng et al. ICCV 2023): the heatmap itself is the signal,
x_0 = (2 H - 1) ζ, and x_t is the U-Net's input in place of G(x_t). What the paper leaves open (ζ, T, the
schedule, the start, the mask widths) is a constructor argument; ``docs/recipes.md`` gives the values chosen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...diffusion._random import randn
from ...diffusion.schedulers import ddim_sample, make_scheduler, q_sample, trailing_timesteps
from ..utils import timestep_embedding
from .heatmap import HeatmapHead, heatmap_mse

__all__ = ["DiffusionHeatmapHead", "StructureGuidance", "HeatmapUNet", "render_gaussians", "render_limbs"]

SPACES = ("coordinates", "pixels")
STARTS = ("coarse", "coarse_clean", "noise")


def render_gaussians(points: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """Gaussians at points (B, K, 2) in heatmap units (cell j's centre at j + 0.5) -> (B, K, h, w), peak 1."""
    w, h = size
    xs = torch.arange(w, dtype=points.dtype, device=points.device) + 0.5
    ys = torch.arange(h, dtype=points.dtype, device=points.device) + 0.5
    gx = torch.exp(-(xs - points[..., 0:1]) ** 2 / (2 * sigma ** 2))  # (B, K, w)
    gy = torch.exp(-(ys - points[..., 1:2]) ** 2 / (2 * sigma ** 2))  # (B, K, h)
    return gy[..., :, None] * gx[..., None, :]


def render_limbs(points: torch.Tensor, limbs: torch.Tensor, size: tuple[int, int], width: float) -> torch.Tensor:
    """Soft segments between the joints of each limb: points (B, K, 2) heatmap units, limbs (L, 2) joint indices
    -> (B, L, h, w), exp(-d² / 2 width²) with d the distance of a cell's centre to the segment."""
    w, h = size
    ys, xs = torch.meshgrid(torch.arange(h, dtype=points.dtype, device=points.device) + 0.5,
                            torch.arange(w, dtype=points.dtype, device=points.device) + 0.5, indexing="ij")
    p = torch.stack([xs, ys], -1)  # (h, w, 2)
    a, b = points[:, limbs[:, 0]], points[:, limbs[:, 1]]  # (B, L, 2)
    ab = (b - a)[:, :, None, None]  # (B, L, 1, 1, 2)
    ap = p - a[:, :, None, None]  # (B, L, h, w, 2)
    s = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-6)).clamp(0, 1)  # (B, L, h, w): projection on the segment
    d2 = ((ap - s[..., None] * ab) ** 2).sum(-1)  # (B, L, h, w)
    return torch.exp(-d2 / (2 * width ** 2))


class StructureGuidance(nn.Module):
    """The structure-guided condition: features masked by the keypoint mask give the queries, masked by the
    limb mask the keys and values, of a multi-head attention within non-overlapping ``window`` x ``window``
    windows (spatial), followed by a channel gate (squeeze-and-excitation); its output is concatenated with the
    features and projected to ``out_dim``.

    Forward: features (B, C, h, w), kp_mask (B, 1, h, w), limb_mask (B, 1, h, w) -> (B, out_dim, h, w).
    """

    def __init__(self, dim: int, out_dim: int, heads: int = 4, window: int = 8):
        super().__init__()
        if dim % heads:
            raise ValueError(f"StructureGuidance: dim {dim} must be a multiple of heads {heads}")
        self.heads, self.window = heads, window
        self.q = nn.Conv2d(dim, dim, 1)
        self.kv = nn.Conv2d(dim, 2 * dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)
        self.gate = nn.Sequential(nn.Linear(dim, max(dim // 4, 8)), nn.ReLU(), nn.Linear(max(dim // 4, 8), dim))
        self.out = nn.Sequential(nn.Conv2d(2 * dim, out_dim, 1), nn.GroupNorm(8, out_dim), nn.SiLU())

    def _key_mask(self, h: int, w: int, device) -> torch.Tensor | None:
        """(nW, 1, 1, s²) True on the keys of real cells (the windows are zero-padded at the bottom and right)."""
        s = self.window
        if h % s == 0 and w % s == 0:
            return None
        real = F.pad(torch.ones(1, 1, h, w, dtype=torch.bool, device=device), (0, (-w) % s, 0, (-h) % s))
        hh, ww = real.shape[-2] // s, real.shape[-1] // s
        real = real.view(hh, s, ww, s).permute(0, 2, 1, 3).reshape(hh * ww, 1, 1, s * s)
        return real

    def _windows(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        b, c, h, w = x.shape
        s = self.window
        ph, pw = (-h) % s, (-w) % s
        x = F.pad(x, (0, pw, 0, ph))
        hh, ww = (h + ph) // s, (w + pw) // s
        x = x.view(b, self.heads, c // self.heads, hh, s, ww, s).permute(0, 3, 5, 1, 4, 6, 2)
        return x.reshape(b * hh * ww, self.heads, s * s, c // self.heads), (b, c, h, w, hh, ww)  # (B·nW, heads, s², d)

    def forward(self, features: torch.Tensor, kp_mask: torch.Tensor, limb_mask: torch.Tensor) -> torch.Tensor:
        q, shape = self._windows(self.q(features * kp_mask))
        k, v = (self._windows(t)[0] for t in self.kv(features * limb_mask).chunk(2, 1))
        b, c, h, w, hh, ww = shape
        mask = self._key_mask(h, w, q.device)
        if mask is not None:
            mask = mask.repeat(b, 1, 1, 1)  # (B·nW, 1, 1, s²)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B·nW, heads, s², d): keypoints attend to limbs
        s = self.window
        a = a.view(b, hh, ww, self.heads, s, s, c // self.heads).permute(0, 3, 6, 1, 4, 2, 5)
        a = self.proj(a.reshape(b, c, hh * s, ww * s)[..., :h, :w])  # (B, C, h, w)
        a = a * torch.sigmoid(self.gate(a.mean((-2, -1))))[..., None, None]  # channel attention
        return self.out(torch.cat([features, a], 1))


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the timestep as a scale and shift between (FiLM), a 1x1 skip."""

    def __init__(self, c_in: int, c_out: int, t_dim: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(t_dim, 2 * c_out)
        self.norm2, self.conv2 = nn.GroupNorm(8, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(t_emb)[..., None, None].chunk(2, 1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class HeatmapUNet(nn.Module):
    """A U-Net of residual blocks over heatmaps: ``levels`` resolutions (each halving h and w and doubling the
    width from ``dim``), ``blocks`` residual blocks per resolution on the way down and up, skip connections.

    Forward: x (B, C_in, h, w), t (B,) -> (B, out_channels, h, w).
    """

    def __init__(self, in_channels: int, out_channels: int, dim: int = 64, levels: int = 2, blocks: int = 1):
        super().__init__()
        self.dim = dim
        t_dim = 4 * dim
        self.time = nn.Sequential(nn.Linear(dim, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
        self.stem = nn.Conv2d(in_channels, dim, 3, padding=1)
        widths = [dim * 2 ** i for i in range(levels)]
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        c = dim
        for i, wd in enumerate(widths):
            self.down.append(nn.ModuleList(_ResBlock(c if j == 0 else wd, wd, t_dim) for j in range(blocks)))
            c = wd
            if i + 1 < levels:
                self.pool.append(nn.Conv2d(wd, wd, 3, stride=2, padding=1))
        self.mid = _ResBlock(c, c, t_dim)
        self.up = nn.ModuleList()
        for wd in reversed(widths):
            self.up.append(nn.ModuleList(_ResBlock((c + wd) if j == 0 else wd, wd, t_dim) for j in range(blocks)))
            c = wd
        self.head = nn.Sequential(nn.GroupNorm(8, c), nn.SiLU(), nn.Conv2d(c, out_channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)  # starts at an empty heatmap
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        te = self.time(timestep_embedding(t, self.dim))  # (B, 4 dim)
        h = self.stem(x)
        skips = []
        for i, blocks in enumerate(self.down):
            for blk in blocks:
                h = blk(h, te)
            skips.append(h)
            if i < len(self.pool):
                h = self.pool[i](h)
        h = self.mid(h, te)
        for blocks, skip in zip(self.up, reversed(skips)):
            if h.shape[-2:] != skip.shape[-2:]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = torch.cat([h, skip], 1)
            for blk in blocks:
                h = blk(h, te)
        return self.head(h)


class DiffusionHeatmapHead(nn.Module):
    """DiffusionPose on top of a coarse :class:`HeatmapHead` (whose neck gives the features F).

    Args:
        coarse: the coarse head (SimpleBaseline's deconvolutions and its 1x1 conv).
        skeleton: a :class:`~posediff.skeletons.Skeleton`: its limbs draw the limb mask.
        heatmap_size: (w, h). stride: input pixels per heatmap cell. sigma: the heatmaps' Gaussian (cells), as
            the targets'.
        space: ``"coordinates"`` (the paper: keypoints diffused, rendered) or ``"pixels"`` (the heatmap diffused).
        signal_scale: ζ. num_train_timesteps: T. beta_schedule: the schedule of ᾱ_t.
        steps: DDIM steps at inference. start: ``"coarse_clean"``: sampling starts from the coarse estimate
            itself, without noise, read as x_t at ``start_timestep`` (a public review's reading of the paper; chosen
            on val, ``docs/recipes.md``); ``"coarse"``: from the coarse estimate noised to ``start_timestep``;
            ``"noise"``: from pure noise at T - 1.
        mask_sigma: the keypoint mask's Gaussian (cells). limb_width: the limb mask's half-width (cells).
        guidance: False drops the structure guidance (the condition is F alone): an ablation.
        train_start: ``"truth"`` (diffusion: x_t from the ground truth x_0) or ``"coarse"`` (a posediff option, not
            the paper's: x_t from the coarse head's joints, the distribution sampling starts from, with the ground
            truth still the target, so that at low t the denoiser learns to correct the coarse estimate rather than
            to copy x_t; coordinates only).
        detach_features: the denoiser reads F without passing its loss back into the backbone and the neck, which
            then learn from the coarse loss alone (as SimpleBaseline's do); False: the denoiser's loss reaches them.
        diffusion: False is the diffusion-off control: x_t replaced by fresh noise (at T - 1) wherever the
            denoiser reads it, in training and sampling, so the head sees the image alone with the same parameters.
        residual: the U-Net's output is added to the coarse heatmap (gradient-stopped), Ĥ_0 = H_coarse + U-Net(·),
            so the denoiser learns a correction and starts at the coarse head's estimate; False: Ĥ_0 = U-Net(·).
            The paper says only that the U-Net predicts the clean heatmap; ``docs/recipes.md`` measures both.
            With both defaults the backbone and the coarse head train exactly as SimpleBaseline's, and the
            denoiser is a correction on top of them.
        blend: the head's output is the mean of the coarse heatmap and the denoiser's last Ĥ_0 (an ensemble of the
            two heads; sampling itself runs on Ĥ_0 alone; needs ``residual=False``; a posediff option, not the
            paper's, measured in ``docs/recipes.md``).
        dim, levels, blocks: the U-Net. heads, window: the guidance's attention.
        coarse_weight: the coarse loss's weight.

    ``losses(x, targets)``: ``{"heatmap", "coarse"}``; ``predict(x, steps, generator)``: heatmaps (B, K, h, w).
    """

    def __init__(self, coarse: HeatmapHead, skeleton, heatmap_size: tuple[int, int], stride: int = 4,
                 sigma: float = 2.0,
                 space: str = "coordinates", signal_scale: float = 2.0, num_train_timesteps: int = 1000,
                 beta_schedule: str = "squaredcos_cap_v2", steps: int = 1, start: str = "coarse_clean",
                 start_timestep: int = 500, mask_sigma: float = 2.0, limb_width: float = 1.0, guidance: bool = True,
                 dim: int = 64, levels: int = 2, blocks: int = 1, heads: int = 4, window: int = 8,
                 coarse_weight: float = 1.0, detach_features: bool = True, diffusion: bool = True,
                 train_start: str = "truth", residual: bool = True, blend: bool = False):
        super().__init__()
        if space not in SPACES:
            raise ValueError(f"DiffusionHeatmapHead: space must be one of {SPACES}, got {space!r}")
        self.coarse, self.skeleton = coarse, skeleton
        self.heatmap_size, self.stride, self.sigma = tuple(heatmap_size), int(stride), float(sigma)
        self.space, self.signal_scale, self.sampling_steps, self.start = space, float(signal_scale), int(steps), start
        self.start_timestep = int(start_timestep)  # unused by start="noise" (T - 1: first_timestep)
        self.mask_sigma, self.limb_width, self.coarse_weight = float(mask_sigma), float(limb_width), coarse_weight
        self.diffusion, self.detach_features, self.residual = diffusion, detach_features, bool(residual)
        if blend and residual:
            raise ValueError("DiffusionHeatmapHead: blend=True averages the coarse heatmap with the denoiser's own "
                             "estimate; with residual=True that estimate holds the coarse heatmap already")
        self.blend = bool(blend)
        if train_start not in ("truth", "coarse") or (train_start == "coarse" and space != "coordinates"):
            raise ValueError(f"DiffusionHeatmapHead: train_start must be 'truth' or 'coarse' (coordinates only), got "
                             f"{train_start!r} with space={space!r}")
        self.train_start = train_start
        self.register_buffer("limbs", torch.tensor(skeleton.limbs, dtype=torch.long).view(-1, 2), persistent=False)
        self.scheduler = make_scheduler("ddim", num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                                        prediction_type="sample", signal_scale=signal_scale)
        self.first_timestep()  # refuses an unknown start or an out-of-range start_timestep now, not when sampling
        k, c = skeleton.num_joints, coarse.channels
        self.guidance = StructureGuidance(c, dim, heads=heads, window=window) if guidance else None
        self.reduce = None if guidance else nn.Sequential(nn.Conv2d(c, dim, 1), nn.GroupNorm(8, dim), nn.SiLU())
        self.unet = HeatmapUNet(k + dim, k, dim=dim, levels=levels, blocks=blocks)

    # -- signal <-> keypoints <-> heatmaps -------------------------------------------------------------------
    def _scale(self, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.heatmap_size, dtype=like.dtype, device=like.device)  # (2,) w, h

    def encode(self, points: torch.Tensor) -> torch.Tensor:
        """Keypoints (B, K, 2) heatmap units -> the signal x_0 (B, K, 2) in [-ζ, ζ]."""
        return (points / self._scale(points) * 2 - 1) * self.signal_scale

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """The signal (B, K, 2) -> keypoints (B, K, 2) heatmap units, clamped to the heatmap."""
        return ((x / self.signal_scale + 1) / 2).clamp(0, 1) * self._scale(x)

    @staticmethod
    def peaks(heatmaps: torch.Tensor) -> torch.Tensor:
        """The sampling loop's read-out of heatmaps (B, K, h, w): each map's arg-max cell centre, refined along x and
        y by the parabola through it and its two neighbours; (B, K, 2) in heatmap units."""
        b, k, h, w = heatmaps.shape
        idx = heatmaps.flatten(2).argmax(-1)  # (B, K)
        iy, ix = idx // w, idx % w
        p = F.pad(heatmaps, (1, 1, 1, 1), mode="replicate")
        bi = torch.arange(b, device=heatmaps.device)[:, None]
        ki = torch.arange(k, device=heatmaps.device)[None]

        def at(dy, dx):
            return p[bi, ki, iy + 1 + dy, ix + 1 + dx]

        def offset(lo, mid, hi):
            curv = lo - 2 * mid + hi
            return torch.where(curv < -1e-8, 0.5 * (lo - hi) / curv.clamp_max(-1e-8), torch.zeros_like(mid))

        inner = (ix >= 1) & (ix <= w - 2) & (iy >= 1) & (iy <= h - 2)  # a border cell's neighbours are copies
        ox = torch.where(inner, offset(at(0, -1), at(0, 0), at(0, 1)).clamp(-0.5, 0.5), 0.0)
        oy = torch.where(inner, offset(at(-1, 0), at(0, 0), at(1, 0)).clamp(-0.5, 0.5), 0.0)
        return torch.stack([ix + 0.5 + ox, iy + 0.5 + oy], -1).to(heatmaps.dtype)

    def _to_heatmap(self, x: torch.Tensor) -> torch.Tensor:
        return ((x / self.signal_scale + 1) / 2).clamp(0, 1)  # pixels space: the signal -> a heatmap in [0, 1]

    # -- the denoiser --------------------------------------------------------------------------------------
    def condition(self, features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """The condition (B, dim, h, w) from the features (B, C, h, w) and the current keypoints (B, K, 2)."""
        if self.guidance is None:
            return self.reduce(features)
        kp_mask = render_gaussians(points, self.heatmap_size, self.mask_sigma).amax(1, keepdim=True)  # (B, 1, h, w)
        limb_mask = render_limbs(points, self.limbs, self.heatmap_size, self.limb_width).amax(1, keepdim=True)
        return self.guidance(features, kp_mask, limb_mask)

    def denoise(self, features: torch.Tensor, coarse: torch.Tensor, x_t: torch.Tensor,
                t: torch.Tensor) -> torch.Tensor:
        """Ĥ_0 (B, K, h, w) from the features (B, C, h, w), the coarse heatmaps (B, K, h, w) and x_t: (B, K, 2)
        (coordinates) or (B, K, h, w) (pixels)."""
        if self.space == "coordinates":
            points = self.decode(x_t)  # (B, K, 2)
            noisy = render_gaussians(points, self.heatmap_size, self.sigma)  # G(x_t): (B, K, h, w)
        else:
            noisy = x_t
            points = self.peaks(self._to_heatmap(x_t).detach())  # the current estimate's keypoints
        out = self.unet(torch.cat([noisy, self.condition(features, points.detach())], 1), t)  # (B, K, h, w)
        return coarse.detach() + out if self.residual else out

    # -- training and sampling -----------------------------------------------------------------------------
    def losses(self, x: torch.Tensor, targets: dict) -> dict:
        """x: the backbone level (B, C_in, ...); targets: ``heatmaps`` (B, K, h, w), ``weights`` (B, K),
        ``keypoints`` (B, K, 3) input pixels."""
        feats = self.coarse.features(x)  # F: (B, C, h, w)
        coarse = self.coarse.final(feats)  # (B, K, h, w)
        heat, wts = targets["heatmaps"], targets["weights"]
        b = feats.shape[0]
        if self.space == "coordinates":
            gt = targets["keypoints"][..., :2] / self.stride  # (B, K, 2) heatmap units
            est = self.peaks(coarse.detach())  # unlabelled joints: the coarse estimate
            # train_start="coarse": x_t from where sampling starts; the target stays the ground truth
            x0 = self.encode(est if self.train_start == "coarse" else torch.where(wts[..., None] > 0, gt, est))
        else:
            x0 = (heat * 2 - 1) * self.signal_scale  # (B, K, h, w)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (b,), device=x.device)  # t ~ U[0, T)
        x_t = q_sample(self.scheduler, x0, t, torch.randn_like(x0))
        if not self.diffusion:  # the control: the image alone
            x_t, t = torch.randn_like(x0), torch.full_like(t, self.scheduler.config.num_train_timesteps - 1)
        pred = self.denoise(feats.detach() if self.detach_features else feats, coarse, x_t, t)
        return {"heatmap": heatmap_mse(pred, heat, wts),
                "coarse": self.coarse_weight * heatmap_mse(coarse, heat, wts)}

    @torch.no_grad()
    def check_steps(self, steps: int | None) -> None:
        """Refuse a number of sampling steps the head cannot take from its start (before any work)."""
        if steps is not None:
            trailing_timesteps(self.first_timestep(), steps)

    def first_timestep(self) -> int:
        """The timestep sampling starts at: ``start_timestep``, T - 1 for ``start="noise"`` (read at each call, so
        that the attributes may be changed after construction)."""
        T = self.scheduler.config.num_train_timesteps
        if self.start not in STARTS:
            raise ValueError(f"DiffusionHeatmapHead: start must be one of {STARTS}, got {self.start!r}")
        t0 = T - 1 if self.start == "noise" else int(self.start_timestep)
        if not 0 <= t0 < T:
            raise ValueError(f"DiffusionHeatmapHead: start_timestep must be in [0, {T}), got {t0}")
        return t0

    def prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What sampling at any step count starts from: the features F (B, C, h, w) and the coarse heatmaps
        (B, K, h, w)."""
        feats = self.coarse.features(x)
        return feats, self.coarse.final(feats)

    def predict(self, x: torch.Tensor, steps: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Heatmaps (B, K, h, w) after ``steps`` DDIM steps (the head's own by default) from the head's
        ``start`` at ``start_timestep``."""
        return self.predict_prepared(self.prepare(x), steps, generator)

    def _x0(self, coarse: torch.Tensor) -> torch.Tensor:
        """The coarse estimate as a signal x_0: (B, K, 2) coordinates or (B, K, h, w) pixels."""
        if self.space == "coordinates":
            return self.encode(self.peaks(coarse))
        return (coarse.clamp(0, 1) * 2 - 1) * self.signal_scale

    def start_noise(self, prepared: tuple[torch.Tensor, torch.Tensor], generator=None) -> torch.Tensor:
        """The noise sampling starts from, shaped as x_0: (B, K, 2) coordinates or (B, K, h, w) pixels."""
        coarse = prepared[1]
        shape = (*coarse.shape[:2], 2) if self.space == "coordinates" else coarse.shape
        return randn(shape, generator, coarse.device, coarse.dtype)

    def predict_prepared(self, prepared: tuple[torch.Tensor, torch.Tensor], steps: int | None = None,
                         generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`predict` from :meth:`prepare`'s output (several step counts share one); ``noise``: the start's
        noise (default: drawn from ``generator``)."""
        steps = self.sampling_steps if steps is None else int(steps)
        feats, coarse = prepared
        x0 = self._x0(coarse)
        t0 = self.first_timestep()
        noise = self.start_noise(prepared, generator) if noise is None else noise  # shaped as x_0
        if self.start == "coarse":
            x_t = q_sample(self.scheduler, x0, t0, noise)  # (B, K, 2) | (B, K, h, w): √ᾱ_t0 x_0 + √(1-ᾱ_t0) ε
        else:
            x_t = x0 if self.start == "coarse_clean" else noise  # (B, K, 2) | (B, K, h, w)
        maps = []

        def model_fn(x_t, t):
            if not self.diffusion:  # the control: fresh noise at T - 1 in place of x_t
                x_t = randn(x_t.shape, generator, x_t.device, x_t.dtype)
                t = torch.full_like(t, self.scheduler.config.num_train_timesteps - 1)
            hm = self.denoise(feats, coarse, x_t, t)
            maps.append(hm)
            return self.encode(self.peaks(hm)) if self.space == "coordinates" else (hm.clamp(0, 1) * 2 - 1) * \
                self.signal_scale

        ddim_sample(model_fn, x_t, self.scheduler, trailing_timesteps(t0, steps))
        return (coarse + maps[-1]) / 2 if self.blend else maps[-1]
