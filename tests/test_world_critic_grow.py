"""`critic_model.grow_text_model`: appended decoder layers start as the identity, so the grown critic answers
exactly as before; they train, and they survive a ``save_pretrained`` -> ``from_pretrained`` round trip."""

import copy

import pytest
import torch

from vidreward.critics.vlm import VLMCritic
from vidreward.rewards.vanilla_drf import vanilla_question
from vidreward.world.critic_model import grow_text_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_grown_critic_answers_as_before_trains_the_new_layer_and_round_trips(tiny_world_critic, tmp_path):
    critic = copy.deepcopy(tiny_world_critic)  # the fixture is shared by the module
    frames = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # [F, 3, H, W]
    question = vanilla_question("A red square moves left.")
    with torch.no_grad():
        before = critic.decision_logprobs(frames, question)
    layers = critic.model.model.language_model.layers
    assert len(layers) == 1
    grow_text_model(critic.model, 2)
    assert len(layers) == 3 and critic.model.config.text_config.num_hidden_layers == 3
    assert critic.model.config.text_config.layer_types == ["full_attention"] * 3
    assert [layer.self_attn.layer_idx for layer in layers] == [0, 1, 2]
    new = layers[1]
    assert torch.equal(new.self_attn.o_proj.weight, torch.zeros_like(new.self_attn.o_proj.weight))
    assert torch.equal(new.mlp.down_proj.weight, torch.zeros_like(new.mlp.down_proj.weight))
    assert torch.equal(new.self_attn.q_proj.weight, layers[0].self_attn.q_proj.weight)  # a copy of the last layer
    assert new.self_attn.q_proj.weight.data_ptr() != layers[0].self_attn.q_proj.weight.data_ptr()
    with torch.no_grad():
        grown = critic.decision_logprobs(frames, question)
    assert grown.logp_yes.item() == before.logp_yes.item() and grown.logp_no.item() == before.logp_no.item()  # exactly the identity

    critic.model.requires_grad_(True)  # VLMCritic loads a frozen critic
    critic.decision_logprobs(frames, question).logp_yes.backward()
    assert layers[2].self_attn.o_proj.weight.grad.abs().max() > 0
    assert layers[2].mlp.down_proj.weight.grad.abs().max() > 0
    with torch.no_grad():
        layers[2].mlp.down_proj.weight.add_(0.01)  # a trained step's worth of change, kept by the round trip
        changed = critic.decision_logprobs(frames, question)
    assert changed.logp_yes.item() != before.logp_yes.item()
    critic.model.save_pretrained(tmp_path, safe_serialization=True)
    critic.processor.save_pretrained(tmp_path)
    reloaded = VLMCritic.from_pretrained(tmp_path)
    assert len(reloaded.model.model.language_model.layers) == 3
    with torch.no_grad():
        again = reloaded.decision_logprobs(frames, question)
    assert again.logp_yes.item() == pytest.approx(changed.logp_yes.item(), abs=1e-6)
