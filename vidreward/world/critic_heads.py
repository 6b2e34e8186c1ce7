"""Stage (i) classification heads of the world critic build: what the word alignment cannot say with one word.

The word alignment (:mod:`.critic_align`) names each merged token's static attributes. Motion, physics violations
and image-quality defects are properties over time or of the whole clip, so they get linear classification heads
on the vision tower's merged tokens (as the issue's stage (i) asks: heads on pooled merged tokens):

- ``motion`` (per token, 6 classes of :data:`scene.MOTIONS`): on the tokens that hold exactly one object, that
  object's measured motion (:func:`critic_concepts.track_motion`);
- ``start`` (per token, 2 classes): does an object cover the token in the first frame of its temporal patch
  (:data:`critic_concepts.AT_PATCH_START`)? With a whole clip in one patch, the start position a Location facet
  names;
- ``physics`` (per video, mean-pooled tokens; clean / deformation / teleport / interpenetration);
- ``quality`` (per video, mean-pooled tokens; clean / noise / blur / flicker).

The loss is the sum of the three cross-entropies (a head without a target in the batch adds 0). The heads train
the tower only; they are dropped at export (the language model learns to read the tokens in stages (ii)-(iii)).
"""

from __future__ import annotations

import torch

from vidreward.world.critic_concepts import AT_PATCH_START, MOTION_PREFIX
from vidreward.world.scene import MOTIONS

PHYSICS_CLASSES: tuple[str, ...] = ("clean", "deformation", "teleport", "interpenetration")
QUALITY_CLASSES: tuple[str, ...] = ("clean", "noise", "blur", "flicker")


def video_class(source: str, classes: tuple[str, ...]) -> int:
    """Index of ``source`` in ``classes``; a source outside them (another kind of defect) counts as ``clean`` (0)."""
    return classes.index(source) if source in classes else 0


def token_motion_targets(concepts: list[set[str]]) -> torch.Tensor:
    """Per token, the index in :data:`MOTIONS` of its one motion label, -100 without exactly one: ``[N]``."""
    out = []
    for words in concepts:
        moves = {w[len(MOTION_PREFIX):] for w in words if w.startswith(MOTION_PREFIX)}
        out.append(MOTIONS.index(next(iter(moves))) if len(moves) == 1 else -100)
    return torch.tensor(out, dtype=torch.long)


class AttributeHeads(torch.nn.Module):
    """Linear heads over merged tokens (``dim`` = the text hidden size): motion and start per token, physics and
    quality per video."""

    def __init__(self, dim: int):
        super().__init__()
        self.motion = torch.nn.Linear(dim, len(MOTIONS))
        self.start = torch.nn.Linear(dim, 2)
        self.physics = torch.nn.Linear(dim, len(PHYSICS_CLASSES))
        self.quality = torch.nn.Linear(dim, len(QUALITY_CLASSES))

    def logits(self, tokens: torch.Tensor, counts: list[int]) -> dict[str, torch.Tensor]:
        """``tokens [sum N, D]`` of videos with ``counts`` tokens each -> motion ``[sum N, 6]``, start ``[sum N, 2]``,
        physics and quality ``[B, 4]`` (mean over each video's tokens)."""
        pooled = torch.stack([t.mean(dim=0) for t in tokens.split(counts)])  # [B, D]
        return {"motion": self.motion(tokens), "start": self.start(tokens), "physics": self.physics(pooled),
                "quality": self.quality(pooled)}

    def targets(self, concepts: list[list[set[str]]], sources: list[str]) -> dict[str, torch.Tensor]:
        """Targets of :meth:`logits` from per-video token concepts and the videos' sources."""
        flat = [w for per_video in concepts for w in per_video]
        return {"motion": token_motion_targets(flat),
                "start": torch.tensor([int(AT_PATCH_START in words) for words in flat]),
                "physics": torch.tensor([video_class(s, PHYSICS_CLASSES) for s in sources]),
                "quality": torch.tensor([video_class(s, QUALITY_CLASSES) for s in sources])}

    def loss(self, tokens: torch.Tensor, concepts: list[list[set[str]]], sources: list[str]) -> torch.Tensor:
        """Sum over the heads of the mean cross-entropy on their targets (0 for a head with none)."""
        logits = self.logits(tokens, [len(c) for c in concepts])
        total = tokens.new_zeros(())
        for name, target in self.targets(concepts, sources).items():
            if (target >= 0).any():
                total = total + torch.nn.functional.cross_entropy(logits[name], target, ignore_index=-100)
        return total

    @torch.no_grad()
    def accuracy(self, tokens: torch.Tensor, concepts: list[list[set[str]]], sources: list[str]
                 ) -> dict[str, float]:
        """Balanced accuracy (mean per-class recall over the classes present) of each head."""
        logits = self.logits(tokens, [len(c) for c in concepts])
        out = {}
        for name, target in self.targets(concepts, sources).items():
            pred = logits[name].argmax(dim=1)
            recalls = [float((pred[target == k] == k).float().mean()) for k in target.unique().tolist() if k >= 0]
            if recalls:
                out[f"head_{name}"] = round(sum(recalls) / len(recalls), 3)
        return out
