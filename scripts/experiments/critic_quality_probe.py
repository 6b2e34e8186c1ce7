"""Experiment: can a world critic's vision tower learn to tell clean / noise / blur / flicker apart when trained for
exactly that?

Every shipped critic misses VQ's noise and blur videos (0 of 16 each in ``critic_facet_eval.py``) while it catches
flicker, and stage (i)'s quality head ends near chance (``critic_build.json``: ``head_quality`` 0.33). This probe
takes the tower out of the build and asks it the one question directly: a fresh linear head on the mean of each
video's merged tokens (:func:`vidreward.world.critic_align.merged_tokens`, 10 frames, the build's path through the
Qwen processor), trained with softmax cross-entropy on balanced batches (16 videos, 4 per class, train split), and
scored on 96 balanced held-out-split videos, per class. Three arms (``--arm``):

- ``frozen``: the critic's tower frozen (only the head learns; lr 3e-3);
- ``tuned``: the critic's tower tuned with the head (tower lr 3e-4, the stage (iii) vision rate's order);
- ``fresh``: a freshly initialised tower of the shipped architecture, tuned with the head (tower lr 1e-3).

It also prints how far each defect moves the pixels the tower sees: the mean absolute difference of the processor's
``pixel_values_videos`` between a defective video and its clean render, against their standard deviation (averaged
over ``--pixel-videos`` train scenes).

    .venv/bin/python scripts/experiments/critic_quality_probe.py --arm tuned --steps 300 [--critic DIR] --out F.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from vidreward.critics.vlm import VLMCritic
from vidreward.video_io import subsample_frames
from vidreward.world import critic_data as cd
from vidreward.world.critic_align import merged_tokens
from vidreward.world.critic_build_config import ASSET_DIR
from vidreward.world.critic_model import CriticArch, build_critic_model, train_tokenizer
from vidreward.world.render import RenderConfig
from vidreward.world.splits import first_scene_of_split

CLASSES: tuple[str, ...] = ("clean", "noise", "blur", "flicker")
N_FRAMES = 10
BATCH = 16


def quality_video(seed: int, split: str, source: str, cfg: RenderConfig) -> torch.Tensor:
    """The first ``split`` scene from ``seed`` on, rendered clean or with one pixel defect: ``[F, 3, H, W]``."""
    scene_seed, spec = first_scene_of_split(seed, split, cfg.num_frames)
    return cd.make_video(spec, source, scene_seed, cfg)


def load_critic(arm: str, critic_dir: str) -> VLMCritic:
    """The critic to probe: ``critic_dir``, or for ``fresh`` a new model of the shipped architecture (seed 0)."""
    if arm != "fresh":
        return VLMCritic.from_pretrained(critic_dir)
    tokenizer = train_tokenizer(cd.text_corpus(2000), CriticArch().vocab_size)
    model, processor = build_critic_model(tokenizer, CriticArch(temporal_patch_size=10), 0)
    with tempfile.TemporaryDirectory() as init_dir:  # loaded back as the build does (processor pixel budget)
        model.save_pretrained(init_dir, safe_serialization=True)
        processor.save_pretrained(init_dir)
        return VLMCritic.from_pretrained(init_dir)


def pixel_shift(critic: VLMCritic, cfg: RenderConfig, n_videos: int) -> dict[str, float]:
    """Mean |pixel_values(defect) - pixel_values(clean)| per defect, and the clean pixel_values' std."""
    diffs = {c: 0.0 for c in CLASSES[1:]}
    std = 0.0
    for i in range(n_videos):
        pixels = {}
        for source in CLASSES:
            video = subsample_frames(quality_video(7_000_000 + 1000 * i, "train", source, cfg), N_FRAMES)
            pixels[source] = critic.encoder.encode([video], fps=critic.fps).model_kwargs["pixel_values_videos"]
        std += float(pixels["clean"].std()) / n_videos
        for source in diffs:
            diffs[source] += float((pixels[source] - pixels["clean"]).abs().mean()) / n_videos
    return {"clean_std": round(std, 4), **{f"mean_abs_diff_{k}": round(v, 4) for k, v in diffs.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", choices=("frozen", "tuned", "fresh"), required=True)
    parser.add_argument("--critic", default=str(ASSET_DIR), help="critic dir for the frozen / tuned arms")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--pixel-videos", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="JSON of the pixel shifts and the evaluations")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = RenderConfig()
    critic = load_critic(args.arm, args.critic)
    model = critic.model
    shift = pixel_shift(critic, cfg, args.pixel_videos)
    print(json.dumps(shift), flush=True)
    head = torch.nn.Linear(model.config.text_config.hidden_size, len(CLASSES))
    model.requires_grad_(False)
    groups = [{"params": list(head.parameters()), "lr": 3e-3}]
    if args.arm != "frozen":
        model.model.visual.requires_grad_(True)
        groups.append({"params": list(model.model.visual.parameters()), "lr": 3e-4 if args.arm == "tuned" else 1e-3})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)

    def pooled(videos: list[torch.Tensor]) -> torch.Tensor:
        tokens = merged_tokens(model, critic.encoder, videos, [N_FRAMES] * len(videos), critic.fps)  # [B * N, D]
        return tokens.view(len(videos), -1, tokens.shape[-1]).mean(dim=1)  # [B, D]

    held_out = [(quality_video(91_000_000 + 1000 * i, "heldout", CLASSES[i % 4], cfg), i % 4) for i in range(96)]
    labels = torch.tensor([k for _, k in held_out])
    history, start = [], time.time()
    for step in range(1, args.steps + 1):
        classes = [(step * BATCH + j) % len(CLASSES) for j in range(BATCH)]
        videos = [quality_video(5_000_000 + step * BATCH + j, "train", CLASSES[k], cfg) for j, k in enumerate(classes)]
        loss = torch.nn.functional.cross_entropy(head(pooled(videos)), torch.tensor(classes))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            with torch.no_grad():
                predicted = head(pooled([v for v, _ in held_out])).argmax(dim=1)
            per_class = {c: round(float((predicted[labels == k] == k).float().mean()), 3) for k, c in enumerate(CLASSES)}
            history.append({"step": step, "loss": round(loss.item(), 3),
                            "minutes": round((time.time() - start) / 60, 2), **per_class})
            print(json.dumps(history[-1]), flush=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "pixel_shift": shift, "history": history}, indent=1))


if __name__ == "__main__":
    main()
