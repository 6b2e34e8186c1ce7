"""Experiment: do more latent channels let the world VAE draw sharper object edges?

Starts from a trained VAE directory (default: the shipped one) and, with ``--z`` larger than its ``z_dim``, adds
latent channels without changing what it computes (:func:`expand_latents`):

new posterior-mean channels from small random rows of the encoder's last convolution, read by the decoder with
zero weights at first.

Then it trains everything (encoder and decoder, no anchor: the DiT is retrained on the new latents anyway) with the
``vae_decoder`` stage's foreground-weighted L2 (``fg_weight`` 10 over objects and a 2-pixel ring), AdamW at a
constant ``--lr`` after 20 warm-up steps, on 48 x 48 crops (aligned to the latent grid) of whole 9-frame train
renders, batch ``--batch``, ``numpy.random.default_rng([seed, step])``. ``--z`` equal to the start's ``z_dim`` is
the control arm (the same joint training, no new channels).

Every ``--eval-every`` steps it logs the held-out metrics of :func:`vidreward.world.build_vae.evaluate_vae` on the
build's 48 held-out renders; it writes them to ``<out>/result.json`` and the VAE to ``<out>/vae``.

    .venv/bin/python scripts/experiments/vae_latent_expand_probe.py --z 32 --minutes 25 --out runs/probe_z32
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from vidreward.world.build_generator import ASSET_DIR
from vidreward.world.build_vae import (
    VaeStageConfig,
    _train_crop,
    decode_unclamped,
    dilate,
    encode_mean,
    evaluate_vae,
    reconstruction_loss,
    render_with_masks,
)
from vidreward.world.latent_expand import expand_latents
from vidreward.world.render import RenderConfig
from vidreward.world.splits import world_prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vae", default=str(ASSET_DIR / "vae"))
    parser.add_argument("--z", type=int, default=32)
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--eval-every", type=int, default=300)
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from diffusers import AutoencoderKLWan

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    render_cfg = RenderConfig()
    crop_cfg = VaeStageConfig(short_clip_steps=0, train_crop=48)
    train = world_prompts("train", 6000, num_frames=render_cfg.num_frames)
    heldout = world_prompts("heldout", args.videos, num_frames=render_cfg.num_frames)
    start = AutoencoderKLWan.from_pretrained(args.vae)
    vae = expand_latents(start, args.z, generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        video, _ = render_with_masks(heldout[:2], render_cfg)
        same = (vae.decode(encode_mean(vae, video)).sample - start.decode(encode_mean(start, video)).sample).abs()
    history = [{"step": 0, "max_abs_change_after_expansion": float(same.max()), **evaluate_vae(vae, heldout, render_cfg)}]
    print(json.dumps(history[-1]), flush=True)
    vae.train().requires_grad_(True)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    t0, step = time.time(), 0
    while time.time() - t0 < args.minutes * 60:
        rng = np.random.default_rng([args.seed, step])
        batch = [train[i] for i in rng.choice(len(train), args.batch, replace=False)]
        video, mask = render_with_masks(batch, render_cfg)  # [B, 3, F, H, W], [B, 1, F, H, W]
        video, mask = _train_crop(video, mask, crop_cfg, rng, vae.config.scale_factor_spatial, step)
        recon = decode_unclamped(vae, encode_mean(vae, video))
        loss = reconstruction_loss(recon, video, dilate(mask, 2), 10.0, 1.0, 0.0, 0.0)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 20)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            print(json.dumps({"step": step, "loss": round(loss.item(), 5), "s": round(time.time() - t0)}), flush=True)
        if step % args.eval_every == 0:
            vae.eval()
            history.append({"step": step, "s": time.time() - t0, **evaluate_vae(vae, heldout, render_cfg)})
            vae.train()
            print(json.dumps(history[-1]), flush=True)
    vae.eval()
    history.append({"step": step, "s": time.time() - t0, **evaluate_vae(vae, heldout, render_cfg)})
    print(json.dumps(history[-1]), flush=True)
    vae.save_pretrained(str(out / "vae"), safe_serialization=True)
    result = {"z": args.z, "start": args.vae, "lr": args.lr, "steps": step, "minutes": args.minutes,
              "history": history}
    (out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
