"""Stage (i) of the world critic build alone, scored per image-quality defect on the tokens that can show it.

The build's stage (i) accuracy (``critic_align.align_accuracy``) pools noise, blur and flicker into one "quality"
group and, in the shipped recipe, counts blur on flat tokens and flicker on patches of two shifted frames, which no
vision tower that sees one temporal patch can tell apart from clean ones. This script trains stage (i) exactly as
``build_critic.run_build`` does (same seed, batches and optimizer) with the labelling of ``--visible-defects`` on or
off, and scores every arm on one held-out set labelled with visible defects only: per defect, the share of its
tokens whose top quality word is right, and the object groups (colour, shape, size) as a check that nothing else
got worse (``critic_align.align_accuracy``, whose quality group is also split by defect).

    .venv/bin/python scripts/experiments/critic_align_probe.py --steps 1500 [--visible-defects] --out FILE.json

``--temporal-patch T --physics --heads-weight W`` run stage (i) with T frames per temporal patch, physics
corruptions and the classification heads of ``critic_heads`` (motion, physics, quality; their balanced accuracy is
reported as ``head_*``); ``--group-weight G`` weighs the per-group (colour / shape / size) loss on object tokens.
``--highpass-channels K --highpass-gain G --patch-lr LR`` start K patch filters as high-pass ones
(``critic_quality_probe.highpass_init``) and train the patch embedding at LR (session 20's quality probe).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from critic_quality_probe import highpass_init  # this script's directory

from vidreward.critics.vlm import VLMCritic
from vidreward.world import critic_data as cd
from vidreward.world.build_critic import align_step
from vidreward.world.critic_align import WordAlignment, align_accuracy, align_sample, concept_token_ids
from vidreward.world.critic_build_config import CriticBuildConfig
from vidreward.world.critic_heads import AttributeHeads
from vidreward.world.critic_model import CriticArch, save_initial_critic
from vidreward.world.render import RenderConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--visible-defects", action="store_true", help="train with CriticBuildConfig."
                        "align_visible_defects (default: the shipped labelling)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--temporal-patch", type=int, default=2, help="CriticArch.temporal_patch_size")
    parser.add_argument("--physics", action="store_true", help="CriticBuildConfig.align_physics")
    parser.add_argument("--heads-weight", type=float, default=0.0, help="CriticBuildConfig.align_heads_weight")
    parser.add_argument("--group-weight", type=float, default=1.0, help="CriticBuildConfig.align_group_weight")
    parser.add_argument("--highpass-channels", type=int, default=0, help="critic_quality_probe.highpass_init filters")
    parser.add_argument("--highpass-gain", type=float, default=1.0, help="their norm over the replaced filters'")
    parser.add_argument("--patch-lr", type=float, default=None, help="the patch embedding's lr (default: align_lr)")
    parser.add_argument("--out", required=True, help="JSON of the evaluations")
    args = parser.parse_args()
    cfg = CriticBuildConfig(align_visible_defects=args.visible_defects, align_physics=args.physics,
                            align_heads_weight=args.heads_weight, align_group_weight=args.group_weight,
                            arch=CriticArch(temporal_patch_size=args.temporal_patch))
    torch.set_num_threads(args.threads)
    torch.manual_seed(cfg.seed)
    rcfg = RenderConfig()
    with tempfile.TemporaryDirectory() as init_dir:  # loaded back as the build does (processor pixel budget)
        save_initial_critic(init_dir, cd.text_corpus(2000), cfg.arch, cfg.seed)
        critic = VLMCritic.from_pretrained(init_dir)
    model = critic.model
    align = WordAlignment(concept_token_ids(critic.tokenizer))
    heads = AttributeHeads(cfg.arch.text_hidden)
    params = list(model.model.visual.parameters()) + [model.get_input_embeddings().weight] + list(align.parameters())
    params += list(heads.parameters()) if args.heads_weight else []
    for p in params:
        p.requires_grad_(True)
    if args.highpass_channels:
        highpass_init(model.model.visual.patch_embed.proj, args.highpass_channels, args.highpass_gain)
    patch = list(model.model.visual.patch_embed.parameters())
    groups = [{"params": [p for p in params if all(p is not q for q in patch)], "lr": cfg.align_lr},
              {"params": patch, "lr": cfg.align_lr if args.patch_lr is None else args.patch_lr}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.align_lr, weight_decay=0.0)
    val = [align_sample(90_000_000 + 1000 * i, rcfg, 10, "heldout", True, args.temporal_patch, args.physics)
           for i in range(96)]
    history, t0 = [], time.time()
    for step in range(1, args.steps + 1):
        loss = align_step(cfg, step - 1, critic, align, heads, optimizer, rcfg)
        if step % args.eval_every == 0 or step == args.steps:
            acc = align_accuracy(model, align, critic.encoder, val, critic.fps, heads if args.heads_weight else None)
            history.append({"step": step, "loss": round(loss, 4), "minutes": round((time.time() - t0) / 60, 1),
                            **acc})
            print(json.dumps(history[-1]), flush=True)
            Path(args.out).write_text(json.dumps({"args": vars(args), "history": history}, indent=1))


if __name__ == "__main__":
    main()
