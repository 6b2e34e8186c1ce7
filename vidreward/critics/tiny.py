"""Tiny RANDOM critics of the real transformers classes, built offline, for tests and smoke runs.

Each builder writes a complete `save_pretrained` directory (safetensors weights, config, tokenizer with a chat
template, image + video processors) that loads with `VLMCritic.from_pretrained(out_dir)` exactly like a real
checkpoint. The tokenizer is a byte-level BPE built with the `tokenizers` machinery of `Qwen2Tokenizer`:
every byte is a token, plus merges so that "Yes" and "No" are single tokens (the decision tokens) and the
chat / vision special tokens. A directory that already holds a complete build (marker file) is reused as is.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vidreward.log import get_logger

logger = get_logger(__name__)

_COMPLETE_MARKER = "vidreward_tiny_complete.json"

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
INTERNVL_NAMED_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}
# Words merged into single BPE tokens: the decision words first (must be single tokens), then a few JSON keys.
_MERGED_WORDS = ["Yes", "No", "answer", "explanation", "video"]

# The official Qwen2-VL / Qwen2.5-VL chat template (multimodal content list form), in three shared pieces: the
# turns up to a user turn's content list, the image / video placeholder branches of one content item (an open
# ``{% if %}``), and the end of the turns with the generation prompt.
QWEN_VL_TEMPLATE_HEAD = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
)
QWEN_VL_VISUAL_ITEM = (
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
)
QWEN_VL_TEMPLATE_TAIL = "<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
QWEN_VL_CHAT_TEMPLATE = (
    QWEN_VL_TEMPLATE_HEAD + "{% for content in message['content'] %}" + QWEN_VL_VISUAL_ITEM
    + "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}" + QWEN_VL_TEMPLATE_TAIL
)
# The InternVL3 (-hf) chat template shape: <video>/<IMG_CONTEXT> placeholders followed by a newline.
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\n' }}{% elif content['type'] == 'text' %}"
    "{{ content['text'] }}{% endif %}{% endfor %}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def build_tiny_tokenizer(named_tokens: dict[str, str] | None = None):
    """Byte-level BPE `Qwen2Tokenizer` (every byte a token, "Yes"/"No" merged) with Qwen's special tokens."""
    from tokenizers import AddedToken
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}
    merges: list[tuple[str, str]] = []  # Qwen2Tokenizer(merges=...) wants tuples
    for word in _MERGED_WORDS:
        prefix = word[0]
        for ch in word[1:]:
            pair = (prefix, ch)
            prefix += ch
            if prefix not in vocab:
                merges.append(pair)
                vocab[prefix] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=dict(named_tokens) if named_tokens else None,
    )
    specials = QWEN_SPECIAL_TOKENS + list((named_tokens or {}).values())
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in specials], special_tokens=True
    )
    for word in ("Yes", "No"):
        ids = tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            raise RuntimeError(f"tiny tokenizer: {word!r} is not a single token ({ids}); fix _MERGED_WORDS")
    return tokenizer


def _is_complete(out_dir: Path, family: str) -> bool:
    marker = out_dir / _COMPLETE_MARKER
    if not marker.is_file():
        return False
    return json.loads(marker.read_text()).get("family") == family


