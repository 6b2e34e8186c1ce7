"""Step time and peak memory of the vae_decoder stage's training step: whole frames vs latent crops, side by side.

    .venv/bin/python benchmarks/vae_decoder_crops.py [--repeats 5] [--batch 8] [--threads 1]

On the shipped world VAE and one fixed batch of train renders (64 x 64, 9 frames -> 16 x 16 x 5 latents), it
times the decoder's forward + backward + AdamW step (the latents come from the stage's cache, so encoding is not
timed), for whole frames and for ``--vae-decoder-crop`` 8, 10 and 12 (interior scoring as the stage does). Settings
are interleaved within each repeat and the median per setting counts, so load from other processes hits all of them
alike. Peak memory: each setting also runs two steps in a fresh subprocess, whose peak RSS (``resource``) is
reported against a subprocess that only loads the VAE and the batch (the step's own memory is the difference).
Prints a table and writes benchmarks/results/vae_decoder_crops.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vidreward.world.build_generator import ASSET_DIR  # noqa: E402
from vidreward.world.build_vae import (  # noqa: E402
    decode_unclamped,
    dilate,
    encode_mean,
    reconstruction_loss,
    render_with_masks,
)
from vidreward.world.build_vae_decoder import load_decoder_trainable_vae  # noqa: E402
from vidreward.world.render import RenderConfig  # noqa: E402
from vidreward.world.splits import world_prompts  # noqa: E402
from vidreward.world.vae_crops import crop_box, decode_crops  # noqa: E402

SETTINGS: tuple[int | None, ...] = (None, 12, 10, 8)


def step(vae, optimizer, z, video, mask, crop: int | None, rng: np.random.Generator) -> None:
    """One training step of the stage's L2 loss (fg weight 10, ring 2 px) on whole frames or crops."""
    if crop is None:
        loss = reconstruction_loss(decode_unclamped(vae, z), video, dilate(mask, 2), 10.0, 1.0, 0.0, 0.0)
    else:
        boxes = [crop_box(rng, z.shape[-2:], crop, 1, vae.config.scale_factor_spatial) for _ in range(z.shape[0])]
        parts = decode_crops(lambda zz: decode_unclamped(vae, zz), z, video, dilate(mask, 2), boxes)
        loss = sum(reconstruction_loss(r, v, m, 10.0, 1.0, 0.0, 0.0) for r, v, m in parts) / len(parts)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def peak_rss_mb(setting: str, batch: int, threads: int) -> float:
    """Peak RSS (MB) of a fresh process that loads everything and runs two steps of ``setting`` ("load": none)."""
    out = subprocess.run([sys.executable, __file__, "--rss-of", setting, "--batch", str(batch), "--threads",
                          str(threads)], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per setting (after one warm-up)")
    parser.add_argument("--batch", type=int, default=8, help="videos per step (the stage's default)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the build's default)")
    parser.add_argument("--rss-of", default=None, help=argparse.SUPPRESS)  # internal: the memory subprocess
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vae = load_decoder_trainable_vae(ASSET_DIR / "vae")
    optimizer = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=1e-6)
    video, mask = render_with_masks(world_prompts("train", args.batch, num_frames=9), RenderConfig())
    with torch.no_grad():
        z = encode_mean(vae, video)  # [B, 16, 5, 16, 16]
    rng = np.random.default_rng(0)
    if args.rss_of is not None:
        if args.rss_of != "load":
            for _ in range(2):
                step(vae, optimizer, z, video, mask, None if args.rss_of == "None" else int(args.rss_of), rng)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # KB on Linux
        return
    base = peak_rss_mb("load", args.batch, args.threads)
    memory = {str(c): {"peak_rss_mb": (m := peak_rss_mb(str(c), args.batch, args.threads)), "step_rss_mb": m - base}
              for c in SETTINGS}
    times: dict[str, list[float]] = {str(c): [] for c in SETTINGS}
    for crop in SETTINGS:  # warm-up
        step(vae, optimizer, z, video, mask, crop, rng)
    for _ in range(args.repeats):
        for crop in SETTINGS:
            t0 = time.perf_counter()
            step(vae, optimizer, z, video, mask, crop, rng)
            times[str(crop)].append(time.perf_counter() - t0)
    whole = statistics.median(times["None"])
    rows = []
    for crop in SETTINGS:
        med = statistics.median(times[str(crop)])
        rows.append({"setting": "whole frame" if crop is None else f"crop {crop}", "median_s": med,
                     "speedup_vs_whole": whole / med, **memory[str(crop)]})
    print(f"{'setting':<12} {'median s/step':>14} {'speed-up':>9} {'peak RSS MB':>12} {'step RSS MB':>12}")
    for r in rows:
        print(f"{r['setting']:<12} {r['median_s']:>14.3f} {r['speedup_vs_whole']:>8.2f}x "
              f"{r['peak_rss_mb']:>12.0f} {r['step_rss_mb']:>12.0f}")
    print(f"(a process that only loads the VAE and the batch peaks at {base:.0f} MB)")
    out = REPO / "benchmarks" / "results" / "vae_decoder_crops.json"
    out.write_text(json.dumps({"batch": args.batch, "threads": args.threads, "repeats": args.repeats, "rows": rows,
                               "load_only_peak_rss_mb": base, "times_s": times}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
