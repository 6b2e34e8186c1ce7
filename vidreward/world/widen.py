"""Function-preserving widening (Net2WiderNet) of a trained ``AutoencoderKLWan`` decoder.

A decoder of base width ``C`` becomes one of width ``k * C`` (``k`` a whole number) that computes the same video:
every hidden channel ``c`` is copied ``k`` times, so a hidden activation ``h`` becomes ``[h, h, ..., h]``.

- A weight's output dimension that widened repeats each row ``k`` times; an input dimension that widened repeats
  each column ``k`` times and divides it by ``k``, so ``sum_j W'_ij h'_j = sum_j W_ij h_j``.
- Channel-chunked outputs keep their chunk layout: ``to_qkv`` (chunks q, k, v) and the temporal upsampler's
  ``time_conv`` (chunks frame 0, frame 1) widen chunk by chunk.
- ``WanRMS_norm`` is ``x / ||x||_2 * sqrt(C) * gamma``: with ``k`` copies, ``||x'|| = sqrt(k) ||x||`` and the scale
  is ``sqrt(k C)``, so the norm's output is the copied output and ``gamma`` just repeats.
- The single-head mid-block attention scales logits by ``1 / sqrt(channels)``. Copies make ``q' . k' = k q . k``
  and the scale ``1 / sqrt(k C)``; multiplying the q chunk by ``1 / sqrt(k)`` restores ``q . k / sqrt(C)``.

Copies that are also consumed identically receive identical gradients and stay copies forever: the widened decoder
then has no more capacity than the narrow one. Two ways to break the symmetry:

- ``random_split`` (exact): an input dimension that widened splits each column over its ``k`` copies with random
  positive weights ``u_1..u_k`` (``sum_m u_m = 1``, drawn per weight entry) instead of ``1 / k`` each. Since the
  copies' activations are equal, ``sum_m u_m W_ij h_j = W_ij h_j``: the decoder still computes the same video, but
  the copies are read with different weights, so their gradients differ from the first step on.
- ``noise`` (approximate): Gaussian noise of ``noise * std(W)`` added to every widened weight.

``noise=0`` without ``random_split`` is the exact copy the tests check by hand.
"""

from __future__ import annotations

import math

import torch

#: decoder sub-module name -> number of channel chunks of its output
CHUNKED_OUTPUTS: dict[str, int] = {"to_qkv": 3, "time_conv": 2}


def _repeat_channels(tensor: torch.Tensor, dim: int, factor: int, chunks: int) -> torch.Tensor:
    """Repeat every channel of ``tensor`` along ``dim`` ``factor`` times, inside each of ``chunks`` chunks."""
    parts = tensor.chunk(chunks, dim)
    return torch.cat([p.repeat_interleave(factor, dim) for p in parts], dim)


def _split_weights(shape: tuple[int, ...], old: int, factor: int, generator: torch.Generator | None
                   ) -> torch.Tensor:
    """Random positive weights of ``shape`` (dim 1 = ``old * factor`` adjacent copies) summing to 1 over each
    channel's ``factor`` copies."""
    grouped = (shape[0], old, factor, *shape[2:])
    u = 0.5 + torch.rand(grouped, generator=generator)  # in [0.5, 1.5): no copy is read with a near-zero weight
    return (u / u.sum(dim=2, keepdim=True)).flatten(1, 2)


def widen_decoder_state(narrow: dict[str, torch.Tensor], wide_shapes: dict[str, torch.Size], noise: float = 0.0,
                        generator: torch.Generator | None = None, random_split: bool = False
                        ) -> dict[str, torch.Tensor]:
    """State dict of the wide decoder (``wide_shapes``) that computes what the ``narrow`` decoder computes.

    Dimension 0 of a tensor is its output channels, dimension 1 (weights only) its input channels. ``random_split``
    and ``noise`` break the copies' symmetry (module docstring).
    """
    wide: dict[str, torch.Tensor] = {}
    for name, tensor in narrow.items():
        shape = tuple(wide_shapes[name])
        if len(shape) != tensor.ndim:
            raise ValueError(f"{name}: wide shape {shape} and narrow shape {tuple(tensor.shape)} differ in rank")
        chunks = next((n for key, n in CHUNKED_OUTPUTS.items() if f".{key}." in f".{name}"), 1)
        out = tensor
        for dim, (new, old) in enumerate(zip(shape, tensor.shape)):
            if new == old:
                continue
            if new % old:
                raise ValueError(f"{name}: width {new} is not a whole multiple of {old} along dim {dim}")
            factor = new // old
            out = _repeat_channels(out, dim, factor, chunks if dim == 0 else 1)
            if dim == 1:
                out = out * _split_weights(tuple(out.shape), old, factor, generator) if random_split else out / factor
        widened = out.shape != tensor.shape
        if widened and name.endswith(("to_qkv.weight", "to_qkv.bias")):
            factor = shape[0] // tensor.shape[0]
            q_rows = shape[0] // 3
            out = out.clone()
            out[:q_rows] /= math.sqrt(factor)
        if widened and noise > 0 and not name.endswith("gamma") and tensor.ndim > 1:
            std = float(tensor.std()) if tensor.numel() > 1 else 0.0
            out = out + noise * std * torch.randn(out.shape, generator=generator, dtype=out.dtype)
        wide[name] = out.contiguous()
    return wide


def widen_decoder(narrow_vae, wide_vae, noise: float = 0.0, seed: int = 0, random_split: bool = False) -> None:
    """Load into ``wide_vae``'s ``post_quant_conv`` + ``decoder`` the widened weights of ``narrow_vae``'s."""
    generator = torch.Generator().manual_seed(seed)
    for module in ("post_quant_conv", "decoder"):
        target = getattr(wide_vae, module)
        shapes = {k: v.shape for k, v in target.state_dict().items()}
        target.load_state_dict(widen_decoder_state(getattr(narrow_vae, module).state_dict(), shapes, noise,
                                                   generator, random_split))
