"""Experiment: what do a world critic's visual tokens hold? Linear probes on its vision tower's merged tokens.

The build's align stage reports per-token accuracy through the word scores (shape 0.55, quality 0.49 for the
session-8 critic). This asks whether the tokens hold the information at all, whatever the word scores say: it
renders ``--videos`` train-split scenes and as many held-out ones, each clean or with one image-quality defect
(``noise`` / ``blur`` / ``flicker``, :func:`vidreward.world.critic_data.make_video`), takes the vision tower's
merged tokens (:func:`vidreward.world.critic_align.merged_tokens`, 10 frames) and fits softmax regressions
(AdamW, 300 full-batch steps, weight decay 1e-3) on standardised features for:

- ``quality`` (4 classes: clean, noise, blur, flicker), from each video's [mean, max] over its tokens;
- ``shape`` (3 classes) of the first object, from the mean over the tokens its mask covers most in frame 0's
  temporal patch (the token with the largest share of the object, :func:`critic_concepts.token_concepts` grid).

It prints train / held-out accuracy per probe (chance: 0.25 / 0.33) and writes them to ``--out``.

    .venv/bin/python scripts/experiments/critic_tower_probe.py --videos 400 --out runs/critic_tower_probe.json
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch

from vidreward.critics.vlm import VLMCritic
from vidreward.world.critic_align import merged_tokens
from vidreward.world.critic_build_config import ASSET_DIR
from vidreward.world.critic_concepts import MERGED_GRID
from vidreward.world.critic_data import make_video
from vidreward.world.motion import scene_tracks
from vidreward.world.render import RenderConfig, shape_masks
from vidreward.world.scene import SHAPES, sample_scene
from vidreward.world.splits import split_of

SOURCES: tuple[str, ...] = ("clean", "noise", "blur", "flicker")
N_FRAMES = 10


def scenes(split: str, count: int, seed0: int, cfg: RenderConfig):
    """``count`` (spec, source, seed) of ``split``, the sources in turn."""
    out, seed = [], seed0
    while len(out) < count:
        spec = sample_scene(seed, cfg.num_frames)
        if split_of(spec) == split:
            out.append((spec, SOURCES[len(out) % len(SOURCES)], seed))
        seed += 1
    return out


def features(critic, items, cfg: RenderConfig) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """Video features [N, 2D], object-token features [N, D], quality labels [N], shape labels [N]."""
    vid_feats, obj_feats, quality, shape = [], [], [], []
    per_patch = MERGED_GRID**2
    cell = cfg.height / MERGED_GRID
    for spec, source, seed in items:
        video = make_video(spec, source, seed, cfg)  # [F, 3, H, W]
        with torch.no_grad():
            tokens = merged_tokens(critic.model, critic.encoder, [video], [N_FRAMES], critic.fps)  # [T * 9, D]
        vid_feats.append(torch.cat([tokens.mean(0), tokens.max(0).values]))
        mask = shape_masks(scene_tracks(spec, cfg.num_frames, cfg.height, cfg.width)[0], cfg.height, cfg.width)[0]
        ys, xs = np.nonzero(mask)
        rows, cols = (ys / cell).astype(int), (xs / cell).astype(int)
        best = np.bincount(rows * MERGED_GRID + cols, minlength=per_patch).argmax()
        obj_feats.append(tokens[best])
        quality.append(SOURCES.index(source))
        shape.append(SHAPES.index(spec.objects[0].shape))
    return torch.stack(vid_feats), torch.stack(obj_feats), np.array(quality), np.array(shape)


def probe(x_train: torch.Tensor, y_train: np.ndarray, x_test: torch.Tensor, y_test: np.ndarray) -> dict:
    """Softmax regression on standardised features; train / held-out accuracy."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    a, b = (x_train - mean) / std, (x_test - mean) / std
    classes = int(max(y_train.max(), y_test.max())) + 1
    torch.manual_seed(0)
    linear = torch.nn.Linear(a.shape[1], classes)
    opt = torch.optim.AdamW(linear.parameters(), lr=1e-2, weight_decay=1e-3)
    target = torch.from_numpy(y_train)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(linear(a), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        train_acc = float((linear(a).argmax(1) == target).float().mean())
        test_acc = float((linear(b).argmax(1) == torch.from_numpy(y_test)).float().mean())
    return {"train": round(train_acc, 3), "heldout": round(test_acc, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--critic", default=str(ASSET_DIR), help="critic save_pretrained dir (default: shipped)")
    parser.add_argument("--videos", type=int, default=400, help="videos per split")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    random.seed(0)
    cfg = RenderConfig()
    critic = VLMCritic.from_pretrained(args.critic)
    train = features(critic, scenes("train", args.videos, 70_000_000, cfg), cfg)
    test = features(critic, scenes("heldout", args.videos, 80_000_000, cfg), cfg)
    result = {"critic": args.critic, "videos_per_split": args.videos,
              "quality": probe(train[0], train[2], test[0], test[2]),
              "shape": probe(train[1], train[3], test[1], test[3])}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
