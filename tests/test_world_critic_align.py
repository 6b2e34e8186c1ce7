"""Stage (i) of the world critic build: per-token word targets, their token order, and the word scores."""

import math

import pytest
import torch

from vidreward.video_io import subsample_frames
from vidreward.world.critic_align import (
    WordAlignment,
    align_loss,
    align_sample,
    concept_token_ids,
    merged_tokens,
    rescale_visual_tokens,
)
from vidreward.world.critic_concepts import MOTION_PREFIX, UNSEEN_DEFECT, token_concepts
from vidreward.world.motion import scene_tracks
from vidreward.world.render import RenderConfig, render
from vidreward.world.scene import ObjectSpec, SceneSpec

CFG = RenderConfig()
#: a large red square that stays in the top-left cell: it covers merged tokens (0,0), (0,1), (1,0), (1,1) of every
#: frame pair (test_world_critic_concepts.test_static_square_in_the_top_left_cell_by_hand has the covers by hand)
STATIC = SceneSpec(objects=(ObjectSpec("square", "red", "large", 0, 0, "static"),), background="gray",
                   lighting="bright")


def static_concepts(source: str, n_frames: int, occlude: bool = False) -> list[set[str]]:
    tracks = scene_tracks(STATIC, CFG.num_frames, CFG.height, CFG.width)
    return token_concepts(STATIC, tracks, source, n_frames, CFG, occlude=occlude)


def test_align_targets_occlude_scene_words_on_object_tokens():
    concepts = static_concepts("blur", 10, occlude=True)
    assert len(concepts) == 5 * 9  # 10 frames -> 5 temporal patches x 3 x 3 merged tokens
    for t in range(5):
        for cell in range(9):
            expected = {"red", "square", "large", "blur"} if cell in (0, 1, 3, 4) else {"gray", "bright", "blur"}
            assert concepts[t * 9 + cell] == expected, (t, cell)


def test_align_sample_targets_describe_its_video():
    for seed in range(6):
        video, concepts, source, n_frames = align_sample(seed, CFG, 6)
        assert n_frames == 6 and source in ("clean", "noise", "blur", "flicker")
        assert video.shape == (CFG.num_frames, 3, CFG.height, CFG.width) and len(concepts) == 3 * 9
        scene_only = [c for c in concepts if not c & {"circle", "square", "triangle"}]
        assert scene_only and all(len(c & {"bright", "dim"}) == 1 for c in scene_only)
        assert all(not c & {"bright", "dim"} for c in concepts if c & {"circle", "square", "triangle"})


def test_token_order_matches_the_processor_merge_order(tiny_world_critic):
    """Merged token k of the vision tower is the 2x2 patch group k of pixel_values_videos: the groups whose pixels
    vary (object edges on a flat background) are exactly the tokens labelled with the object's words."""
    video = render(STATIC, CFG)
    kw = tiny_world_critic.encoder.encode([subsample_frames(video, 10)], fps=tiny_world_critic.fps).model_kwargs
    groups = kw["pixel_values_videos"].view(45, 4, 3, -1)  # [tokens, 2x2 patches, channel, 2*14*14]
    varies = groups.std(dim=(1, 3)).amax(dim=1) > 1e-3  # some channel is not flat over the token's pixels
    labelled = torch.tensor([len(w) > 2 for w in static_concepts("clean", 10)])
    assert torch.equal(varies, labelled)


def test_word_scores_are_scaled_cosines_and_train_vision_and_embeddings(tiny_world_critic):
    ids = concept_token_ids(tiny_world_critic.tokenizer)
    assert all(len(v) >= 1 for v in ids.values())
    assert len(ids["bright"]) > 1  # " bright" and "Bright" (the Lighting facet's spelling) both carry the concept
    align = WordAlignment(ids)
    emb = torch.zeros(max(max(v) for v in ids.values()) + 1, 2)
    emb[align.ids[0]] = torch.tensor([3.0, 4.0])
    tokens = torch.tensor([[1.0, 0.0]])
    score = align(tokens, emb)[0, 0]
    assert score.item() == pytest.approx(math.exp(2.3) * 0.6 - 2.0, abs=1e-5)  # tau * cos(3/5) + bias -2
    assert align.log_tau.exp().item() == pytest.approx(math.exp(2.3))

    model = tiny_world_critic.model
    for p in model.parameters():
        p.requires_grad_(True)
    video = render(STATIC, CFG)
    loss, stats = align_loss(model, align, tiny_world_critic.encoder, [video], [static_concepts("clean", 4)],
                             [4], tiny_world_critic.fps)
    loss.backward()
    assert math.isfinite(loss.item()) and 0.0 <= stats["word_acc"] <= 1.0
    assert model.model.visual.patch_embed.proj.weight.grad.abs().sum() > 0
    emb_grad = model.get_input_embeddings().weight.grad
    assert emb_grad[align.ids].abs().sum() > 0  # the attribute words move towards their tokens


