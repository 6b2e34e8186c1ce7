"""Training and held-out examples for the world critic: rendered and corrupted renders only, labelled by construction.

Each example is (video[, reference], question, answer) with the questions of ``critics/queries.py`` (Figs. 15-17),
the Vanilla question (``vanilla_question``), and answers in the exact JSON of ``annotate.records.canonical_answer``
with a short templated explanation (:mod:`.critic_answers`). Labels come from how the video was made, never from
the oracle:

- **TA** (one facet of the caption's decomposition): Yes for a clean render, or for a render whose corruption
  leaves that facet intact (e.g. the Lighting facet of a wrong-colour video); No when the corruption breaks it
  (``wrong_color`` -> Color Requirement, ``wrong_shape`` or a size swap -> Object(s), ``wrong_motion`` -> Objects'
  Motion, ``wrong_position`` -> Location, another background -> Environment, other lighting -> Lighting).
- **Phy** (reference second): the key of a physics corruption is Yes (``deformation`` -> abnormal deformation,
  ``teleport`` -> abnormal motion, ``interpenetration`` -> unnatural interpenetration), every other key No.
- **VQ** (reference second): "has obvious defect" Yes for noise / blur / flicker, No otherwise.
- **Vanilla**: Yes for renders of the caption (clean, or noisy/blurred), No when a facet is broken.

The reference is a render of the same facets with fresh start jitter (a caption-matched video, not a copy).
Yes and No are drawn with equal probability in every dimension.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass

import torch

from vidreward.critics.queries import FACET_KEYS, phy_question, ta_question, vq_question
from vidreward.rewards.vanilla_drf import vanilla_question
from vidreward.world.captions import facet_dict, make_caption
from vidreward.world.corrupt import corrupt
from vidreward.world.critic_answers import (
    PHY_KEY,
    VQ_ISSUE,
    decision_offsets,
    phy_answer,
    ta_answer,
    vanilla_answer,
    vq_answer,
)
from vidreward.world.render import RenderConfig, render
from vidreward.world.scene import BACKGROUND_COLORS, LIGHTING, MAX_JITTER, SceneSpec, sample_scene
from vidreward.world.splits import first_scene_of_split

#: TA facets the world states (the other two are always "Not explicitly stated.")
TA_FACETS: tuple[str, ...] = tuple(k for k in FACET_KEYS if k not in ("Letter/Text Presence", "Camera Motion"))
#: TA facet -> the corruptions / edits that break it
BREAKS: dict[str, tuple[str, ...]] = {
    "Environment": ("background",),
    "Object(s)": ("wrong_shape", "size"),
    "Objects' Motion": ("wrong_motion",),
    "Object Location / Spatial Distribution": ("wrong_position",),
    "Color Requirement": ("wrong_color",),
    "Lighting": ("lighting",),
}
#: TA facet -> corruptions that leave it intact (used for the harder Yes cases)
KEEPS: dict[str, tuple[str, ...]] = {
    "Environment": ("wrong_color", "wrong_shape", "wrong_motion", "wrong_position", "size", "lighting"),
    "Object(s)": ("wrong_color", "wrong_motion", "wrong_position", "background", "lighting"),
    "Objects' Motion": ("wrong_position", "background", "lighting", "size"),
    "Object Location / Spatial Distribution": ("wrong_motion", "background", "lighting", "size"),
    "Color Requirement": ("wrong_motion", "wrong_position", "background", "lighting", "size"),
    "Lighting": ("wrong_color", "wrong_shape", "wrong_motion", "wrong_position", "background", "size"),
}
#: scene edits of :func:`edited_scene` (the corruptions of :mod:`corrupt` are the other sources)
EDITS: tuple[str, ...] = ("background", "lighting", "size")
SEMANTIC_EDITS: tuple[str, ...] = ("wrong_color", "wrong_shape", "wrong_motion", "wrong_position", "background",
                                   "lighting", "size")
#: curriculum unit of a Vanilla example whose "No" videos break one TA facet only: ``"vanilla:Color Requirement"``
VANILLA_UNIT_PREFIX = "vanilla:"
#: curriculum unit of a Vanilla example whose prompt is only some facets' descriptions, joined by "+":
#: ``"vanilla-part:Environment+Color Requirement"`` asks "The prompt is: \"A plain black background. The square is
#: yellow.\" Does this video match the prompt?..."
VANILLA_PART_PREFIX = "vanilla-part:"
CAPTION_QUESTION = "Describe this video in one sentence."
#: short TA question used to warm up the decision (the comparison of the description with the video)
SHORT_TA_QUESTION = "{key}: {description}?"
FACET_QUESTION = "Describe the {key} of this video."
#: the four dimensions the critic answers (plus "caption" for stage (ii))
DIMENSIONS: tuple[str, ...] = ("ta", "phy", "vq", "vanilla")
HELD_OUT_SEED0 = 50_000_000


@dataclass
class CriticExample:
    """One (video[, reference], question, answer) example with its label."""

    dimension: str
    """"ta", "phy", "vq", "vanilla" or "caption\""""
    facet: str
    """curriculum unit: the TA facet key, the dimension, ``vanilla:<TA facet>`` or ``vanilla-part:<facets>``"""
    video: torch.Tensor
    """[F, 3, H, W] in [0, 1], the full render (the caller subsamples N_f frames)"""
    reference: torch.Tensor | None
    """[F, 3, H, W] caption-matched reference (Phy, VQ) or None"""
    question: str
    """the question text after the video(s)"""
    answer: str
    """the teacher-forced answer text"""
    label: str | None
    """"Yes" / "No" at the decision; None for captions"""
    decision_chars: list[int]
    """character offsets of every Yes/No decision word in ``answer``"""
    eval_char: int | None
    """offset of the decision scored for accuracy"""
    source: str
    """how the video was made: "clean" or a corruption / edit name"""
    scene: SceneSpec | None = None
    """the captioned scene (the video is ``make_video(scene, source, seed)``)"""
    seed: int = 0
    """the seed the video was made with"""
    reference_scene: SceneSpec | None = None
    """the scene the reference video renders (Phy, VQ)"""


