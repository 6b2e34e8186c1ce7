"""Stage (i) of the world critic build: per-token word targets, their token order, and the word scores."""

import math

import pytest
import torch

from vidreward.critics.vlm import VLMCritic
from vidreward.video_io import subsample_frames
from vidreward.world.critic_align import (
    WordAlignment,
    align_loss,
    concept_token_ids,
    token_concepts,
)
from vidreward.world.critic_model import CriticArch, build_critic_model
from vidreward.world.render import RenderConfig, render
from vidreward.world.scene import ObjectSpec, SceneSpec

CFG = RenderConfig()
#: a large red square that stays in the top-left cell: it covers merged token (row 0, col 0) of every frame pair
STATIC = SceneSpec(objects=(ObjectSpec("square", "red", "large", 0, 0, "static"),), background="gray",
                   lighting="bright")


def test_static_object_sits_in_its_cell_token_only():
    concepts = token_concepts(STATIC, "clean", 10, CFG)
    assert len(concepts) == 5 * 9  # 10 frames -> 5 temporal patches x 3 x 3 merged tokens
    for t in range(5):
        for cell in range(9):
            words = concepts[t * 9 + cell]
            # the square spans 0.25 +- 0.2 of the frame: [3.2, 28.8] px, i.e. cells (0,0), (0,1), (1,0), (1,1)
            in_object = cell in (0, 1, 3, 4)
            assert words == ({"gray", "bright"} | ({"red", "square", "large"} if in_object else set())), (t, cell)


def test_quality_defect_is_a_word_of_every_token():
    concepts = token_concepts(STATIC, "blur", 4, CFG)
    assert len(concepts) == 2 * 9 and all("blur" in w for w in concepts)
    with pytest.raises(ValueError, match="even"):
        token_concepts(STATIC, "clean", 5, CFG)


@pytest.fixture(scope="module")
def tiny_critic(tmp_path_factory):
    from transformers import AutoTokenizer

    from vidreward.world.build_critic import ASSET_DIR

    tokenizer = AutoTokenizer.from_pretrained(ASSET_DIR)
    arch = CriticArch(vision_depth=1, vision_hidden=32, vision_heads=2, text_layers=1, text_hidden=32, text_heads=2,
                      text_kv_heads=1)
    model, processor = build_critic_model(tokenizer, arch, seed=0)
    path = tmp_path_factory.mktemp("critic")
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    return VLMCritic.from_pretrained(path)


def test_token_order_matches_the_processor_merge_order(tiny_critic):
    """Merged token k of the vision tower is the 2x2 patch group k of pixel_values_videos: the groups whose pixels
    vary (object edges on a flat background) are exactly the tokens labelled with the object's words."""
    video = render(STATIC, CFG)
    kw = tiny_critic.encoder.encode([subsample_frames(video, 10)], fps=tiny_critic.fps).model_kwargs
    groups = kw["pixel_values_videos"].view(45, 4, 3, -1)  # [tokens, 2x2 patches, channel, 2*14*14]
    varies = groups.std(dim=(1, 3)).amax(dim=1) > 1e-3  # some channel is not flat over the token's pixels
    labelled = torch.tensor([len(w) > 2 for w in token_concepts(STATIC, "clean", 10, CFG)])
    assert torch.equal(varies, labelled)


def test_word_scores_are_scaled_cosines_and_train_vision_and_embeddings(tiny_critic):
    ids = concept_token_ids(tiny_critic.tokenizer)
    assert all(len(v) >= 1 for v in ids.values())
    assert len(ids["bright"]) > 1  # " bright" and "Bright" (the Lighting facet's spelling) both carry the concept
    align = WordAlignment(ids)
    emb = torch.zeros(max(max(v) for v in ids.values()) + 1, 2)
    emb[align.ids[0]] = torch.tensor([3.0, 4.0])
    tokens = torch.tensor([[1.0, 0.0]])
    score = align(tokens, emb)[0, 0]
    assert score.item() == pytest.approx(math.exp(2.3) * 0.6 - 2.0, abs=1e-5)  # tau * cos(3/5) + bias -2
    assert align.log_tau.exp().item() == pytest.approx(math.exp(2.3))

    model = tiny_critic.model
    for p in model.parameters():
        p.requires_grad_(True)
    video = render(STATIC, CFG)
    loss, stats = align_loss(model, align, tiny_critic.encoder, [video], [token_concepts(STATIC, "clean", 4, CFG)],
                             [4], tiny_critic.fps)
    loss.backward()
    assert math.isfinite(loss.item()) and 0.0 <= stats["word_acc"] <= 1.0
    assert model.model.visual.patch_embed.proj.weight.grad.abs().sum() > 0
    emb_grad = model.get_input_embeddings().weight.grad
    assert emb_grad[align.ids].abs().sum() > 0  # the attribute words move towards their tokens
