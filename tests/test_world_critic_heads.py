"""Stage (i) classification heads: targets from token concepts and sources, losses and accuracies by hand."""

import math

import pytest
import torch

from vidreward.world.critic_align import (
    WordAlignment,
    align_loss,
    align_sample,
    concept_token_ids,
    merged_tokens,
)
from vidreward.world.critic_concepts import AT_PATCH_START, MOTION_PREFIX
from vidreward.world.critic_heads import AttributeHeads, token_motion_targets, video_class
from vidreward.world.render import RenderConfig

CONCEPTS = [
    [{"red", "square", MOTION_PREFIX + "left", AT_PATCH_START}, {"gray", "bright"}],  # video 0: 2 tokens
    [{"blue", "circle", MOTION_PREFIX + "bounce"}, {"red", MOTION_PREFIX + "up", MOTION_PREFIX + "left"},
     {"gray"}],  # video 1: 3 tokens, the middle one holds two objects moving differently
]
SOURCES = ["teleport", "blur"]


def test_targets_by_hand():
    heads = AttributeHeads(4)
    t = heads.targets(CONCEPTS, SOURCES)
    # MOTIONS = (left, right, up, down, static, bounce)
    assert t["motion"].tolist() == [0, -100, 5, -100, -100]
    assert t["start"].tolist() == [1, 0, 0, 0, 0]
    assert t["physics"].tolist() == [2, 0] and t["quality"].tolist() == [0, 2]
    assert video_class("wrong_color", ("clean", "noise")) == 0
    assert token_motion_targets([{MOTION_PREFIX + "static"}]).tolist() == [4]


def test_zero_heads_give_log_class_count_losses_and_pool_per_video():
    heads = AttributeHeads(4)
    for p in heads.parameters():
        torch.nn.init.zeros_(p)
    tokens = torch.randn(5, 4)
    expected = math.log(6) + math.log(2) + math.log(4) + math.log(4)
    assert heads.loss(tokens, CONCEPTS, SOURCES).item() == pytest.approx(expected)
    torch.nn.init.eye_(heads.physics.weight)
    logits = heads.logits(tokens, [2, 3])
    assert torch.allclose(logits["physics"], torch.stack([tokens[:2].mean(0), tokens[2:].mean(0)]))
    assert logits["motion"].shape == (5, 6)


def test_balanced_accuracy_by_hand():
    heads = AttributeHeads(4)
    for p in heads.parameters():
        torch.nn.init.zeros_(p)
    with torch.no_grad():
        heads.quality.bias[2] = 1.0  # always "blur": right on video 1, wrong on video 0 (clean)
        heads.physics.bias[0] = 1.0  # always "clean": wrong on video 0 (teleport), right on video 1
        heads.motion.bias[0] = 1.0  # always "left": right on token 0 (left), wrong on token 2 (bounce)
        heads.start.bias[0] = 1.0  # never at the start: right on the 4 tokens without the mark, wrong on token 0
    acc = heads.accuracy(torch.randn(5, 4), CONCEPTS, SOURCES)
    assert acc == {"head_motion": 0.5, "head_start": 0.5, "head_physics": 0.5, "head_quality": 0.5}


def test_heads_loss_reaches_the_vision_tower(tiny_world_critic):
    critic = tiny_world_critic
    align = WordAlignment(concept_token_ids(critic.tokenizer))
    heads = AttributeHeads(critic.model.config.text_config.hidden_size)
    samples = [align_sample(seed, RenderConfig(), 4, physics=True) for seed in range(4)]
    args = (critic.model, align, critic.encoder, [s.video for s in samples], [s.concepts for s in samples],
            [4] * 4, critic.fps)
    words, _ = align_loss(*args)
    tower = critic.model.model.visual.patch_embed.proj.weight
    tower.requires_grad_(True)
    grads = []
    for weight in (0.0, 1.0):
        critic.model.zero_grad()
        heads.zero_grad()
        loss, _ = align_loss(*args, heads=heads, sources=[s.source for s in samples], heads_weight=weight)
        expected = words + weight * heads.loss(merged_tokens(critic.model, critic.encoder, args[3], [4] * 4,
                                                             critic.fps), args[4], [s.source for s in samples])
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
        loss.backward()
        grads.append(tower.grad.clone())
        assert (heads.physics.weight.grad is not None) == (weight > 0)
    tower.grad = None
    assert not torch.allclose(grads[0], grads[1])
