"""Latent crops for the decoder-only VAE stage: decode part of a frame, score only the part a crop decodes faithfully.

The decoder's cost grows with the latent area, so a step on ``size x size`` latent crops is faster than a
whole-frame step (benchmarks/vae_decoder_crops.py: 2.24x for 10 of 16, less than the area ratio 2.56). A crop is
not decoded exactly like the same region of the whole frame: convolutions see zero padding at the crop's sides
instead of the neighbouring latents, and the mid-block attention sees only the crop. So the loss is taken on the crop's interior only, ``margin`` latent pixels (``4 * margin``
video pixels at the Wan VAE's 4x spatial factor) in from each side that is not also a side of the frame (where the
whole-frame decode pads in the same way). Measured on the shipped world VAE (session 7, 8 train renders): the
interior of a 10 x 10 crop with margin 1 matches the whole-frame decode at 38.4 dB PSNR, a 12 x 12 crop with margin
2 at 45.2 dB, far above the 25 dB the stage aims for, so the crop's gradient is the whole frame's to that
precision.

The frozen encoder's latents of the train pool are cached (:class:`LatentCache`): each video is encoded alone
(batch of one) the first time it is drawn, so a cached latent never depends on which other videos shared a batch,
and a resumed run reproduces a run that never stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class CropBox:
    """One crop of a ``[.., H', W']`` latent and the video-pixel region of it the loss scores."""

    top: int
    """first latent row of the crop"""
    left: int
    """first latent column of the crop"""
    size: int
    """crop side in latent pixels"""
    loss_rows: slice
    """rows of the decoded crop (video pixels) that the loss scores"""
    loss_cols: slice
    """columns of the decoded crop (video pixels) that the loss scores"""
    pixel_rows: slice
    """the same rows in the whole video frame"""
    pixel_cols: slice
    """the same columns in the whole video frame"""


def _interior(start: int, size: int, full: int, margin: int, scale: int) -> tuple[slice, slice]:
    """(slice in the decoded crop, slice in the frame) of one axis: ``margin`` trimmed off inner sides only."""
    lo = 0 if start == 0 else margin
    hi = size if start + size == full else size - margin
    return slice(scale * lo, scale * hi), slice(scale * (start + lo), scale * (start + hi))


def crop_box(rng: np.random.Generator, latent_hw: tuple[int, int], size: int, margin: int, scale: int) -> CropBox:
    """A uniformly placed ``size x size`` crop of a latent of ``latent_hw`` (``scale``: video pixels per latent)."""
    h, w = latent_hw
    if not 2 * margin < size <= min(h, w):
        raise ValueError(f"latent crop {size} with margin {margin} does not fit a {h}x{w} latent "
                         f"(need 2 * margin < size <= {min(h, w)})")
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    loss_rows, pixel_rows = _interior(top, size, h, margin, scale)
    loss_cols, pixel_cols = _interior(left, size, w, margin, scale)
    return CropBox(top, left, size, loss_rows, loss_cols, pixel_rows, pixel_cols)


def crop_latent(z: torch.Tensor, box: CropBox) -> torch.Tensor:
    """``z [C, F', H', W']`` -> the crop ``[C, F', size, size]``."""
    return z[..., box.top:box.top + box.size, box.left:box.left + box.size]


class LatentCache:
    """Posterior-mean latents of a fixed pool of videos under a frozen encoder, encoded one video at a time."""

    def __init__(self, encode):
        """``encode``: ``video [1, 3, F, H, W] -> latent [1, C, F', H', W']`` (called without grad)."""
        self._encode = encode
        self._latents: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._latents)

    def get(self, index: int, video: torch.Tensor) -> torch.Tensor:
        """The latent ``[C, F', H', W']`` of pool video ``index`` (``video [3, F, H, W]``, used on first use only)."""
        if index not in self._latents:
            with torch.no_grad():
                self._latents[index] = self._encode(video[None])[0]
        return self._latents[index]


def decode_crops(decode, z: torch.Tensor, video: torch.Tensor, mask: torch.Tensor, boxes: list[CropBox]):
    """Decode the crops of ``z [B, C, F', H', W']`` (one box per video, all of one size) and pair each scored region
    with the video's: a list of ``(recon, target, mask)`` of shapes ``[1, 3, F, h, w]``, ``[1, 3, F, h, w]``,
    ``[1, 1, F, h, w]``. ``decode``: latents -> unclamped video (``build_vae.decode_unclamped``)."""
    recon = decode(torch.stack([crop_latent(zi, b) for zi, b in zip(z, boxes)]))  # [B, 3, F, 4s, 4s]
    return [(recon[i:i + 1, ..., b.loss_rows, b.loss_cols], video[i:i + 1, ..., b.pixel_rows, b.pixel_cols],
             mask[i:i + 1, ..., b.pixel_rows, b.pixel_cols]) for i, b in enumerate(boxes)]
