"""The world critic's question-first chat template (``critic_model.QWEN_VL_TEXT_FIRST_CHAT_TEMPLATE``).

It must render exactly what Qwen2.5-VL's own template renders for the same user turn with its text parts moved in
front of its visual parts, and the critic's input path (``VLMCritic.encode_prompt``) must still equal the official
processor's output with it: video pads, ``video_grid_thw`` and ``mm_token_type_ids``.
"""

import pytest
import torch
from jinja2 import Template

from vidreward.critics.tiny import QWEN_VL_CHAT_TEMPLATE
from vidreward.critics.vlm import VLMCritic
from vidreward.world.critic_model import QWEN_VL_TEXT_FIRST_CHAT_TEMPLATE, CriticArch, build_critic_model
from vidreward.world.render import RenderConfig, render
from vidreward.world.scene import ObjectSpec, SceneSpec


def _render(template: str, content: list[dict]) -> str:
    messages = [{"role": "user", "content": content}]
    return Template(template).render(messages=messages, add_generation_prompt=True)


@pytest.mark.parametrize("visuals", [["video"], ["video", "video"], ["image", "video"]])
def test_text_first_equals_the_qwen_template_with_text_moved_first(visuals):
    content = [{"type": v} for v in visuals] + [{"type": "text", "text": "Lighting: Dim lighting?"}]
    moved = content[-1:] + content[:-1]
    text_first = _render(QWEN_VL_TEXT_FIRST_CHAT_TEMPLATE, content)
    assert text_first == _render(QWEN_VL_CHAT_TEMPLATE, moved)
    assert text_first != _render(QWEN_VL_CHAT_TEMPLATE, content)
    user = text_first.split("<|im_start|>user\n")[1]
    assert user.startswith("Lighting: Dim lighting?<|vision_start|>")


@pytest.mark.parametrize("temporal_patch_size, num_frames", [(2, 4), (4, 6)])  # (4, 6): 2 padding frames
def test_critic_inputs_with_the_text_first_template_match_the_official_processor(tmp_path, temporal_patch_size,
                                                                                 num_frames):
    from transformers import AutoTokenizer

    from vidreward.world.critic_build_config import ASSET_DIR

    arch = CriticArch(vision_depth=1, vision_hidden=32, vision_heads=2, text_layers=1, text_hidden=32, text_heads=2,
                      text_kv_heads=1, temporal_patch_size=temporal_patch_size)
    model, processor = build_critic_model(AutoTokenizer.from_pretrained(ASSET_DIR), arch, seed=0)
    processor.chat_template = QWEN_VL_TEXT_FIRST_CHAT_TEMPLATE
    model.save_pretrained(tmp_path, safe_serialization=True)
    processor.save_pretrained(tmp_path)
    critic = VLMCritic.from_pretrained(tmp_path)  # the template is saved with the processor
    assert critic.processor.chat_template == QWEN_VL_TEXT_FIRST_CHAT_TEMPLATE
    spec = SceneSpec(objects=(ObjectSpec("square", "red", "large", 0, 0, "right"),), background="gray",
                     lighting="dim")
    video = render(spec, RenderConfig())[:num_frames]  # [N, 3, 64, 64]
    question = "Lighting: Dim lighting?"
    prompt = critic.encode_prompt(video, question, reference=video)
    ids = prompt.input_ids[0]
    first_pad = int((ids == processor.video_token_id).nonzero()[0])
    question_ids = critic.tokenizer(question, add_special_tokens=False)["input_ids"]
    assert question_ids == ids[first_pad - 1 - len(question_ids):first_pad - 1].tolist()  # question, <vision_start>
    u8 = [(video * 255).round().to(torch.uint8)] * 2
    official = critic.processor(text=[critic.chat_text(question, 2)], videos=u8, return_tensors="pt",
                                video_metadata=[{"fps": critic.fps, "total_num_frames": num_frames}] * 2,
                                videos_kwargs={"cap_pixels_per_frame": False})
    assert torch.equal(official["input_ids"][0], ids)
    assert torch.equal(official["video_grid_thw"], prompt.visuals.model_kwargs["video_grid_thw"])
    mm = torch.tensor(critic.processor.create_mm_token_type_ids([ids.tolist()]))[0]
    assert torch.equal(official["mm_token_type_ids"][0], mm)
    grid_t = -(-num_frames // temporal_patch_size)
    assert prompt.visuals.model_kwargs["video_grid_thw"].tolist() == [[grid_t, 6, 6]] * 2
    assert int((mm == 2).sum()) == 2 * grid_t * 6 * 6 // 4  # two videos of grid_t x 6 x 6 patches, 2x2 merge
    with torch.no_grad():  # the tower takes temporal_patch_size frames per patch
        logits = critic.model(**{k: v for k, v in prompt.visuals.model_kwargs.items()}, input_ids=prompt.input_ids,
                              mm_token_type_ids=mm[None]).logits
    assert torch.isfinite(logits).all()
