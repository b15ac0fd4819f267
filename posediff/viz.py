"""Drawing poses on images, contact sheets, saving plots."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .skeletons import Skeleton, get_skeleton

__all__ = ["draw_poses", "contact_sheet", "person_colours", "save_figure", "plot_poses_3d"]


def person_colours(n: int) -> list[tuple[int, int, int]]:
    """n well-separated, saturated colours."""
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.85, 1.0)) for i in range(n)]


def draw_poses(image: np.ndarray, keypoints: np.ndarray, skeleton: Skeleton | str = "coco17",
               boxes: np.ndarray | None = None, min_visibility: float = 0.0, radius: float | None = None,
               occluded_hollow: bool = True) -> np.ndarray:
    """Draw persons' skeletons on a copy of ``image``.

    Args:
        image: (H, W, 3) uint8.
        keypoints: (M, K, 3) x, y and a visibility flag or score; joints with a third value
            <= ``min_visibility`` are not drawn. With COCO flags, occluded joints (v = 1) are drawn hollow.
        skeleton: which limbs to draw.
        boxes: optional (M, 4) x, y, w, h.
        radius: joint marker radius (default: 1% of the image side, at least 2 px).
    """
    sk = get_skeleton(skeleton)
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, sk.num_joints, 3)
    img = Image.fromarray(np.asarray(image, dtype=np.uint8).copy())
    draw = ImageDraw.Draw(img)
    r = radius if radius is not None else max(2.0, 0.01 * max(img.size))
    width = max(1, int(round(r * 0.6)))
    for p, colour in zip(range(len(kp)), person_colours(len(kp))):
        if boxes is not None:
            x, y, w, h = boxes[p]
            draw.rectangle([x, y, x + w, y + h], outline=colour, width=1)
        shown = kp[p, :, 2] > min_visibility
        for a, b in sk.limbs:
            if shown[a] and shown[b]:
                draw.line([tuple(kp[p, a, :2]), tuple(kp[p, b, :2])], fill=colour, width=width)
        for j in np.flatnonzero(shown):
            x, y, v = kp[p, j]
            hollow = occluded_hollow and v == 1
            draw.ellipse([x - r, y - r, x + r, y + r], fill=None if hollow else colour, outline=(0, 0, 0) if not hollow
                         else colour, width=max(1, width // 2))
    return np.asarray(img)


def contact_sheet(images: Sequence[np.ndarray], cols: int = 4, pad: int = 4, background: int = 255) -> np.ndarray:
    """Tile equally sized (H, W, 3) images into a grid."""
    if not images:
        raise ValueError("contact_sheet: no images")
    h, w = images[0].shape[:2]
    rows = (len(images) + cols - 1) // cols
    sheet = np.full((rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, 3), background, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        sheet[y:y + h, x:x + w] = im
    return sheet


def save_figure(fig, path, dpi: int = 110, **savefig_kwargs) -> None:
    """Write a matplotlib figure to ``path`` (a ``.png``), atomically (a reader never sees half a file), and close
    it, also when writing fails."""
    from pathlib import Path

    import matplotlib.pyplot as plt

    from .io import atomic_path

    try:
        if Path(path).suffix.lower() != ".png":
            raise ValueError(f"{path}: plots are written as PNG; give a file name ending in .png")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, **savefig_kwargs)
    finally:
        plt.close(fig)


def plot_poses_3d(poses: np.ndarray, path, skeleton: Skeleton | str = "h36m17", titles: Sequence[str] | None = None,
                  image: np.ndarray | None = None, columns: int = 5) -> None:
    """One 3D panel per pose, written to ``path`` (PNG); beside ``image`` when given (the image first), in rows of
    ``columns`` panels.

    ``poses`` (N, J, 3) or (N, H, J, 3) root-relative camera-frame millimetres (x right, y down, z away from the
    camera); with H hypotheses each is drawn thin and their mean thick. The panels show x across, depth (z)
    into the page and -y up, so a standing person stands.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sk = get_skeleton(skeleton)
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim == 3:
        poses = poses[:, None]
    n = len(poses)
    panels = n + (image is not None)
    cols = max(1, min(panels, int(columns)))
    rows = max(1, -(-panels // cols))
    fig = plt.figure(figsize=(3.2 * cols, 3.4 * rows))
    if image is not None:
        ax = fig.add_subplot(rows, cols, 1)
        ax.imshow(image)
        ax.axis("off")
    colours = person_colours(max(n, 1))
    for i, hyps in enumerate(poses):
        ax = fig.add_subplot(rows, cols, i + 1 + (image is not None), projection="3d")
        rgb = tuple(c / 255 for c in colours[i])
        mean = hyps.mean(0)
        for pose, lw, alpha in [(h, 0.7, 0.35) for h in hyps if len(hyps) > 1] + [(mean, 2.0, 1.0)]:
            for a, b in sk.limbs:
                ax.plot([pose[a, 0], pose[b, 0]], [pose[a, 2], pose[b, 2]], [-pose[a, 1], -pose[b, 1]],
                        color=rgb, lw=lw, alpha=alpha)
        span = max(float(np.ptp(mean, axis=0).max()) / 2, 1.0)
        centre = mean.mean(0)
        ax.set_xlim(centre[0] - span, centre[0] + span)
        ax.set_ylim(centre[2] - span, centre[2] + span)
        ax.set_zlim(-centre[1] - span, -centre[1] + span)
        ax.set_xlabel("x (mm)", fontsize=6)
        ax.set_ylabel("depth (mm)", fontsize=6)
        ax.set_zlabel("-y (mm)", fontsize=6)
        ax.tick_params(labelsize=5)
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    save_figure(fig, path)
