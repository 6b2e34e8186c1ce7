"""Keyed auxiliary answers of the critic's stage (iii): values by hand, the weighted token, the curriculum share."""

from __future__ import annotations

import random

import pytest
import torch

from vidreward.world import critic_data as cd
from vidreward.world.critic_aux import aux_example, facet_value
from vidreward.world.critic_batch import encode_batch
from vidreward.world.critic_curriculum import curriculum_example
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