def test_quality_group_loss_by_hand():
    from vidreward.world.critic_align import QUALITY_SOURCES, group_loss

    align = WordAlignment({"noise": [5, 6], "blur": [7], "flicker": [8], "red": [9]})
    scores = torch.tensor([[1.0, 2.0, 0.5, -1.0, 3.0],  # a noisy token: the noise score is the max of its spellings
                           [0.0, 0.0, 4.0, 0.0, 0.0],  # an object token without a defect: no quality target
                           [0.0, 0.0, 0.0, 0.0, 0.0]])  # two defects: ambiguous, no target
    concepts = [{"noise"}, {"red"}, {"noise", "blur"}]
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(0.5) + math.exp(-1.0)))
    loss = group_loss(align, scores, concepts, (QUALITY_SOURCES,))
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert group_loss(align, scores, [{"red"}] * 3, (QUALITY_SOURCES,)).item() == 0.0  # no defect token: no loss


def test_visible_blur_labels_only_tokens_whose_pixels_the_blur_changes(tiny_world_critic):
    """With ``visible_defects`` a blur token's processor pixels differ from the clean render's, and a token whose
    pixels the blur leaves as they are is never labelled blur (it is unscored: ``UNSEEN_DEFECT``)."""
    from vidreward.world.corrupt import gaussian_blur

    clean = render(STATIC, CFG)
    enc = tiny_world_critic.encoder
    pix = [enc.encode([subsample_frames(v, 10)], fps=tiny_world_critic.fps).model_kwargs["pixel_values_videos"]
           for v in (clean, gaussian_blur(clean, sigma=1.5))]
    changed = (pix[1] - pix[0]).view(45, -1).abs().amax(dim=1) > 1e-3  # [45] tokens
    tokens = token_concepts(STATIC, scene_tracks(STATIC, CFG.num_frames, CFG.height, CFG.width), "blur", 10, CFG,
                            occlude=True, visible_defects=True)
    blurred = torch.tensor(["blur" in t for t in tokens])
    assert blurred.sum() == 5 * 4  # the square's four cells in every patch
    assert bool(changed[blurred].all())
    assert all(UNSEEN_DEFECT in t for t, b in zip(tokens, blurred) if not b)


def test_unseen_defect_tokens_leave_the_quality_words_unscored():
    align = WordAlignment({"noise": [5], "blur": [6, 7], "flicker": [8], "red": [9]})
    concepts = [{"blur", "red"}, {UNSEEN_DEFECT, "red"}, {"red"}]
    assert align.targets(concepts).tolist() == [[0, 1, 1, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1]]
    assert align.scored(concepts).tolist() == [[1, 1, 1, 1, 1], [0, 0, 0, 0, 1], [1, 1, 1, 1, 1]]


def test_physics_align_samples_draw_physics_corruptions_with_motion_labels():
    samples = [align_sample(seed, CFG, 4, temporal_patch=10, physics=True) for seed in range(40)]
    assert {"deformation", "teleport", "interpenetration", "clean", "noise"} <= {s.source for s in samples}
    for s in samples:
        assert len(s.concepts) == 9  # 4 frames padded to one 10-frame patch
        objects = [c for c in s.concepts if c & {"circle", "square", "triangle"}]
        assert objects and all(any(w.startswith(MOTION_PREFIX) for w in c) for c in objects)


def test_rescaled_visual_tokens_keep_their_word_scores_and_take_the_words_norm(tiny_world_critic):
    critic = tiny_world_critic
    model = critic.model
    align = WordAlignment(concept_token_ids(critic.tokenizer))
    samples = [align_sample(seed, CFG, 4) for seed in range(3)]
    merger = model.model.visual.merger.mlp[-1]
    saved = {k: v.clone() for k, v in merger.state_dict().items()}
    try:
        with torch.no_grad():
            merger.weight.mul_(30.0)  # tokens far larger than the word embeddings, as stage (i) leaves them
            merger.bias.mul_(30.0)
            args = (model, critic.encoder, [s.video for s in samples], [4] * 3, critic.fps)
            before = merged_tokens(*args)
            factor = rescale_visual_tokens(model, align, critic.encoder, samples, critic.fps)
            after = merged_tokens(*args)
            emb = model.get_input_embeddings().weight
            assert after.norm(dim=-1).mean().item() == pytest.approx(emb[align.ids].norm(dim=-1).mean().item(),
                                                                      rel=1e-4)
            assert torch.allclose(after, factor * before, rtol=1e-4, atol=1e-6)
            assert torch.allclose(align(after, emb), align(before, emb), atol=1e-4)  # cosines: stage (i) unchanged
    finally:
        merger.load_state_dict(saved)
