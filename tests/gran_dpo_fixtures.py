"""Shared by the Gran-DPO trainer tests: three hand-set pairs, their candidate latents on disk, a tiny config."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vidreward.config import from_dict
from vidreward.halo.candidate_latents import candidate_latent_path, save_candidate_latents
from vidreward.halo.pairs import PreferencePair
from vidreward.train.gran_dpo_config import GranDPOConfig

LATENT = (16, 2, 8, 6)  # [C, T', H', W']: 8 rows split 3 ways leave a remainder (2, 2, 4)
PROMPTS = {"p0": "a red ball moves left", "p1": "a blue square falls down"}

# Three hand-set pairs. At step 1 the fresh LoRA (B = 0) makes policy == reference, so every DPO logit is 0 and
# every active term is log 2: video_loss = mean_b(w_V |s_V|) log 2, patch_loss = mean_b(sum_ij |F_ij| w_ij) log 2.
PAIRS = [
    dict(prompt_id="p0", winner_id="c0", loser_id="c1", video_sign=1, video_weight=0.5,
         patch_signs=[[1, -1, 0], [1, 1, 1], [0, 0, -1]],
         patch_weights=[[1.0, 0.25, 0.0], [0.5, 1.0, 1.0], [0.0, 0.0, 0.75]]),  # sum |F| w = 4.5, sum |F| = 6
    dict(prompt_id="p0", winner_id="c0", loser_id="c2", video_sign=1, video_weight=1.0,
         patch_signs=[[1, 1, 1], [1, 1, 1], [1, 1, 1]],
         patch_weights=[[1.0] * 3] * 3),  # sum |F| w = 9, sum |F| = 9
    dict(prompt_id="p1", winner_id="c0", loser_id="c1", video_sign=0, video_weight=0.0,  # a video tie
         patch_signs=[[1, 0, 0], [0, -1, 0], [0, 0, 0]],
         patch_weights=[[0.5, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]),  # sum |F| w = 1.5, sum |F| = 2
]


def write_data(root: Path, pairs=PAIRS, nan_candidates: tuple[tuple[str, str], ...] = ()) -> Path:
    """Random latents for every candidate (NaN-filled for ``nan_candidates``) and the pairs JSONL."""
    for prompt_id, prompt in PROMPTS.items():
        for i in range(3):
            latents = torch.randn(LATENT, generator=torch.Generator().manual_seed(10 * int(prompt_id[1:]) + i))
            if (prompt_id, f"c{i}") in nan_candidates:
                latents = torch.full(LATENT, float("nan"))
            save_candidate_latents(candidate_latent_path(root / "latents", prompt_id, f"c{i}"), latents, prompt,
                                   prompt_id, f"c{i}", seed=i)
    lines = []
    for p in pairs:
        margins = [[0.4 * s * w for s, w in zip(rs, rw)] for rs, rw in zip(p["patch_signs"], p["patch_weights"])]
        pair = PreferencePair(video_reward_winner=3.0, video_reward_loser=3.0 - 0.2 * p["video_sign"],
                              video_margin=0.2 * p["video_sign"], patch_margins=margins, kept_by=["video"], **p)
        lines.append(json.dumps(pair.to_dict()))
    (root / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    return root / "pairs.jsonl"


def tiny_config(wan: Path, pairs: Path, out: Path, **overrides) -> GranDPOConfig:
    """A Gran-DPO config on the tiny Wan at ``wan`` that steps in about a second; ``overrides`` are dotted keys."""
    data = {
        "output_dir": str(out), "seed": 5,
        "generator": {"family": "wan", "path": str(wan), "max_sequence_length": 16,
                      "lora": {"rank": 4, "alpha": 4.0, "init_seed": 0}},
        "data": {"pairs_path": str(pairs), "shuffle": False},
        "optim": {"lr": 1e-3},
        "train": {"max_steps": 2, "batch_size": 3, "checkpoint_every": 1, "keep_last": 10},
        "logging": {"tensorboard": False},
    }
    for key, value in overrides.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return from_dict(GranDPOConfig, data)