def _random_init(model, seed: int, init_std: float):
    """Re-draw every weight matrix from N(0, init_std^2) (norm scales stay 1).

    HF's default std (0.02) makes a 2-layer random model almost blind to its visual input (answer log-probs move
    by ~1e-2 between two unrelated videos), which would let equality and ordering tests pass vacuously; at 0.2 they
    move by ~1.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim >= 2:
                param.copy_(torch.randn(param.shape, generator=generator) * init_std)
    return model.eval()


def _finish(out_dir: Path, family: str, model, processor) -> Path:
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    (out_dir / _COMPLETE_MARKER).write_text(json.dumps({"family": family}))
    logger.info("saved tiny %s critic to %s", family, out_dir)
    return out_dir


def _text_config(vocab_size: int, hidden: int, mrope: bool) -> dict:
    rope: dict = {"rope_type": "default", "rope_theta": 10000.0}
    if mrope:
        rope["mrope_section"] = [2, 3, 3]  # sums to head_dim / 2 = 8
    return {
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 4096,
        "rope_parameters": rope,
    }


def _qwen_processor(processor_cls, tokenizer, min_pixels: int, max_pixels: int):
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    return processor_cls(
        image_processor=Qwen2VLImageProcessor(size=size),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(size=size),
        chat_template=QWEN_VL_CHAT_TEMPLATE,
    )


def _build_qwen(out_dir, seed: int, family: str, min_pixels: int, max_pixels: int, init_std: float) -> Path:
    import transformers as tf

    out_dir = Path(out_dir)
    if _is_complete(out_dir, family):
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    hidden = 32
    ids = {
        name: tokenizer.convert_tokens_to_ids(tok)
        for name, tok in [
            ("image_token_id", "<|image_pad|>"),
            ("video_token_id", "<|video_pad|>"),
            ("vision_start_token_id", "<|vision_start|>"),
            ("vision_end_token_id", "<|vision_end|>"),
        ]
    }
    text = _text_config(len(tokenizer), hidden, mrope=True)
    text.update(bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if family == "qwen2_5_vl":
        vision = {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": hidden,
            "window_size": 56,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        }
        config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
        model_cls, processor_cls = tf.Qwen2_5_VLForConditionalGeneration, tf.Qwen2_5_VLProcessor
    else:
        vision = {"depth": 2, "embed_dim": 32, "hidden_size": hidden, "mlp_ratio": 2, "num_heads": 2}
        config = tf.Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
        model_cls, processor_cls = tf.Qwen2VLForConditionalGeneration, tf.Qwen2VLProcessor
    model = _random_init(model_cls(config), seed, init_std)
    processor = _qwen_processor(processor_cls, tokenizer, min_pixels, max_pixels)
    return _finish(out_dir, family, model, processor)


def build_tiny_qwen2_5_vl(
    out_dir, seed: int = 0, min_pixels: int = 56 * 56, max_pixels: int = 112 * 112, init_std: float = 0.2
) -> Path:
    """Tiny random `Qwen2_5_VLForConditionalGeneration` + `Qwen2_5_VLProcessor` saved to `out_dir`.

    The processors' pixel budget [min_pixels, max_pixels] (default 56x56 .. 112x112) sets the frame size the model
    sees: a 56x84 frame is already a target size (4x6 patches, 6 tokens per 2 frames).
    """
    return _build_qwen(out_dir, seed, "qwen2_5_vl", min_pixels, max_pixels, init_std)


def build_tiny_qwen2_vl(
    out_dir, seed: int = 0, min_pixels: int = 56 * 56, max_pixels: int = 112 * 112, init_std: float = 0.2
) -> Path:
    """Tiny random `Qwen2VLForConditionalGeneration` + `Qwen2VLProcessor` saved to `out_dir`."""
    return _build_qwen(out_dir, seed, "qwen2_vl", min_pixels, max_pixels, init_std)


def build_tiny_internvl(out_dir, seed: int = 0, tile_size: int = 448, init_std: float = 0.2) -> Path:
    """Tiny random `InternVLForConditionalGeneration` + `InternVLProcessor` (InternVL3-hf layout) at `out_dir`.

    The vision tower keeps the real 448 tile but uses 56-pixel patches (8x8 grid, 16 tokens per tile after the
    0.5 pixel shuffle) so that a frame costs 16 `<IMG_CONTEXT>` tokens instead of 256.
    """
    import transformers as tf

    out_dir = Path(out_dir)
    if _is_complete(out_dir, "internvl"):
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(INTERNVL_NAMED_TOKENS)
    hidden, patch = 32, 56
    image_seq_length = int((tile_size // patch) ** 2 * 0.5**2)
    text = _text_config(len(tokenizer), hidden, mrope=False)
    text.update(
        model_type="qwen2",
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "image_size": [tile_size, tile_size],
        "patch_size": [patch, patch],
    }
    config = tf.InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_seq_length=image_seq_length,
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        downsample_ratio=0.5,
    )
    model = _random_init(tf.InternVLForConditionalGeneration(config), seed, init_std)
    norm = {
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
        "size": {"height": tile_size, "width": tile_size},
    }
    processor = tf.InternVLProcessor(
        image_processor=tf.GotOcr2ImageProcessor(crop_to_patches=True, max_patches=12, **norm),
        tokenizer=tokenizer,
        video_processor=tf.InternVLVideoProcessor(**norm),
        image_seq_length=image_seq_length,
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )
    return _finish(out_dir, "internvl", model, processor)
