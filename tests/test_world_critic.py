"""The shipped world critic (vidreward/world/assets/critic, built by `vidreward world build critic`).

It loads offline through `VLMCritic.from_pretrained`, answers a fixed held-out batch (scenes of the world's
held-out split, never trained on; a seed range the build never evaluated on) through the real call path
(`answer_logprobs` at the decision token for TA / Phy / VQ, `decision_logprobs` for Vanilla), and its accuracy
collapses when the videos are shuffled across the batch (the answers depend on the video, not on the text).
Run with `-s` to see the measured accuracies.
"""

import json

import pytest
import torch

from vidreward.critics.vlm import VLMCritic
from vidreward.video_io import subsample_frames
from vidreward.world import critic_data as cd
from vidreward.world.critic_build_config import ASSET_DIR

N_FRAMES = 10
PER_DIMENSION = 12
TEST_SEED0 = 70_000_000  # disjoint from the build's held-out seeds (50_000_000...) and its training draws


@pytest.fixture(scope="module")
def critic():
    return VLMCritic.from_pretrained(ASSET_DIR)


@pytest.fixture(scope="module")
def examples():
    return cd.held_out_examples(PER_DIMENSION, n_frames=N_FRAMES, seed0=TEST_SEED0)


def _margin(critic, ex, video):
    """log p(Yes) - log p(No) at the example's decision."""
    frames = subsample_frames(video, N_FRAMES)
    ref = None if ex.reference is None else subsample_frames(ex.reference, N_FRAMES)
    with torch.no_grad():
        if ex.dimension == "vanilla":  # exactly how VanillaDRFReward reads it
            d = critic.decision_logprobs(frames, ex.question)
        else:
            d = critic.answer_logprobs(frames, ex.question, ex.answer, reference=ref, decision_char=ex.eval_char)
            d = d.decision
    return d.logp_yes.item() - d.logp_no.item()


def _predict(critic, ex, video):
    return "Yes" if _margin(critic, ex, video) > 0 else "No"


def _accuracy(critic, examples, shuffle):
    videos = [ex.video for ex in examples]
    if shuffle:  # each question gets the video of the next example of the same dimension
        for dim in cd.DIMENSIONS:
            idx = [i for i, ex in enumerate(examples) if ex.dimension == dim]
            for a, b in zip(idx, idx[1:] + idx[:1]):
                videos[a] = examples[b].video
    hits = {}
    for ex, video in zip(examples, videos):
        hits.setdefault(ex.dimension, []).append(_predict(critic, ex, video) == ex.label)
    per_dim = {d: sum(h) / len(h) for d, h in hits.items()}
    overall = sum(sum(h) for h in hits.values()) / len(examples)
    return overall, per_dim


def test_held_out_batch_is_balanced_and_labels_sit_at_the_decision(examples):
    for dim in cd.DIMENSIONS:
        labels = [ex.label for ex in examples if ex.dimension == dim]
        assert labels.count("Yes") == labels.count("No") == PER_DIMENSION // 2
    for ex in examples:
        assert ex.answer[ex.eval_char:].startswith(ex.label)
        if ex.dimension in ("ta", "phy", "vq"):
            json.loads(ex.answer)  # the JSON answer format
        assert (ex.reference is not None) == (ex.dimension in ("phy", "vq"))


def test_shipped_critic_inputs_match_the_official_processor(critic, examples):
    tok = critic.tokenizer
    assert len(tok.encode("Yes", add_special_tokens=False)) == len(tok.encode("No", add_special_tokens=False)) == 1
    for ex in (next(e for e in examples if e.dimension == "ta"), next(e for e in examples if e.dimension == "phy")):
        videos = [subsample_frames(ex.video, N_FRAMES)] + (
            [] if ex.reference is None else [subsample_frames(ex.reference, N_FRAMES)])
        prompt = critic.encode_prompt(videos[0], ex.question, reference=None if len(videos) == 1 else videos[1])
        grid = prompt.visuals.model_kwargs["video_grid_thw"]
        patch = critic.model.config.vision_config.temporal_patch_size  # frames per temporal patch
        # 64x64 frames -> 84x84 = 6x6 patches; N_f frames padded to a multiple of the temporal patch
        assert grid.tolist() == [[-(-N_FRAMES // patch), 6, 6]] * len(videos)
        ids = prompt.input_ids[0]
        is_pad = (ids == critic.processor.video_token_id).int()
        runs = [len(r) for r in "".join(map(str, is_pad.tolist())).split("0") if r]
        assert runs == [int(g.prod()) // 4 for g in grid]  # t*h*w/4 pads per video, in order
        mm = torch.tensor(critic.processor.create_mm_token_type_ids([ids.tolist()]))[0]
        assert torch.equal(mm == 2, is_pad.bool()) and int(mm.max()) == 2
        u8 = [(v * 255).round().to(torch.uint8) for v in videos]
        official = critic.processor(
            text=[critic.chat_text(ex.question, len(u8))], videos=u8, return_tensors="pt",
            video_metadata=[{"fps": critic.fps, "total_num_frames": N_FRAMES}] * len(u8),
            videos_kwargs={"cap_pixels_per_frame": False})
        assert torch.equal(official["input_ids"][0], ids)
        assert torch.equal(official["video_grid_thw"], grid)
        assert torch.equal(official["mm_token_type_ids"][0], mm)


@pytest.mark.xfail(strict=True, reason="issue 6 open: the shipped world critic (session 16, checks recipe) is below "
                   "the gate (held-out TA 0.90, Phy 0.96, VQ 0.56, Vanilla 0.65; here 0.771 overall, Vanilla 0.58; "
                   "gate 0.85 here / 0.90 per dimension); "
                   "when a rebuilt critic passes, strict XPASS fails the suite so this marker must be removed")
def test_shipped_critic_accuracy_and_shuffled_frames_control(critic, examples):
    overall, per_dim = _accuracy(critic, examples, shuffle=False)
    shuffled, shuffled_dim = _accuracy(critic, examples, shuffle=True)
    print(f"held-out accuracy {overall:.3f} {per_dim}; frames shuffled {shuffled:.3f} {shuffled_dim}")
    assert overall >= 0.85
    assert min(per_dim.values()) >= 0.75
    assert shuffled <= 0.65
    assert overall - shuffled >= 0.25


def test_shipped_critic_greedy_answers_parse_in_the_paper_formats(critic):
    """The world records' reference answers are the critic's greedy replies (``greedy_answer``, as the records
    stage calls it) and must parse as Figs. 15-17 JSON; a critic whose TA replies open with an auxiliary head
    ("Check Colour: match", the session-15 build) parses for none."""
    from vidreward.annotate.parsing import parse_answer
    from vidreward.critics.answer_generation import greedy_answer

    examples = cd.held_out_examples(2, n_frames=N_FRAMES, seed0=TEST_SEED0 + 500_000, dimensions=("ta", "phy", "vq"))
    for ex in examples[:2] + examples[2::2]:  # two TA questions, one Phy, one VQ
        ref = None if ex.reference is None else subsample_frames(ex.reference, N_FRAMES)
        reply = greedy_answer(critic, subsample_frames(ex.video, N_FRAMES), ex.question, ref, max_new_tokens=160)
        parsed = parse_answer(reply, ex.dimension)  # raises ParseError on a reply that is not the paper's format
        assert set(parsed) >= {"ta": {"answer"}, "phy": {"explanation"}, "vq": {"evidence"}}[ex.dimension], reply
