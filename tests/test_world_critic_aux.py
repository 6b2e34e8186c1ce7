"""Keyed auxiliary answers of the critic's stage (iii): values by hand, the weighted token, the curriculum share."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from vidreward.world import critic_data as cd
from vidreward.world.critic_aux import (
    VANILLA_CHECK_INSTRUCTION,
    aux_example,
    check_example,
    check_value,
    facet_value,
    vanilla_check_example,
    vanilla_check_value,
)
from vidreward.world.critic_batch import encode_batch
from vidreward.world.critic_curriculum import curriculum_example, train_scene
from vidreward.world.render import RenderConfig
from vidreward.world.scene import ObjectSpec, SceneSpec

CFG = RenderConfig()
SCENE = SceneSpec(objects=(ObjectSpec("circle", "red", "large", 2, 0, "right"),), background="gray",
                  lighting="dim")


def test_facet_values_by_hand():
    assert [facet_value(SCENE, f) for f in ("Environment", "Lighting", "Color Requirement", "Object(s)",
                                            "Objects' Motion", "Object Location / Spatial Distribution")] == \
        ["gray", "dim", "red", "circle", "right", "bottom left"]
    centre = SceneSpec(objects=(ObjectSpec("square", "blue", "small", 1, 1, "up"),), background="black",
                       lighting="bright")
    middle_left = SceneSpec(objects=(ObjectSpec("square", "blue", "small", 1, 0, "up"),), background="black",
                            lighting="bright")
    # the captions' canonical phrases (captions.LOCATIONS), not "center center" / "center left"
    assert facet_value(centre, "Object Location / Spatial Distribution") == "center"
    assert facet_value(middle_left, "Object Location / Spatial Distribution") == "middle left"
    with pytest.raises(ValueError, match="Camera Motion"):
        facet_value(SCENE, "Camera Motion")


def test_video_side_names_the_drawn_scene_and_question_side_the_prompt():
    no = cd.make_example(SCENE, "ta", "No", 5, CFG, 10, facet="Lighting")  # a lighting edit: the video is bright
    assert no.source == "lighting"
    video_side, question_side = aux_example(no, CFG, True), aux_example(no, CFG, False)
    assert video_side.answer == "Video Lighting: bright"
    assert question_side.answer == "Question Lighting: dim"
    for ex in (video_side, question_side):
        assert ex.label is None and ex.eval_char is None and ex.answer[ex.decision_chars[0]] == " "
        assert torch.equal(ex.video, no.video) and ex.question == no.question
    with pytest.raises(ValueError, match="TA example"):
        aux_example(cd.make_example(SCENE, "vq", "No", 5, CFG, 10), CFG, True)


def test_encode_batch_weights_the_value_token_like_a_decision(tiny_world_critic):
    tok = tiny_world_critic.tokenizer
    yes = cd.make_example(SCENE, "ta", "Yes", 5, CFG, 10, facet="Color Requirement")
    aux = aux_example(cd.make_example(SCENE, "ta", "No", 5, CFG, 10, facet="Color Requirement"), CFG, True)
    batch = encode_batch(tiny_world_critic, [yes, aux], [4, 4], decision_weight=20.0)
    value = tok(" " + aux.answer.split(": ")[1], add_special_tokens=False)["input_ids"][0]
    heavy = (batch.weights[1] == 20.0).nonzero().flatten().tolist()
    assert len(heavy) == 1 and batch.labels[1, heavy[0]] == value  # the drawn (wrong) colour's first token
    assert batch.eval_pos[1] is None and batch.eval_pos[0] is not None
    assert int((batch.weights[0] == 20.0).sum()) == 1  # the Yes example: its decision only
    assert set(batch.weights[1][batch.labels[1] >= 0].tolist()) == {1.0, 20.0}


def test_curriculum_aux_share():
    def draw(share):
        return [curriculum_example(random.Random(f"s{k}"), k, 0, 0.0, CFG, aux_share=share)[0] for k in range(24)]

    none, every = draw(0.0), draw(1.0)
    assert all(e.label is not None for e in none if e.dimension == "ta")
    ta = [(a, b) for a, b in zip(none, every) if a.dimension == "ta"]
    assert ta and all(b.label is None and b.answer.split(":")[0] in (f"Video {a.facet}", f"Question {a.facet}")
                      for a, b in ta)
    assert all(torch.equal(a.video, b.video) for a, b in ta)  # same draws otherwise


def test_check_values_by_hand():
    two = SceneSpec(objects=(ObjectSpec("circle", "red", "large", 2, 0, "right"),
                             ObjectSpec("square", "blue", "small", 0, 2, "up")), background="gray", lighting="dim")
    recoloured = SceneSpec(objects=(two.objects[0], dataclasses.replace(two.objects[1], color="green")),
                           background="gray", lighting="dim")
    resized = SceneSpec(objects=(dataclasses.replace(two.objects[0], size="small"), two.objects[1]),
                        background="gray", lighting="bright")
    assert check_value(two, recoloured, "Color Requirement") == "green"  # the second object's
    assert check_value(two, recoloured, "Lighting") == check_value(two, recoloured, "Object(s)") == "match"
    assert check_value(two, resized, "Object(s)") == "small"
    assert check_value(two, resized, "Lighting") == "bright"
    assert check_value(two, two, "Object Location / Spatial Distribution") == "match"


def test_check_answer_is_match_exactly_for_the_yes_examples():
    """Over train scenes, every facet, both labels: the check answer is "match" iff the example's label is Yes (the
    corruption that breaks a facet changes its value; the ones that keep it do not)."""
    rng = random.Random("check-answers")
    for _ in range(12):
        seed, spec = train_scene(rng, CFG.num_frames)
        for facet in cd.TA_FACETS:
            for label in ("Yes", "No"):
                ex = check_example(cd.make_example(spec, "ta", label, seed, CFG, 4, facet=facet), CFG)
                assert ex.answer.startswith(f"Check {facet}: ")
                assert (ex.answer == f"Check {facet}: match") == (label == "Yes"), (ex.source, ex.answer)
                assert ex.label is None and ex.answer[ex.decision_chars[0]] == " "


def test_curriculum_check_share():
    """check_share 0 draws exactly the examples of a curriculum without it (the shipped recipe's data); 1 answers
    every auxiliary TA example with the check answer, a pair's Yes with "match" and its No with a value."""
    def draw(**kw):
        return [curriculum_example(random.Random(f"c{k // 2}"), k, 0, 0.0, CFG, aux_share=1.0, **kw)[0]
                for k in range(16)]

    plain, zero, every = draw(), draw(check_share=0.0), draw(check_share=1.0)
    assert [e.answer for e in plain] == [e.answer for e in zero]
    checks = [(a, b) for a, b in zip(plain, every) if a.dimension == "ta"]
    assert checks and all(b.answer.startswith(f"Check {a.facet}: ") for a, b in checks)
    for k in range(0, 16, 2):
        if every[k].dimension == "ta":
            assert every[k].answer.endswith(": match") and not every[k + 1].answer.endswith(": match")


def test_vanilla_check_values_by_hand():
    """The first differing facet in VANILLA_CHECK_FACETS order names the answer: background before lighting before
    colour; a scene equal to the prompt is "match"."""
    two = SceneSpec(objects=(ObjectSpec("circle", "red", "large", 2, 0, "right"),
                             ObjectSpec("square", "blue", "small", 0, 2, "up")), background="gray", lighting="dim")
    both = SceneSpec(objects=(two.objects[0], dataclasses.replace(two.objects[1], color="green")),
                     background="gray", lighting="bright")
    moved = SceneSpec(objects=(dataclasses.replace(two.objects[0], row=1, col=1), two.objects[1]),
                      background="gray", lighting="dim")
    assert vanilla_check_value(two, two) == "match"
    assert vanilla_check_value(two, both) == "bright"  # Lighting comes before Color Requirement
    assert vanilla_check_value(two, dataclasses.replace(both, background="black")) == "black"
    assert vanilla_check_value(two, moved) == "center"


def test_vanilla_check_answer_is_match_exactly_for_the_yes_examples():
    """Over train scenes and both labels: the Vanilla check question differs from the Yes/No one only in its last
    sentence, keeps the videos, and its answer is "Check: match" iff the Vanilla label is Yes (every semantic edit
    changes some facet's value; noise and blur change none)."""
    rng = random.Random("vanilla-checks")
    for _ in range(16):
        seed, spec = train_scene(rng, CFG.num_frames)
        for label in ("Yes", "No"):
            ex = cd.make_example(spec, "vanilla", label, seed, CFG, 4)
            check = vanilla_check_example(ex, CFG)
            assert check.question.endswith(VANILLA_CHECK_INSTRUCTION)
            assert check.question.replace(VANILLA_CHECK_INSTRUCTION, "Answer Yes or No.") == ex.question
            assert torch.equal(check.video, ex.video) and check.label is None and check.eval_char is None
            assert check.answer.startswith("Check: ") and check.answer[check.decision_chars[0]] == " "
            assert (check.answer == "Check: match") == (label == "Yes"), (ex.source, check.answer)
    with pytest.raises(ValueError, match="Vanilla example"):
        vanilla_check_example(cd.make_example(SCENE, "ta", "No", 5, CFG, 10, facet="Lighting"), CFG)


def test_curriculum_vanilla_check_share():
    """0 draws exactly the examples of a curriculum without it; 1 asks every Vanilla example as a Vanilla check and
    leaves every other example as it was."""
    phases = (("vanilla", "Lighting"),)

    def draw(**kw):
        return [curriculum_example(random.Random(f"v{k // 2}"), k, 0, 0.0, CFG, phases=phases, **kw)[0]
                for k in range(16)]

    plain, zero, every = draw(), draw(vanilla_check_share=0.0), draw(vanilla_check_share=1.0)
    assert [e.answer for e in plain] == [e.answer for e in zero]
    pairs = [(a, b) for a, b in zip(plain, every) if a.dimension == "vanilla"]
    assert pairs and all(b.answer.startswith("Check: ") and a.answer[:2] in ("Ye", "No") for a, b in pairs)
    assert all(a.answer == b.answer for a, b in zip(plain, every) if a.dimension != "vanilla")
