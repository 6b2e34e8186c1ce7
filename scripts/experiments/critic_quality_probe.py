"""Experiment: can a world critic's vision tower learn to tell clean / noise / blur / flicker apart when trained for
exactly that?

Every critic built so far misses most of VQ's noise and blur videos (at most 4 and 3 of 16 in
``critic_facet_eval.py``) while it catches flicker (15-16 of 16), and stage (i)'s quality head ends near chance (``critic_build.json``: ``head_quality`` 0.33). This probe
takes the tower out of the build and asks it the one question directly: a fresh linear head on the mean of each
video's merged tokens (:func:`vidreward.world.critic_align.merged_tokens`, 10 frames, the build's path through the
Qwen processor), trained with softmax cross-entropy on balanced batches (16 videos, 4 per class, train split), and
scored on 96 balanced held-out-split videos, per class. Three arms (``--arm``):

- ``frozen``: the critic's tower frozen (only the head learns; lr 3e-3);
- ``tuned``: the critic's tower tuned with the head (tower lr 3e-4, the stage (iii) vision rate's order);
- ``fresh``: a freshly initialised tower of the shipped architecture, tuned with the head (tower lr 1e-3).

``--patch-lr`` sets the patch embedding's own learning rate in the tuned arms (0 freezes it). AdamW moves every weight
by about lr per step whatever its gradient's scale, and the patch embedding's weights start at std ~0.0075
(1 / sqrt(3 * 5880)), so at the tower's 1e-3 a step moves each of them by ~13% of that. ``--freeze-highpass``
trains the patch embedding except its high-pass filters.

``--highpass-channels K`` first re-initialises K output channels of the tower's patch embedding (``Conv3d`` over
``[T, 14, 14]`` pixels) as high-pass filters (:func:`highpass_init`), so that those channels answer noise and edges
but not flat colour (``--highpass-gain G``: with G times the norm of the filters they replace): does a tower that
starts with such filters find noise?

It also prints how far each defect moves the pixels the tower sees: the mean absolute difference of the processor's
``pixel_values_videos`` between a defective video and its clean render, against their standard deviation (averaged
over ``--pixel-videos`` train scenes), and with ``--highpass-channels`` the mean squared response of the high-pass
filters and of the others per class and scene (:func:`pixel_stats`).

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
from vidreward.world.critic_model import CriticArch, save_initial_critic
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
    with tempfile.TemporaryDirectory() as init_dir:  # loaded back as the build does (processor pixel budget)
        save_initial_critic(init_dir, cd.text_corpus(2000), CriticArch(temporal_patch_size=10), 0)
        return VLMCritic.from_pretrained(init_dir)


@torch.no_grad()
def highpass_init(conv: torch.nn.Conv3d, channels: int, gain: float = 1.0, seed: int = 0) -> None:
    """Re-initialise the first ``channels`` filters of ``conv`` (weight ``[C, 3, T, P, P]``, P even) with Gaussian
    weights minus their mean over each 2 x 2 pixel block of each frame and colour: a filter with zero sum over every
    block has zero response to any image constant on the blocks (flat colour), and its response to pixel noise of
    std sigma is sigma ||w||. Each filter gets ``gain`` times the norm of the filter it replaces."""
    weight = conv.weight  # [C, 3, T, P, P]
    c, rgb, t, p, _ = weight.shape
    gen = torch.Generator().manual_seed(seed)
    new = torch.randn((channels, rgb, t, p // 2, 2, p // 2, 2), generator=gen)
    new = (new - new.mean(dim=(4, 6), keepdim=True)).reshape(channels, rgb, t, p, p)
    norms = weight[:channels].flatten(1).norm(dim=1)  # [channels]
    weight[:channels] = new * (gain * norms / new.flatten(1).norm(dim=1)).view(-1, 1, 1, 1, 1)


@torch.no_grad()
def pixel_stats(critic: VLMCritic, cfg: RenderConfig, n_videos: int, highpass_channels: int = 0) -> dict:
    """What the tower is given, over ``n_videos`` train scenes rendered once per class: the clean pixel_values' std
    and the mean |pixel_values(defect) - pixel_values(clean)| per defect (averages over the scenes); with
    ``highpass_channels``, also per class the mean squared patch-embedding response of the first ``highpass_channels``
    (high-pass) filters and of the others, one pair per scene (``highpass_energy``: ``{"clean": [hp_0, rest_0, ...]}``)."""
    embed = critic.model.model.visual.patch_embed
    diffs = {c: 0.0 for c in CLASSES[1:]}
    energy: dict[str, list[float]] = {c: [] for c in CLASSES}
    std = 0.0
    for i in range(n_videos):
        pixels = {}
        for source in CLASSES:
            video = subsample_frames(quality_video(7_000_000 + 1000 * i, "train", source, cfg), N_FRAMES)
            pixels[source] = critic.encoder.encode([video], fps=critic.fps).model_kwargs["pixel_values_videos"]
            if highpass_channels:
                response = embed(pixels[source])  # [patches, C]
                energy[source] += [round(float(response[:, :highpass_channels].square().mean()), 4),
                                   round(float(response[:, highpass_channels:].square().mean()), 4)]
        std += float(pixels["clean"].std()) / n_videos
        for source in diffs:
            diffs[source] += float((pixels[source] - pixels["clean"]).abs().mean()) / n_videos
    stats = {"clean_std": round(std, 4), **{f"mean_abs_diff_{k}": round(v, 4) for k, v in diffs.items()}}
    return {**stats, "highpass_energy": energy} if highpass_channels else stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", choices=("frozen", "tuned", "fresh"), required=True)
    parser.add_argument("--critic", default=str(ASSET_DIR), help="critic dir for the frozen / tuned arms")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--pixel-videos", type=int, default=8)
    parser.add_argument("--highpass-channels", type=int, default=0, help="patch-embedding filters made high-pass")
    parser.add_argument("--highpass-gain", type=float, default=1.0, help="their norm over the filters' they replace")
    parser.add_argument("--patch-lr", type=float, default=-1.0, help="patch embedding's lr when the tower is tuned "
                        "(-1: the tower's; 0: frozen)")
    parser.add_argument("--freeze-highpass", action="store_true", help="train the patch embedding but not its "
                        "high-pass filters")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="JSON of the pixel shifts and the evaluations")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = RenderConfig()
    critic = load_critic(args.arm, args.critic)
    model = critic.model
    if args.highpass_channels:
        highpass_init(model.model.visual.patch_embed.proj, args.highpass_channels, args.highpass_gain)
    shift = pixel_stats(critic, cfg, args.pixel_videos, args.highpass_channels)
    print(json.dumps(shift), flush=True)
    head = torch.nn.Linear(model.config.text_config.hidden_size, len(CLASSES))
    model.requires_grad_(False)
    groups = [{"params": list(head.parameters()), "lr": 3e-3}]
    if args.arm != "frozen":
        model.model.visual.requires_grad_(True)
        patch = list(model.model.visual.patch_embed.parameters())
        rest = [p for p in model.model.visual.parameters() if all(p is not q for q in patch)]
        groups.append({"params": rest, "lr": 3e-4 if args.arm == "tuned" else 1e-3})
        if args.patch_lr != 0:
            groups.append({"params": patch, "lr": groups[-1]["lr"] if args.patch_lr < 0 else args.patch_lr})
            if args.freeze_highpass:  # zero gradient rows: AdamW (no weight decay) leaves those filters as they are
                hp = args.highpass_channels
                model.model.visual.patch_embed.proj.weight.register_hook(
                    lambda grad: torch.cat([torch.zeros_like(grad[:hp]), grad[hp:]]))
        else:
            model.model.visual.patch_embed.requires_grad_(False)
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
