"""Experiment: how fast does a fresh world VAE reach the 25 dB held-out foreground PSNR target, by spatial
compression?

Trains a new ``AutoencoderKLWan`` (:func:`vidreward.world.build_vae.make_vae`) with ``--patch`` (1 = no
patchify: 2x spatial compression with one down-sampling stage; 2 = the shipped 4x), ``--base-dim`` and ``--z``, from
scratch, for ``--minutes``: foreground-weighted L2 (``fg_weight`` 10 over objects and a 2-pixel ring), AdamW at
``--lr`` after 50 warm-up steps, on 48 x 48 crops (aligned to the latent grid) of whole 9-frame train renders, batch
8, ``numpy.random.default_rng([seed, step])``. Every ``--eval-every`` steps it logs
:func:`vidreward.world.build_vae.evaluate_vae` on the build's 48 held-out renders; ``<out>/result.json`` keeps them.

    .venv/bin/python scripts/experiments/vae_compression_probe.py --patch 1 --minutes 15 --out runs/probe_p1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from vidreward.world.build_vae import (
    VaeStageConfig,
    _train_crop,
    decode_unclamped,
    dilate,
    encode_mean,
    evaluate_vae,
    make_vae,
    reconstruction_loss,
    render_with_masks,
)
from vidreward.world.render import RenderConfig
from vidreward.world.splits import world_prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patch", type=int, default=1)
    parser.add_argument("--base-dim", type=int, default=16)
    parser.add_argument("--z", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    render_cfg = RenderConfig()
    cfg = VaeStageConfig(base_dim=args.base_dim, z_dim=args.z, patch_size=args.patch, short_clip_steps=0, train_crop=48)
    train = world_prompts("train", 6000, num_frames=render_cfg.num_frames)
    heldout = world_prompts("heldout", 48, num_frames=render_cfg.num_frames)
    vae = make_vae(cfg)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    history, t0, step = [], time.time(), 0
    while time.time() - t0 < args.minutes * 60:
        rng = np.random.default_rng([args.seed, step])
        batch = [train[i] for i in rng.choice(len(train), 8, replace=False)]
        video, mask = render_with_masks(batch, render_cfg)  # [B, 3, F, H, W], [B, 1, F, H, W]
        video, mask = _train_crop(video, mask, cfg, rng, vae.config.scale_factor_spatial, step)
        recon = decode_unclamped(vae, encode_mean(vae, video))
        loss = reconstruction_loss(recon, video, dilate(mask, 2), 10.0, 1.0, 0.0, 0.0)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 50)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            print(json.dumps({"step": step, "loss": round(loss.item(), 5), "s": round(time.time() - t0)}), flush=True)
        if step % args.eval_every == 0:
            vae.eval()
            history.append({"step": step, "s": time.time() - t0, **evaluate_vae(vae, heldout, render_cfg)})
            vae.train()
            print(json.dumps(history[-1]), flush=True)
    vae.save_pretrained(str(out / "vae"), safe_serialization=True)
    result = {"patch": args.patch, "base_dim": args.base_dim, "z": args.z, "lr": args.lr, "steps": step,
              "params": sum(p.numel() for p in vae.parameters()), "history": history}
    (out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
