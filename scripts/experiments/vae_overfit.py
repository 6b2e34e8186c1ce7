"""Experiment: can the shipped world VAE fit a couple of held-out renders when trained on them alone?

It trains on the same ``--videos`` held-out renders every step (foreground-weighted L2: weight 10 on objects and a
2 px ring, 1 elsewhere; AdamW lr 1e-3) and prints their foreground PSNR (dB, clamped decode) every 50 steps. With
``--decoder-only`` the encoder is frozen (what the vae_decoder build stage trains); ``--width`` widens the decoder
first (:mod:`vidreward.world.widen`). A model that cannot fit two videos lacks the capacity (or, decoder-only, its
latents lack the information); one that can, but plateaus on the whole world, is limited by fitting the
distribution.

    .venv/bin/python scripts/experiments/vae_overfit.py --decoder-only --steps 400
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from vidreward.world.build_generator import ASSET_DIR
from vidreward.world.build_vae import decode_unclamped, dilate, encode_mean, render_with_masks
from vidreward.world.build_vae_decoder import load_decoder_trainable_vae
from vidreward.world.render import RenderConfig
from vidreward.world.splits import world_prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vae", default=str(ASSET_DIR / "vae"))
    parser.add_argument("--width", type=int, default=None, help="widen the decoder to this base width first")
    parser.add_argument("--decoder-only", action="store_true", help="freeze the encoder and quant_conv")
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    torch.set_num_threads(1)
    vae = load_decoder_trainable_vae(args.vae, args.width, widen_noise=0.01)
    if not args.decoder_only:
        vae.requires_grad_(True)
    params = [p for p in vae.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    video, mask = render_with_masks(world_prompts("heldout", args.videos, num_frames=9), RenderConfig())
    weight = 1 + 9 * dilate(mask, 2)  # [B, 1, F, H, W]
    t0 = time.time()
    for step in range(1, args.steps + 1):
        recon = decode_unclamped(vae, encode_mean(vae, video))  # [B, 3, F, H, W]
        loss = ((recon - video).square() * weight).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            err = ((recon.detach().clamp(-1, 1) - video) * 0.5).square() * mask
            fg = 10 * math.log10(float(mask.sum()) * 3 / float(err.sum()))
            print(f"step {step} fg PSNR {fg:.2f} dB ({sum(p.numel() for p in params)} trainable, "
                  f"{time.time() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
