"""Auxiliary answers of the world critic's stage (iii): name one side of a TA comparison in a word.

A TA Yes/No answer is the XOR of what the question asks and what the video shows, so neither side gets a gradient
until both are read. An auxiliary example keeps a TA example's videos and question but is answered with one side
alone, keyed by the facet:

    "Video Lighting: dim"        (what the drawn video shows: the edited / corrupted scene's value)
    "Question Lighting: bright"  (what the prompt asks: the captioned scene's value)

Its value word is weighted like a decision token. With the question before the video, keyed auxiliary answers took
the text-form language model from 0.68 to 0.92-0.99 on Environment + Lighting + Colour trained together
(scripts/experiments/critic_text_lm.py, session 6). The value of an object facet is the first object's.

A **check** answer (:func:`check_example`) names what the video shows that the prompt does not ask:

    "Check Lighting: bright"     (the video is bright, the prompt asks for dim lighting)
    "Check Lighting: match"      (the video shows the facet as asked)

Unlike the Yes/No decision, which is an XOR of the two sides, its logits are linear in the two sides' one-hot
values: logit(value c) = a [video shows c] - b [prompt asks c] and a constant logit for "match" answer it exactly,
so the comparison gets a gradient before any product of the two sides is learnt.

A **Vanilla check** answer (:func:`vanilla_check_example`) asks the Vanilla question with another last sentence,
:data:`VANILLA_CHECK_INSTRUCTION` instead of "Answer Yes or No.", and answers the first check value over every
facet (:data:`VANILLA_CHECK_FACETS` order), ``Check: blue`` / ``Check: match``: the Vanilla decision is Yes exactly
when that value is "match". The Yes/No question keeps its first token, which Vanilla-DRF's reward reads (Eq. 1).
"""

from __future__ import annotations

import dataclasses

from vidreward.rewards.vanilla_drf import vanilla_question
from vidreward.world.captions import LOCATIONS
from vidreward.world.critic_concepts import video_scene
from vidreward.world.critic_data import CriticExample
from vidreward.world.render import RenderConfig
from vidreward.world.scene import SceneSpec


def facet_value(scene: SceneSpec, facet: str, index: int = 0) -> str:
    """The words of ``scene`` that a ``facet`` question names (object ``index``'s for the object facets, by default
    the first; a start cell's canonical caption phrase, :data:`captions.LOCATIONS`)."""
    obj = scene.objects[index]
    values = {"Environment": scene.background, "Lighting": scene.lighting, "Color Requirement": obj.color,
              "Object(s)": obj.shape, "Objects' Motion": obj.motion,
              "Object Location / Spatial Distribution": LOCATIONS[(obj.row, obj.col)][0]}
    if facet not in values:
        raise ValueError(f"no auxiliary value for facet {facet!r}; expected one of {sorted(values)}")
    return values[facet]


def check_value(prompt: SceneSpec, video: SceneSpec, facet: str) -> str:
    """The first value of ``facet`` that the ``video`` scene shows unlike the ``prompt`` scene, object by object (for
    Object(s) the shape, then the size: "circle", "large"), or ``"match"`` when every value is as asked."""
    if facet in ("Environment", "Lighting"):
        pairs = [(facet_value(prompt, facet), facet_value(video, facet))]
    elif facet == "Object(s)":
        pairs = [(getattr(a, key), getattr(b, key)) for a, b in zip(prompt.objects, video.objects)
                 for key in ("shape", "size")]
    else:
        pairs = [(facet_value(prompt, facet, k), facet_value(video, facet, k)) for k in range(len(prompt.objects))]
    return next((shown for asked, shown in pairs if shown != asked), "match")


#: the last sentence of a Vanilla check question (the Vanilla question ends "Answer Yes or No.")
VANILLA_CHECK_INSTRUCTION = "Answer with the first part of the prompt the video does not show."
#: facets in the order a Vanilla check answer compares them
VANILLA_CHECK_FACETS: tuple[str, ...] = ("Environment", "Lighting", "Color Requirement", "Object(s)",
                                         "Objects' Motion", "Object Location / Spatial Distribution")


def vanilla_check_value(prompt: SceneSpec, video: SceneSpec) -> str:
    """The first :func:`check_value` over :data:`VANILLA_CHECK_FACETS` that is not ``"match"``, else ``"match"``."""
    return next((v for v in (check_value(prompt, video, f) for f in VANILLA_CHECK_FACETS) if v != "match"), "match")


def vanilla_check_example(ex: CriticExample, rcfg: RenderConfig) -> CriticExample:
    """``ex`` (a Vanilla example) asked with :data:`VANILLA_CHECK_INSTRUCTION` and answered ``Check: <value>``
    (:func:`vanilla_check_value`; the value's first token weighs like a decision; unscored as a Yes/No)."""
    yes_no_tail = vanilla_question("").rsplit('"', 1)[1]  # the question after the quoted caption
    if ex.dimension != "vanilla" or ex.scene is None or not ex.question.endswith(yes_no_tail):
        raise ValueError(f"Vanilla check answers need a Vanilla example with its scene, not {ex.dimension!r}")
    question = ex.question[: -len(yes_no_tail)] + vanilla_question("", VANILLA_CHECK_INSTRUCTION).rsplit('"', 1)[1]
    value = vanilla_check_value(ex.scene, video_scene(ex.scene, ex.source, ex.seed, rcfg)[0])
    return _keyed_answer(dataclasses.replace(ex, question=question), "Check:", value)


def aux_heads(facet: str) -> tuple[str, str]:
    """The video-side and question-side answer prefixes of ``facet``: ``Video <facet>:`` / ``Question <facet>:``."""
    return f"Video {facet}:", f"Question {facet}:"


def aux_example(ex: CriticExample, rcfg: RenderConfig, video_side: bool,
                heads: tuple[str, str] | None = None) -> CriticExample:
    """``ex`` (a TA example) answered with the drawn video's (``video_side``) or the prompt's value of its facet,
    after the video-side or question-side prefix of ``heads`` (default: :func:`aux_heads` of the facet).

    The space before the value is the one decision character, so ``encode_batch`` weights the value's first token
    (" dim") like a decision; ``label`` and ``eval_char`` are None, so it is never scored as a Yes/No.
    """
    _require_ta(ex, "auxiliary")
    scene = video_scene(ex.scene, ex.source, ex.seed, rcfg)[0] if video_side else ex.scene
    return _keyed_answer(ex, (heads or aux_heads(ex.facet))[0 if video_side else 1], facet_value(scene, ex.facet))


def check_example(ex: CriticExample, rcfg: RenderConfig) -> CriticExample:
    """``ex`` (a TA example) answered with its check answer, ``Check <facet>: <value>`` (:func:`check_value`; the
    value's first token weighs like a decision; unscored as a Yes/No, like :func:`aux_example`)."""
    _require_ta(ex, "check")
    value = check_value(ex.scene, video_scene(ex.scene, ex.source, ex.seed, rcfg)[0], ex.facet)
    return _keyed_answer(ex, f"Check {ex.facet}:", value)


def _require_ta(ex: CriticExample, kind: str) -> None:
    if ex.dimension != "ta" or ex.scene is None:
        raise ValueError(f"{kind} answers need a TA example with its scene, not {ex.dimension!r}")


def _keyed_answer(ex: CriticExample, head: str, value: str) -> CriticExample:
    """``ex`` answered ``"<head> <value>"``: the space after the head is its one decision character; no Yes/No label."""
    return dataclasses.replace(ex, answer=f"{head} {value}", label=None, decision_chars=[len(head)], eval_char=None)
