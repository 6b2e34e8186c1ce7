"""Stage (iii) curriculum of the world critic build: the order of units and the examples of each step.

Units are TA facets (one Fig. 15 question per facet), then the reference-guided VQ (Fig. 17) and Phy (Fig. 16)
queries, then Vanilla (``vanilla``; ``vanilla:<TA facet>``: the Vanilla question whose "No" videos break that
facet only; ``vanilla-part:<facets>``: the Vanilla question about some facets' descriptions alone). Curriculum phase k trains its units (:data:`PHASES`; the first phase mixes the three facets
that the aligned visual tokens carry best) on half of the batch and replays the units of earlier phases on the other
half (``replay_share``); after the last phase, every dimension is drawn uniformly. 6% of the examples are caption
replays, and a ``format_share`` of the curriculum-phase examples come from any unit (so every answer format, e.g. the
Phy / VQ JSON, is learnt from the start even when a deadline ends the curriculum early).
Examples 2j and 2j+1 of a step share scene, unit and N_f and have opposite labels (Yes, No), so only the video
tells them apart. Training scenes come from the world's train split only.
"""

from __future__ import annotations

import random

from vidreward.world import critic_data as cd
from vidreward.world.critic_aux import aux_example, check_example, vanilla_check_example
from vidreward.world.render import RenderConfig
from vidreward.world.scene import SceneSpec, sample_scene
from vidreward.world.splits import split_of

#: curriculum phases, each a tuple of units: first the facets the aligned visual tokens carry (scene words and
#: colour, mixed: one facet per 400-step phase was not learnt from real visual tokens in session 7, while three mixed
#: facets were learnt in 1100-1500 steps from ideal tokens), then the reference-guided VQ (answered from the video
#: alone; the session-8 build, which had it third, never reached it), shape / size, physics, Vanilla, then what needs
#: positions over time (location, motion), which only the language model's M-RoPE holds
PHASES: tuple[tuple[str, ...], ...] = (("Environment", "Lighting", "Color Requirement"), ("vq",), ("Object(s)",),
                                       ("phy",), ("vanilla",), ("Object Location / Spatial Distribution",),
                                       ("Objects' Motion",))
#: every unit, in curriculum order
CURRICULUM: tuple[str, ...] = tuple(unit for units in PHASES for unit in units)


def unit_dimension(unit: str) -> tuple[str, str | None]:
    """(dimension, facet) of a curriculum unit: a TA facet key -> ("ta", key); ``"vanilla:<facet>"`` -> ("vanilla",
    facet), the Vanilla question with its "No" videos breaking that facet; ``"vanilla-part:<facets>"`` -> ("vanilla",
    unit), the Vanilla question about those facets' descriptions alone (:func:`critic_data.vanilla_part_facets`);
    "vq" / "phy" / "vanilla" -> (unit, None)."""
    if unit in cd.TA_FACETS:
        return "ta", unit
    if unit.startswith(cd.VANILLA_PART_PREFIX):
        cd.vanilla_part_facets(unit)  # a clear error for an unknown facet
        return "vanilla", unit
    if unit.startswith(cd.VANILLA_UNIT_PREFIX):
        facet = unit[len(cd.VANILLA_UNIT_PREFIX):]
        if facet not in cd.BREAKS:
            raise ValueError(f"curriculum unit {unit!r}: {facet!r} is not a TA facet the world breaks "
                             f"({sorted(cd.BREAKS)})")
        return "vanilla", facet
    if unit not in ("vq", "phy", "vanilla"):
        raise ValueError(f"unknown curriculum unit {unit!r}; expected a TA facet, vq, phy, vanilla, "
                         f"{cd.VANILLA_UNIT_PREFIX}<TA facet> or {cd.VANILLA_PART_PREFIX}<TA facet>[+<TA facet>...]")
    return unit, None


def vision_tuning_phase(phases: tuple[tuple[str, ...], ...] = PHASES) -> int:
    """The curriculum phase from which stage (iii) also tunes the vision tower (image-quality and physics defects):
    the first that holds "vq" (or "phy"); after the last phase when neither is in a phase."""
    return next((k for k, units in enumerate(phases) if {"vq", "phy"} & set(units)), len(phases))
N_FRAMES_CHOICES: tuple[int, ...] = (10, 10, 10, 8, 6, 4)


def train_scene(rng: random.Random, num_frames: int) -> tuple[int, SceneSpec]:
    """A random scene of the world's train split (the held-out split is never trained on)."""
    while True:
        seed = rng.randrange(40_000_000)
        spec = sample_scene(seed, num_frames)
        if split_of(spec) == "train":
            return seed, spec


def curriculum_example(rng: random.Random, i: int, phase: int, short_share: float,
                       rcfg: RenderConfig, format_share: float = 0.0, aux_share: float = 0.0,
                       phases: tuple[tuple[str, ...], ...] = PHASES,
                       check_share: float = 0.0, replay_share: float = 0.5,
                       vanilla_check_share: float = 0.0) -> tuple[cd.CriticExample, int]:
    """(example, N_f) number ``i`` of a step of curriculum phase ``phase`` of ``phases``; ``rng`` is the step's
    generator for the pair ``i // 2``.

    ``short_share``: share of TA questions asked in the short warm-up form during the curriculum phases (a
    quarter of it in the mixed phase). ``aux_share``: share of TA examples answered with a keyed auxiliary answer
    instead (:mod:`.critic_aux`; both of a pair answer the same side, so a video-side pair names the two videos'
    different values). ``check_share``: share of those auxiliary examples answered with the check answer instead
    (:func:`.critic_aux.check_example`; drawn only when non-zero, so the other recipes' examples are unchanged).
    ``replay_share``: share of a later curriculum phase's examples (after the caption and format draws) that replay
    the units of earlier phases (0.5 in the session-10 and temporal recipes, 0.25 in the checks recipe).
    ``vanilla_check_share``: share of Vanilla examples asked and answered as a Vanilla check
    (:func:`.critic_aux.vanilla_check_example`; drawn only when non-zero).
    """
    seed, spec = train_scene(rng, rcfg.num_frames)
    n = rng.choice(N_FRAMES_CHOICES)
    if rng.random() < 0.06:
        return cd.make_example(spec, "caption", None, seed + i % 2, rcfg, n), n
    if phase < len(phases) and rng.random() < format_share:
        unit = rng.choice([u for units in phases for u in units])
    elif phase < len(phases):
        earlier = [u for units in phases[:phase] for u in units]
        unit = rng.choice(phases[phase]) if (phase == 0 or rng.random() < 1 - replay_share) else rng.choice(earlier)
    else:
        dim = rng.choice(cd.DIMENSIONS)
        unit = rng.choice(cd.TA_FACETS) if dim == "ta" else dim
    dim, facet = unit_dimension(unit)
    short = rng.random() < (short_share if phase < len(phases) else short_share / 4)
    ex = cd.make_example(spec, dim, ("Yes", "No")[i % 2], seed, rcfg, n, facet=facet, short=short)
    if dim == "ta" and rng.random() < aux_share:
        if check_share and rng.random() < check_share:
            ex = check_example(ex, rcfg)
        else:
            ex = aux_example(ex, rcfg, video_side=rng.random() < 0.5)
    if dim == "vanilla" and vanilla_check_share and rng.random() < vanilla_check_share:
        ex = vanilla_check_example(ex, rcfg)
    return ex, n
