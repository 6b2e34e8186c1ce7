"""Gran-DPO's data: the preference-pair JSONL (:class:`vidreward.halo.pairs.PreferencePair`) and the candidate
latents it references (format: :mod:`vidreward.halo.candidate_latents`), read into batches of winners and losers.

Every check fails before training with the item and the fix: a bad JSONL line, a patch grid other than the loss's,
a missing latent file, or a winner and loser that differ in prompt or shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from vidreward.halo.candidate_latents import candidate_latent_path, load_candidate_latents
from vidreward.halo.pairs import PreferencePair


def read_pairs(path: str | Path, grid: tuple[int, int]) -> list[PreferencePair]:
    """Read the pairs JSONL; a bad line or a patch grid other than ``grid`` is an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data.pairs_path {path} does not exist; build it with `vidreward halo pairs`")
    pairs = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            pair = PreferencePair.from_dict(json.loads(line))
        except (json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"{path}:{lineno}: not a PreferencePair record ({err})") from err
        shape = (len(pair.patch_signs), len(pair.patch_signs[0]) if pair.patch_signs else 0)
        if shape != tuple(grid):
            raise ValueError(f"{path}:{lineno}: patch grid {shape} differs from loss.grid {list(grid)}; "
                             "score and pair with the same grid")
        pairs.append(pair)
    if not pairs:
        raise ValueError(f"{path} holds no pairs")
    return pairs


@dataclass
class PairBatch:
    """The tensors of ``B`` pairs: clean latents of winners and losers and their prompts."""

    winners: torch.Tensor  # [B, C, T', H', W']
    """x_0^w"""
    losers: torch.Tensor  # [B, C, T', H', W']
    """x_0^l"""
    prompts: list[str]
    """the prompt of each pair (winner and loser share it)"""


def load_pair_batch(pairs: list[PreferencePair], latents_dir: Path) -> PairBatch:
    """Read the latents of ``pairs``; winner and loser must share prompt and shape, and so must the batch."""
    winners, losers, prompts = [], [], []
    for pair in pairs:
        w, w_meta = load_candidate_latents(candidate_latent_path(latents_dir, pair.prompt_id, pair.winner_id))
        lo, l_meta = load_candidate_latents(candidate_latent_path(latents_dir, pair.prompt_id, pair.loser_id))
        if w.shape != lo.shape or w_meta["prompt"] != l_meta["prompt"]:
            raise ValueError(f"pair {pair.winner_id}/{pair.loser_id} of prompt {pair.prompt_id!r}: winner and "
                             f"loser differ in latent shape ({tuple(w.shape)} vs {tuple(lo.shape)}) or prompt")
        winners.append(w)
        losers.append(lo)
        prompts.append(w_meta["prompt"])
    if len({tuple(w.shape) for w in winners}) != 1:
        raise ValueError("pairs in one batch have different latent shapes; use train.batch_size=1 or one resolution")
    return PairBatch(torch.stack(winners), torch.stack(losers), prompts)


def check_latents_exist(pairs: list[PreferencePair], latents_dir: Path) -> None:
    """Fail before training when any referenced candidate file is missing (names the first few)."""
    missing = [str(p) for pair in pairs for cid in (pair.winner_id, pair.loser_id)
               if not (p := candidate_latent_path(latents_dir, pair.prompt_id, cid)).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} candidate latent files are missing, e.g. {missing[:3]}; "
                                f"set data.latents_dir or re-run `vidreward halo sample`")
