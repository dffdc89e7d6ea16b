"""Figures of data: a grid of images with their labels (D2L 4.2's ``show_images``)."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure
from torch import Tensor


def show_images(images: Tensor, titles: Sequence[str], num_cols: int = 8, scale: float = 1.5) -> Figure:
    """A grid of grayscale images (N, H, W) or (N, 1, H, W), each titled.

    A plain :class:`~matplotlib.figure.Figure`, outside pyplot: it needs no GUI backend (``savefig``
    renders it with Agg) and nothing holds on to it once the caller drops it.
    """
    images = images.reshape(len(images), *images.shape[-2:]).cpu()
    num_rows = -(-len(images) // num_cols)
    fig = Figure(figsize=(num_cols * scale, num_rows * scale * 1.15))
    axes = fig.subplots(num_rows, num_cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles, strict=False):
        ax.imshow(image.numpy(), cmap="gray")
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig
