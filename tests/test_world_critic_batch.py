"""The critic build's fast training path: answer-only logits and per-dimension sub-batches give exactly the loss,
the gradient and the decisions of one padded batch through the model's full logits."""

import random

import pytest
import torch

from vidreward.world.critic_aux import aux_example
from vidreward.world.critic_batch import (
    answer_logits,
    check_same_path,
    decisions,
    encode_batch,
    grouped_loss,
    length_groups,
    value_accuracy,
    video_features,
)
from vidreward.world.critic_curriculum import train_scene
from vidreward.world.critic_data import DIMENSIONS, make_example
from vidreward.world.render import RenderConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mixed_examples():
    """A Yes/No pair of each dimension (TA, Phy, VQ, Vanilla) on train scenes, in that order."""
    rcfg = RenderConfig()
    out = []
    for k, dim in enumerate(DIMENSIONS):
        seed, spec = train_scene(random.Random(f"batch-test-{k}"), rcfg.num_frames)
        out += [make_example(spec, dim, label, seed, rcfg, 4) for label in ("Yes", "No")]
    return out


def _full_batch_loss(critic, examples, n_frames, weight):
    """The reference: one right-padded batch, the model's own [B, L, V] logits, L = sum w NLL / sum w."""
    batch = encode_batch(critic, examples, n_frames, weight)
    logits = critic.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                          mm_token_type_ids=batch.mm_token_type_ids, pixel_values_videos=batch.pixel_values_videos,
                          video_grid_thw=batch.video_grid_thw, second_per_grid_ts=batch.second_per_grid_ts,
                          use_cache=False).logits.float()  # [B, L, V]
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch.labels.clamp_min(0), reduction="none")
    loss = (nll * batch.weights).sum() / batch.weights.sum()
    preds = ["Yes" if logits[b, p, batch.yes_id] > logits[b, p, batch.no_id] else "No"
             for b, p in enumerate(batch.eval_pos)]
    return loss, preds, batch


def test_length_groups_split_by_dimension(mixed_examples):
    assert length_groups(mixed_examples) == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_grouped_loss_equals_the_full_batch_loss_and_gradient(tiny_world_critic, mixed_examples):
    critic, n_frames = tiny_world_critic, [4] * len(mixed_examples)
    params = [p for p in critic.model.parameters()]
    for p in params:
        p.requires_grad_(True)
    ref, ref_preds, batch = _full_batch_loss(critic, mixed_examples, n_frames, 20.0)
    assert batch.input_ids.shape[1] > 2 * batch.attention_mask.sum(1).min()  # the TA / Vanilla rows are mostly pad
    ref_grads = torch.autograd.grad(ref, params, allow_unused=True)
    ours, preds = grouped_loss(critic, mixed_examples, n_frames, 20.0, tune_vision=True)
    grads = torch.autograd.grad(ours, params, allow_unused=True)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    assert preds == ref_preds
    for g, r in zip(grads, ref_grads):
        if r is None:
            assert g is None or g.abs().max() == 0
        else:
            torch.testing.assert_close(g, r, atol=1e-6, rtol=1e-4)


def test_answer_logits_are_the_full_logits_at_the_targets(tiny_world_critic, mixed_examples):
    critic = tiny_world_critic
    batch = encode_batch(critic, mixed_examples[:4], [4] * 4, 20.0)
    with torch.no_grad():
        feats = video_features(critic.model, batch)
        sparse = answer_logits(critic.model, batch, feats)  # [N, V]
        full = critic.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                            mm_token_type_ids=batch.mm_token_type_ids, video_grid_thw=batch.video_grid_thw,
                            second_per_grid_ts=batch.second_per_grid_ts, mm_encoder_outputs={"video": feats},
                            use_cache=False).logits.float()
    rows, cols = batch.answer_positions.unbind(1)
    assert sparse.shape == (int((batch.labels >= 0).sum()), full.shape[-1])
    torch.testing.assert_close(sparse, full[rows, cols], atol=1e-5, rtol=1e-5)
    assert decisions(sparse, batch) == ["Yes" if full[b, p, batch.yes_id] > full[b, p, batch.no_id] else "No"
                                        for b, p in enumerate(batch.eval_pos)]
    assert check_same_path(critic, mixed_examples[:4], 4) < 1e-4