def rejitter(spec: SceneSpec, rng: random.Random) -> SceneSpec:
    """The same facets with fresh start jitter (a caption-matched, non-identical scene)."""
    objs = tuple(dataclasses.replace(o, jitter=(rng.uniform(-MAX_JITTER, MAX_JITTER),
                                                rng.uniform(-MAX_JITTER, MAX_JITTER))) for o in spec.objects)
    return dataclasses.replace(spec, objects=objs)


def edited_scene(spec: SceneSpec, source: str, seed: int) -> SceneSpec:
    """``spec`` with a background / lighting / size edit (the negatives of those TA facets)."""
    rng = random.Random(f"critic-edit-{source}-{seed}")
    if source == "background":
        return dataclasses.replace(spec, background=rng.choice([b for b in BACKGROUND_COLORS if b != spec.background]))
    if source == "lighting":
        return dataclasses.replace(spec, lighting=next(k for k in LIGHTING if k != spec.lighting))
    if source == "size":
        i = rng.randrange(len(spec.objects))
        objs = list(spec.objects)
        objs[i] = dataclasses.replace(objs[i], size="large" if objs[i].size == "small" else "small")
        return dataclasses.replace(spec, objects=tuple(objs))
    raise ValueError(f"unknown scene edit {source!r}; expected one of {EDITS}")


def make_video(spec: SceneSpec, source: str, seed: int, cfg: RenderConfig) -> torch.Tensor:
    """Render ``spec`` clean, with a :mod:`corrupt` corruption, or with a background / lighting / size edit."""
    if source == "clean":
        return render(spec, cfg)
    if source in EDITS:
        return render(edited_scene(spec, source, seed), cfg)
    return corrupt(spec, source, seed=seed, config=cfg)


def vanilla_part_facets(unit: str) -> tuple[str, ...]:
    """The TA facets of a ``vanilla-part:F1+F2`` unit, in order; a clear error for a facet the world does not break."""
    parts = tuple(unit[len(VANILLA_PART_PREFIX):].split("+"))
    unknown = [p for p in parts if p not in BREAKS]
    if not unit.startswith(VANILLA_PART_PREFIX) or unknown:
        raise ValueError(f"curriculum unit {unit!r}: expected {VANILLA_PART_PREFIX}<facet>[+<facet>...] with facets "
                         f"from {sorted(BREAKS)}")
    return parts


