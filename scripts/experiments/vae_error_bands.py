"""Experiment: where a world VAE's foreground error sits (object interiors, the band inside edges, frames).

Encodes and decodes (posterior mean, clamped decode, as :func:`vidreward.world.build_vae.evaluate_vae`) the first
``--videos`` held-out renders (``--split train --skip N``: train renders N, N+1, ...) and prints, per region, the
PSNR of that region (dB, peak 1, pooled over videos and channels) and its share of the foreground squared error:

- ``fg``: object pixels (the build's foreground PSNR);
- ``fg interior``: object pixels more than ``--band`` px from the background (the mask eroded by ``--band``);
- ``fg edge band``: object pixels within ``--band`` px of the background;
- ``ring outside``: background pixels within ``--band`` px of an object (its share is relative to ``fg`` too);
- ``bg far``: the rest of the background;
- ``fg frame f``: object pixels of frame f.

With ``--per-video`` it also prints every video's foreground PSNR, its share of the pooled foreground error, its
object pixels per frame and its caption, worst share first, then the foreground PSNR pooled per lighting, per
background and per (lighting, background) group.

    .venv/bin/python scripts/experiments/vae_error_bands.py [--vae DIR]
"""

from __future__ import annotations

import argparse
import math

import torch

from vidreward.world.build_generator import ASSET_DIR
from vidreward.world.build_vae import dilate, encode_mean, render_with_masks
from vidreward.world.render import RenderConfig
from vidreward.world.splits import world_prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vae", default=str(ASSET_DIR / "vae"), help="AutoencoderKLWan directory")
    parser.add_argument("--videos", type=int, default=48, help="held-out renders (the build evaluates 48)")
    parser.add_argument("--band", type=int, default=2, help="edge band width in pixels")
    parser.add_argument("--split", choices=("heldout", "train"), default="heldout",
                        help="which split's renders (train: how well the decoder fits what it was trained on)")
    parser.add_argument("--skip", type=int, default=0, help="start at this index of the split's prompt list")
    parser.add_argument("--per-video", action="store_true", help="also list each video's foreground PSNR")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(args.vae).eval()
    cfg = RenderConfig()
    prompts = world_prompts(args.split, args.skip + args.videos, num_frames=cfg.num_frames)[args.skip:]
    totals: dict[str, list[float]] = {}  # region -> [squared error, pixel count x channels]
    per_video: list[tuple[float, float, str, str, str]] = []  # (fg sq. error, fg px x channels, caption, light, bg)
    with torch.no_grad():
        for start in range(0, len(prompts), 8):
            video, mask = render_with_masks(prompts[start:start + 8], cfg)  # [B, 3, F, H, W], [B, 1, F, H, W]
            recon = vae.decode(encode_mean(vae, video)).sample.clamp(-1, 1)
            err = ((recon - video) * 0.5).square().sum(1, keepdim=True)  # [B, 1, F, H, W], summed over channels
            for b in range(video.shape[0]):
                spec = prompts[start + b].spec
                per_video.append((float((err[b] * mask[b]).sum()), float(mask[b].sum()) * 3,
                                  prompts[start + b].caption, spec.lighting, spec.background))
            interior = 1 - dilate(1 - mask, args.band)
            near = dilate(mask, args.band)
            regions = {"fg": mask, "fg interior": interior, "fg edge band": mask - interior,
                       "ring outside": near - mask, "bg far": 1 - near}
            regions.update({f"fg frame {f}": mask * (torch.arange(cfg.num_frames) == f).view(1, 1, -1, 1, 1)
                            for f in range(cfg.num_frames)})
            for name, region in regions.items():
                total = totals.setdefault(name, [0.0, 0.0])
                total[0] += float((err * region).sum())
                total[1] += float(region.sum()) * 3
    fg_error = totals["fg"][0]
    print(f"{'region':16s} {'PSNR dB':>8s} {'share of fg error':>18s} {'pixels':>9s}")
    for name, (sq, n) in totals.items():
        print(f"{name:16s} {10 * math.log10(n / max(sq, 1e-12)):8.2f} {sq / fg_error:18.3f} {n / 3:9.0f}")
    if args.per_video:
        print(f"\n{'fg PSNR':>8s} {'share':>6s} {'px/frame':>8s}  caption")
        for sq, n, caption, _, _ in sorted(per_video, key=lambda row: -row[0]):
            print(f"{10 * math.log10(n / max(sq, 1e-12)):8.2f} {sq / fg_error:6.3f} {n / 3 / cfg.num_frames:8.0f}  "
                  f"{caption}")
        groups: dict[str, list[float]] = {}  # group -> [squared error, pixels x channels, videos]
        for sq, n, _, light, bg in per_video:
            for key in (light, bg, f"{light}/{bg}"):
                total = groups.setdefault(key, [0.0, 0.0, 0])
                total[0], total[1], total[2] = total[0] + sq, total[1] + n, total[2] + 1
        print(f"\n{'group':14s} {'videos':>6s} {'fg PSNR':>8s}")
        for key, (sq, n, count) in sorted(groups.items()):
            print(f"{key:14s} {count:6d} {10 * math.log10(n / max(sq, 1e-12)):8.2f}")


if __name__ == "__main__":
    main()