def test_scored_only_weighs_one_decision_per_answer(tiny_world_critic):
    """A Phy answer has five decisions; with ``scored_only`` only the scored one (a Yes example's "Yes", a No
    example's drawn key) weighs decision_weight, so the pair's weighted Yes and No targets are equal."""
    rcfg = RenderConfig()
    seed, spec = train_scene(random.Random(5), rcfg.num_frames)
    pair = [make_example(spec, "phy", label, seed, rcfg, 4) for label in ("Yes", "No")]
    full = encode_batch(tiny_world_critic, pair, [4, 4], decision_weight=20.0)
    scored = encode_batch(tiny_world_critic, pair, [4, 4], decision_weight=20.0, scored_only=True)
    assert ((full.weights == 20.0).sum(dim=1)).tolist() == [5, 5]  # Fig. 16's five keys
    assert ((scored.weights == 20.0).sum(dim=1)).tolist() == [1, 1]
    for row, pos in enumerate(scored.eval_pos):
        assert scored.weights[row, pos] == 20.0
    yes_id = tiny_world_critic.tokenizer.convert_tokens_to_ids("Yes")
    heavy = scored.labels[scored.weights == 20.0]
    assert heavy.tolist().count(yes_id) == 1  # one Yes and one No at weight 20
    ta = make_example(spec, "ta", "Yes", seed, rcfg, 4)
    assert torch.equal(encode_batch(tiny_world_critic, [ta], [4], 20.0).weights,
                       encode_batch(tiny_world_critic, [ta], [4], 20.0, scored_only=True).weights)


def _value_token(tok, ex) -> int:
    """The first token of a keyed auxiliary answer's value word (the token after its ``Video <facet>:`` head)."""
    head = tok(ex.answer[:ex.decision_chars[0]], add_special_tokens=False)["input_ids"]
    return tok(ex.answer, add_special_tokens=False)["input_ids"][len(head)]


def test_value_accuracy_reads_the_value_token_from_the_full_logits(tiny_world_critic):
    """Keyed auxiliary answers ("Video Lighting: dim"): value_accuracy is the share of examples whose value token is
    the argmax of the model's own full [B, L, V] logits; a head steered to one value word scores the share of
    examples with that value (a Yes/No pair, each answered on both sides: the caption's value 3 times of 4)."""
    rcfg = RenderConfig()
    critic, tok = tiny_world_critic, tiny_world_critic.tokenizer
    seed, spec = train_scene(random.Random("value-accuracy"), rcfg.num_frames)
    pair = [make_example(spec, "ta", label, seed, rcfg, 4, facet="Lighting") for label in ("Yes", "No")]
    aux = [aux_example(ex, rcfg, video_side=side) for ex in pair for side in (True, False)]
    values = [_value_token(tok, ex) for ex in aux]  # video Yes, question Yes, video No, question No
    assert values[0] == values[1] == values[3] != values[2]
    expected = []
    with torch.no_grad():
        for ex, value in zip(aux, values):
            batch = encode_batch(critic, [ex], [4])
            logits = critic.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                  mm_token_type_ids=batch.mm_token_type_ids,
                                  pixel_values_videos=batch.pixel_values_videos, video_grid_thw=batch.video_grid_thw,
                                  second_per_grid_ts=batch.second_per_grid_ts, use_cache=False).logits[0]  # [L, V]
            head_len = len(tok(ex.answer[:ex.decision_chars[0]], add_special_tokens=False)["input_ids"])
            first_target = int((batch.labels[0] >= 0).nonzero()[0])
            expected.append(int(logits[first_target + head_len].argmax() == value))
    assert value_accuracy(critic, aux, n_frames=4) == pytest.approx(sum(expected) / 4)
    for steer, share in ((values[0], 0.75), (values[2], 0.25)):
        hook = critic.model.lm_head.register_forward_hook(
            lambda _m, _i, out, t=steer: out + 1e4 * torch.nn.functional.one_hot(torch.tensor(t), out.shape[-1]))
        try:
            assert value_accuracy(critic, aux, n_frames=4) == share
        finally:
            hook.remove()
