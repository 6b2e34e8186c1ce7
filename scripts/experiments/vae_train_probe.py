"""Experiment: train a world VAE for a few minutes and follow its held-out foreground PSNR (target 25 dB).

The start is a trained VAE directory (``--start``, default: the shipped one) or, with ``--scratch``, a fresh
:func:`vidreward.world.build_vae.make_vae` (``--patch`` 1 = no patchify, 2x spatial compression; 2 = the shipped 4x;
``--base-dim``). ``--z`` above the start's ``z_dim`` grows the latent function-preservingly
(:func:`vidreward.world.latent_expand.expand_latents`). What trains:

- ``--arm decoder``: ``post_quant_conv`` and the decoder (encoder frozen, the shipped DiT's latents stay valid);
- ``--arm joint``: everything, plus (``--anchor`` > 0) a latent anchor to the start encoder's posterior mean,

      L = L_rec + anchor * mean_{c,f,h,w} ((mu_c - mu0_c) / std_c)^2        (std: the config's latents_std),

with ``L_rec`` the foreground-weighted L2 of the stages (:func:`vidreward.world.build_vae.reconstruction_loss`:
weight ``fg_weight`` 10 over objects and a 2-pixel ring, 1 elsewhere) of the decoder's unclamped output.
AdamW (betas 0.9 / 0.99, gradient norm clipped to 1, as :func:`vidreward.world.build_loop.train_stage`) at a
constant ``--lr`` after ``--warmup`` steps; batch ``--batch`` of whole 9-frame train renders, cropped to ``--crop``
(aligned to the latent grid; 0 = whole frames); step s draws with ``numpy.random.default_rng([seed, s])``.

Every ``--eval-every`` steps and at the end it logs :func:`vidreward.world.build_vae.evaluate_vae` on the build's
48 held-out renders (and for ``joint`` the held-out latent drift, RMS of ``(mu - mu0) / std``) and writes them
to ``<out>/result.json`` with the VAE in ``<out>/vae``. Session-9 runs:

    .venv/bin/python scripts/experiments/vae_train_probe.py --arm joint --z 32 --minutes 25 --out runs/probe_z32
    .venv/bin/python scripts/experiments/vae_train_probe.py --scratch --patch 1 --lr 2e-3 --warmup 50 --out runs/p1

(Session 5's ``vae_joint_probe.py`` and session 9's ``vae_latent_expand_probe.py`` / ``vae_compression_probe.py``
were merged into this script; it differs from them only in the optimiser's betas and clipping.)
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
    make_vae,
    reconstruction_loss,
    render_with_masks,
)
from vidreward.world.latent_expand import expand_latents
from vidreward.world.render import RenderConfig
from vidreward.world.splits import world_prompts


def latent_drift(vae, start, prompts, cfg: RenderConfig) -> float:
    """RMS of ``(mu - mu0) / latents_std`` over ``prompts``' renders, on the start's channels."""
    std = torch.tensor(start.config.latents_std).view(1, -1, 1, 1, 1)  # [1, z0, 1, 1, 1]
    sq, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(prompts), 8):
            video, _ = render_with_masks(prompts[i:i + 8], cfg)
            mu0 = encode_mean(start, video)
            d = (encode_mean(vae, video)[:, :mu0.shape[1]] - mu0) / std
            sq += float(d.square().sum())
            n += d.numel()
    return (sq / n) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", default=str(ASSET_DIR / "vae"), help="trained VAE directory to start from")
    parser.add_argument("--scratch", action="store_true", help="start from a fresh VAE instead (--patch, --base-dim)")
    parser.add_argument("--patch", type=int, default=2)
    parser.add_argument("--base-dim", type=int, default=16)
    parser.add_argument("--z", type=int, default=None, help="latent channels (default: the start's)")
    parser.add_argument("--arm", choices=("decoder", "joint"), default="joint")
    parser.add_argument("--anchor", type=float, default=0.0)
    parser.add_argument("--crop", type=int, default=48)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup", type=int, default=20)
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
    crop_cfg = VaeStageConfig(base_dim=args.base_dim, z_dim=args.z or 16, patch_size=args.patch, short_clip_steps=0,
                              train_crop=args.crop)
    train = world_prompts("train", 6000, num_frames=render_cfg.num_frames)
    heldout = world_prompts("heldout", args.videos, num_frames=render_cfg.num_frames)
    if args.scratch:
        vae = start = make_vae(crop_cfg)
    else:
        start = AutoencoderKLWan.from_pretrained(args.start).eval().requires_grad_(False)
        vae = expand_latents(AutoencoderKLWan.from_pretrained(args.start), args.z or start.config.z_dim,
                             generator=torch.Generator().manual_seed(args.seed))
    vae.requires_grad_(args.arm == "joint")
    for name in ("post_quant_conv", "decoder"):
        getattr(vae, name).requires_grad_(True)
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    std = torch.tensor(start.config.latents_std).view(1, -1, 1, 1, 1)  # [1, z0, 1, 1, 1]
    anchored = args.arm == "joint" and args.anchor > 0 and not args.scratch

    def evaluate(step: int, t0: float) -> dict:
        vae.eval()
        row = {"step": step, "s": time.time() - t0, **evaluate_vae(vae, heldout, render_cfg)}
        if args.arm == "joint" and not args.scratch:
            row["latent_drift_rms"] = latent_drift(vae, start, heldout, render_cfg)
        vae.train()
        print(json.dumps(row), flush=True)
        return row

    t0, step = time.time(), 0
    history = [] if args.scratch else [evaluate(0, t0)]
    while time.time() - t0 < args.minutes * 60:
        rng = np.random.default_rng([args.seed, step])
        batch = [train[i] for i in rng.choice(len(train), args.batch, replace=False)]
        video, mask = render_with_masks(batch, render_cfg)  # [B, 3, F, H, W], [B, 1, F, H, W]
        video, mask = _train_crop(video, mask, crop_cfg, rng, vae.config.scale_factor_spatial, step)
        mu = encode_mean(vae, video)  # [B, z, F', h, w]
        loss = reconstruction_loss(decode_unclamped(vae, mu), video, dilate(mask, 2), 10.0, 1.0, 0.0, 0.0)
        if anchored:
            with torch.no_grad():
                mu0 = encode_mean(start, video)
            loss = loss + args.anchor * ((mu[:, :mu0.shape[1]] - mu0) / std).square().mean()
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            print(json.dumps({"step": step, "loss": round(loss.item(), 5), "s": round(time.time() - t0)}), flush=True)
        if step % args.eval_every == 0:
            history.append(evaluate(step, t0))
    history.append(evaluate(step, t0))
    vae.save_pretrained(str(out / "vae"), safe_serialization=True)
    result = {"args": vars(args), "steps": step, "params": sum(p.numel() for p in vae.parameters()),
              "history": history}
    (out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
