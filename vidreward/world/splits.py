"""Deterministic train and held-out prompts of the world.

Scene ``seed`` i (``scene.sample_scene(i)``) belongs to the held-out split when the SHA-256 of its facet key
(background, lighting and every object's size/colour/shape/cell/motion; not the render jitter) falls in the
lowest ``HELDOUT_PERMILLE`` / 1000 of the hash range, otherwise to train. So a held-out prompt never states the
same facets as a train prompt, and both lists are the same on every machine. Captions use style = seed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from vidreward.world.captions import make_caption
from vidreward.world.scene import SceneSpec, sample_scene

HELDOUT_PERMILLE: int = 100
SPLITS: tuple[str, ...] = ("train", "heldout")


@dataclass(frozen=True)
class WorldPrompt:
    """One prompt of a split, with the scene it was written from."""

    seed: int
    """scene seed (``sample_scene(seed, num_frames)``)"""
    caption: str
    """the prompt text"""
    spec: SceneSpec
    """the scene, including render jitter (for rendering references; never shown to a judge)"""


def split_of(spec: SceneSpec) -> str:
    """"heldout" or "train", from the hash of the spec's facets."""
    digest = hashlib.sha256(spec.facets().key().encode()).digest()
    return "heldout" if int.from_bytes(digest[:4], "big") % 1000 < HELDOUT_PERMILLE else "train"


def first_scene_of_split(seed: int, split: str, num_frames: int = 9) -> tuple[int, SceneSpec]:
    """(seed, scene) of the first scene of ``split`` among seeds ``seed, seed + 1, ...``."""
    spec = sample_scene(seed, num_frames=num_frames)
    while split_of(spec) != split:
        seed += 1
        spec = sample_scene(seed, num_frames=num_frames)
    return seed, spec


def world_prompts(split: str, count: int, num_frames: int = 9, start_seed: int = 0) -> list[WorldPrompt]:
    """The first ``count`` prompts of ``split`` among scene seeds ``start_seed, start_seed + 1, ...``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    out: list[WorldPrompt] = []
    seed = start_seed
    while len(out) < count:
        prompt = _prompt_of(seed, num_frames)
        if split_of(prompt.spec) == split:
            out.append(prompt)
        seed += 1
    return out


def _prompt_of(seed: int, num_frames: int) -> WorldPrompt:
    """The prompt of scene ``seed`` (caption style = seed)."""
    spec = sample_scene(seed, num_frames=num_frames)
    return WorldPrompt(seed=seed, caption=make_caption(spec, style=seed), spec=spec)


#: fresh train scenes are drawn from seeds in [FRESH_SEED_START, 2**31), away from the listed pools' low seeds
FRESH_SEED_START: int = 100_000_000


def fresh_train_prompts(rng, count: int, num_frames: int = 9) -> list[WorldPrompt]:
    """``count`` train-split prompts of scene seeds drawn from ``rng`` (a ``numpy.random.Generator``), held-out
    seeds rejected: an unbounded train stream (a fixed pool of a few thousand renders lets a tiny VAE memorise
    it) that is still a pure function of the generator's state, so a resumed build draws the same scenes."""
    out: list[WorldPrompt] = []
    while len(out) < count:
        prompt = _prompt_of(int(rng.integers(FRESH_SEED_START, 2**31)), num_frames)
        if split_of(prompt.spec) == "train":
            out.append(prompt)
    return out
