"""Experiment: does fine-tuning the world VAE's encoder with its decoder raise held-out foreground PSNR faster
than the decoder alone?

Starts from a VAE directory (default: the shipped one) and trains for ``--minutes`` on the same batches as the
``vae_decoder`` stage (whole 9-frame train renders, ``numpy.random.default_rng([seed, step])``), with the stage's
foreground-weighted L2 (``fg_weight`` 10, ``ring_px`` 2), AdamW at a constant ``--lr`` after 20 warm-up steps:

- ``--arm decoder``: encoder and ``quant_conv`` frozen (the ``vae_decoder`` stage);
- ``--arm joint``: everything trained, plus a latent anchor that keeps the DiT's latents where they were,

      L = L_rec + anchor * mean_{c,f,h,w} ((mu_c - mu0_c) / std_c)^2,

  ``mu0`` the frozen starting encoder's posterior mean and ``std`` the config's ``latents_std`` (the DiT's units).

At the end it prints the held-out metrics of :func:`vidreward.world.build_vae.evaluate_vae` on ``--videos`` renders
(the build's 48), the steps done, and for ``joint`` the held-out latent drift (RMS in normalised units), and writes
them to ``<out>/result.json`` with the trained VAE in ``<out>/vae``.

    .venv/bin/python scripts/experiments/vae_joint_probe.py --arm joint --minutes 12 --out runs/probe_joint
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from vidreward.world.build_generator import ASSET_DIR
from vidreward.world.build_vae import (
    decode_unclamped,
    dilate,
    encode_mean,
    evaluate_vae,
    reconstruction_loss,
    render_with_masks,
)
from vidreward.world.render import RenderConfig
from vidreward.world.splits import world_prompts


def latent_drift(vae, start, prompts, cfg: RenderConfig) -> float:
    """RMS of ``(mu - mu0) / latents_std`` over the held-out renders (the DiT's normalised units)."""
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    sq, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(prompts), 8):
            video, _ = render_with_masks(prompts[i:i + 8], cfg)
            d = (encode_mean(vae, video) - encode_mean(start, video)) / std
            sq += float(d.square().sum())
            n += d.numel()
    return (sq / n) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arm", choices=("decoder", "joint"), required=True)
    parser.add_argument("--vae", default=str(ASSET_DIR / "vae"))
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--anchor", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from diffusers import AutoencoderKLWan

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = RenderConfig()
    train = world_prompts("train", 6000, num_frames=cfg.num_frames)
    heldout = world_prompts("heldout", args.videos, num_frames=cfg.num_frames)
    vae = AutoencoderKLWan.from_pretrained(args.vae)
    start = copy.deepcopy(vae).eval().requires_grad_(False)
    vae.requires_grad_(args.arm == "joint")
    for name in ("post_quant_conv", "decoder"):
        getattr(vae, name).requires_grad_(True)
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)  # [1, z, 1, 1, 1]
    t0, step, log = time.time(), 0, []
    while time.time() - t0 < args.minutes * 60:
        rng = np.random.default_rng([args.seed, step])
        batch = [train[i] for i in rng.choice(len(train), args.batch, replace=False)]
        video, mask = render_with_masks(batch, cfg)  # [B, 3, F, H, W], [B, 1, F, H, W]
        if args.arm == "joint":
            mu = encode_mean(vae, video)  # [B, z, F', H', W']
            with torch.no_grad():
                mu0 = encode_mean(start, video)
            anchor = ((mu - mu0) / std).square().mean()
        else:
            with torch.no_grad():
                mu = encode_mean(vae, video)
            anchor = torch.zeros(())
        recon = decode_unclamped(vae, mu)
        rec = reconstruction_loss(recon, video, dilate(mask, 2), 10.0, 1.0, 0.0, 0.0)
        loss = rec + args.anchor * anchor
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 20)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0:
            log.append({"step": step, "rec": rec.item(), "anchor": anchor.item(), "s": time.time() - t0})
            print(json.dumps(log[-1]), flush=True)
        step += 1
    vae.eval()
    result = {"arm": args.arm, "steps": step, "minutes": args.minutes, "lr": args.lr, "anchor": args.anchor,
              "heldout": evaluate_vae(vae, heldout, cfg), "log": log}
    if args.arm == "joint":
        result["heldout_latent_drift_rms"] = latent_drift(vae, start, heldout, cfg)
    vae.save_pretrained(str(out / "vae"), safe_serialization=True)
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "log"}, indent=2))


if __name__ == "__main__":
    main()