def make_example(spec: SceneSpec, dimension: str, label: str | None, seed: int, cfg: RenderConfig,
                 n_frames: int, facet: str | None = None, short: bool = False) -> CriticExample:
    """One example of ``dimension`` with the given label (Yes / No; None for "caption") for scene ``spec``.

    ``facet``: TA, the facet asked (default a drawn one); Vanilla, the facet a No video breaks (one of
    ``BREAKS[facet]``, and the example's unit is ``vanilla:<facet>``; default any of :data:`SEMANTIC_EDITS`), or a
    ``vanilla-part:<facets>`` unit (:func:`vanilla_part_facets`): the prompt is those facets' descriptions alone, a
    No video breaks one of them and a Yes video is clean, noisy, blurred, or edited where every one of them holds
    (:data:`KEEPS`); caption, the facet described.
    ``short`` (TA only, a training warm-up): the question is just the facet description and "?" (see
    :data:`SHORT_TA_QUESTION`) instead of the Fig. 15 template; the answer is the same JSON.
    """
    rng = random.Random(f"critic-example-{dimension}-{label}-{seed}")
    caption = make_caption(spec, style=rng.randrange(1000))
    facets = facet_dict(spec.facets())
    reference = None
    if dimension == "caption":
        key = facet or rng.choice(("caption",) + TA_FACETS)
        source = rng.choice(("clean", "clean", "noise", "blur"))
        video = make_video(spec, source, seed, cfg)
        if key == "caption":
            return CriticExample("caption", "caption", video, None, CAPTION_QUESTION, caption, None, [], None, source,
                                 spec, seed)
        return CriticExample("caption", key, video, None, FACET_QUESTION.format(key=key), facets[key], None, [],
                             None, source, spec, seed)
    if dimension == "ta":
        key = facet or rng.choice(TA_FACETS)
        if label == "No":
            source = rng.choice(BREAKS[key])
        else:
            source = rng.choice(("clean", "clean", "noise", "blur") + KEEPS[key])
        question = SHORT_TA_QUESTION.format(key=key, description=facets[key].strip().rstrip(".")) if short \
            else ta_question(key, facets[key])
        answer = ta_answer(label, facets[key].strip().rstrip("."))
    elif dimension == "phy":
        key = "phy"
        if label == "Yes":
            source = rng.choice(tuple(PHY_KEY))
        else:
            source = rng.choice(("clean", "clean", "clean", "noise", "blur", "flicker") + SEMANTIC_EDITS[:4])
        question, answer = phy_question(caption, n_frames), phy_answer(source)
    elif dimension == "vq":
        key = "vq"
        if label == "Yes":
            source = rng.choice(tuple(VQ_ISSUE))
        else:
            source = rng.choice(("clean", "clean", "clean") + tuple(PHY_KEY) + SEMANTIC_EDITS[:4])
        question, answer = vq_question(n_frames), vq_answer(source)
    elif dimension == "vanilla" and facet and facet.startswith(VANILLA_PART_PREFIX):
        key, parts = facet, vanilla_part_facets(facet)
        keeps = [s for s in KEEPS[parts[0]] if all(s in KEEPS[p] for p in parts)]
        source = rng.choice([s for p in parts for s in BREAKS[p]]) if label == "No" \
            else rng.choice(["clean", "clean", "noise", "blur", *keeps])
        question = vanilla_question(" ".join(facets[p].strip() for p in parts))
        answer = vanilla_answer(label, source)
    elif dimension == "vanilla":
        key = f"{VANILLA_UNIT_PREFIX}{facet}" if facet else "vanilla"
        breaks = BREAKS[facet] if facet else SEMANTIC_EDITS
        source = rng.choice(breaks) if label == "No" else rng.choice(("clean", "clean", "noise", "blur"))
        question, answer = vanilla_question(caption), vanilla_answer(label, source)
    else:
        raise ValueError(f"unknown critic dimension {dimension!r}; expected one of {DIMENSIONS} or 'caption'")
    video = make_video(spec, source, seed, cfg)
    reference_scene = None
    if dimension in ("phy", "vq"):
        reference_scene = rejitter(spec, rng)
        reference = render(reference_scene, cfg)
    decisions = [0] if dimension == "vanilla" else decision_offsets(answer)
    if dimension == "phy":
        eval_key = PHY_KEY[source] if label == "Yes" else rng.choice(tuple(PHY_KEY.values()))
        eval_char = answer.index(f'"{eval_key}": "') + len(f'"{eval_key}": "')
    else:
        eval_char = decisions[0]
    return CriticExample(dimension, key, video, reference, question, answer, label, decisions, eval_char, source,
                         spec, seed, reference_scene)


def held_out_examples(count_per_dimension: int, cfg: RenderConfig | None = None, n_frames: int = 10,
                      seed0: int = HELD_OUT_SEED0, dimensions: tuple[str, ...] = DIMENSIONS,
                      facet: str | None = None) -> list[CriticExample]:
    """A fixed, balanced held-out set: per dimension, alternating Yes/No, on scenes of the world's held-out split.

    Scenes are the held-out-split scenes (``splits.split_of``) among seeds ``seed0, seed0 + 1, ...``; the build
    trains on train-split scenes only, so these facet combinations are never seen in training. ``facet`` (with
    ``dimensions=("ta",)``) asks every TA question about that facet instead of a drawn one.
    """
    cfg = cfg or RenderConfig()
    out, seed = [], seed0
    for dim in dimensions:
        for i in range(count_per_dimension):
            seed, spec = first_scene_of_split(seed, "heldout", cfg.num_frames)
            out.append(make_example(spec, dim, ("Yes", "No")[i % 2], seed, cfg, n_frames, facet=facet))
            seed += 1
    return out


def text_corpus(num_scenes: int, n_frames_options: tuple[int, ...] = (4, 6, 8, 10)) -> list[str]:
    """World text for the tokenizer: captions, decompositions, every question and answer form."""
    texts = [CAPTION_QUESTION, *(FACET_QUESTION.format(key=k) for k in TA_FACETS)]
    texts += [phy_answer(s) for s in ("clean", *PHY_KEY)] + [vq_answer(s) for s in ("clean", *VQ_ISSUE)]
    texts += [vanilla_answer("Yes", "clean")] + [vanilla_answer("No", s) for s in SEMANTIC_EDITS]
    texts += [vq_question(n) for n in n_frames_options]
    texts = texts * 20  # the fixed texts recur in every batch: let BPE merge their words
    for seed in range(num_scenes):
        spec = sample_scene(seed)
        caption = make_caption(spec, style=seed)
        facets = facet_dict(spec.facets())
        texts += [caption, json.dumps(facets), vanilla_question(caption), phy_question(caption, 10)]
        for key in TA_FACETS:
            texts += [ta_question(key, facets[key]), ta_answer("Yes", facets[key]), ta_answer("No", facets[key])]
    return texts
