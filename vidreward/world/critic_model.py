"""The world critic's architecture: a small `Qwen2_5_VLForConditionalGeneration`, its processor and tokenizer.

The tokenizer is a byte-level BPE `Qwen2Tokenizer` (Qwen's pre-tokenizer regex + byte-level alphabet) whose
merges are trained on the world's own text (captions, decompositions, the Figs. 15-17 questions, the Vanilla
question and the JSON answers), so every world word is one token and "Yes" / "No" are single tokens.

Sizes follow the world probe (../shared/notes/world-probe.md): a 4-layer x 128 vision tower (patch 14, merge
2x2, full attention in every block) and a SMALL 2-layer x 128 text model, which learned to compare the
question with the video where a wider/deeper one stayed at chance. Frames of the 64x64 world are resized to
84x84 (the processor's pixel budget), i.e. 6x6 patches, 9 merged tokens per pair of frames.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vidreward.critics.tiny import (
    QWEN_SPECIAL_TOKENS,
    QWEN_VL_TEMPLATE_HEAD,
    QWEN_VL_TEMPLATE_TAIL,
    QWEN_VL_VISUAL_ITEM,
)
from vidreward.log import get_logger

logger = get_logger(__name__)

#: Qwen2.5-VL's chat template with one change: a user turn's text parts come before its images / videos, so the
#: question precedes the video. In a causal LM every visual token then sees the question, and the comparison of
#: the question with the video can be computed at the visual tokens themselves (scripts/experiments/
#: critic_text_lm.py --question-first measures the effect). The order lives in the template, so it is saved with
#: the critic's processor and every caller (``VLMCritic.chat_text``) gets it.
QWEN_VL_TEXT_FIRST_CHAT_TEMPLATE = (
    QWEN_VL_TEMPLATE_HEAD
    + "{% for content in message['content'] %}{% if 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}"
    + "{% for content in message['content'] %}" + QWEN_VL_VISUAL_ITEM + "{% endif %}{% endfor %}"
    + QWEN_VL_TEMPLATE_TAIL
)


@dataclass(frozen=True)
class CriticArch:
    """Sizes of the world critic."""

    vision_depth: int = 4
    """vision transformer blocks"""
    vision_hidden: int = 128
    """vision hidden size"""
    vision_heads: int = 4
    """vision attention heads"""
    text_layers: int = 2
    """text decoder layers"""
    text_hidden: int = 128
    """text hidden size (also the merger's output size)"""
    text_heads: int = 4
    """text attention heads (head_dim = text_hidden / text_heads)"""
    text_kv_heads: int = 2
    """text key/value heads (grouped-query attention)"""
    frame_pixels: int = 84 * 84
    """processor pixel budget per frame (min = max): 64x64 world frames become 84x84"""
    temporal_patch_size: int = 2
    """frames per temporal patch (Qwen2.5-VL's 2). The vision tower attends within one temporal patch only (its
    ``cu_seqlens`` split per temporal index), so with 2 it never compares frames more than one apart: motion,
    jumps and shape changes over the clip are left to the language model. A larger value lets the tower see them;
    the processor pads N_f up to a multiple of it by repeating the last frame"""
    vocab_size: int = 1024
    """upper bound on the BPE vocabulary (bytes + merges); the world text needs fewer"""


def train_tokenizer(corpus: Iterable[str], vocab_size: int):
    """A `Qwen2Tokenizer` whose BPE merges are learnt from ``corpus``; "Yes"/"No" checked to be single tokens."""
    from tokenizers import AddedToken, Tokenizer, models, trainers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    alphabet = sorted(ByteLevel.alphabet())
    base = Qwen2Tokenizer(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[],
                          unk_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|endoftext|>")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = base.backend_tokenizer.pre_tokenizer  # Qwen's regex split + byte-level mapping
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, min_frequency=2,
                                  show_progress=False, special_tokens=[])
    bpe.train_from_iterator(corpus, trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, unk_token="<|endoftext|>",
                               eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS],
                         special_tokens=True)
    for word in ("Yes", "No"):
        for text in (word, f'"{word}"', f" {word}"):
            pieces = [tokenizer.decode([i]) for i in tokenizer.encode(text, add_special_tokens=False)]
            if word not in pieces and f" {word}" not in pieces:
                raise RuntimeError(f"world tokenizer: {word!r} is not a single token in {text!r} ({pieces})")
    return tokenizer


def build_critic_model(tokenizer, arch: CriticArch, seed: int):
    """(model, processor): a freshly initialised world critic with ``tokenizer`` (HF init, seeded)."""
    import torch
    import transformers as tf

    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    head_dim = arch.text_hidden // arch.text_heads
    quarter = head_dim // 2  # mrope sections (t, h, w) sum to head_dim / 2
    text = {
        "vocab_size": len(tokenizer), "hidden_size": arch.text_hidden, "intermediate_size": 2 * arch.text_hidden,
        "num_hidden_layers": arch.text_layers, "num_attention_heads": arch.text_heads,
        "num_key_value_heads": arch.text_kv_heads, "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                            "mrope_section": [quarter - 2 * (quarter // 3), quarter // 3, quarter // 3]},
        "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": True,
    }
    vision = {
        "depth": arch.vision_depth, "hidden_size": arch.vision_hidden, "intermediate_size": 2 * arch.vision_hidden,
        "num_heads": arch.vision_heads, "out_hidden_size": arch.text_hidden, "window_size": 112,
        "fullatt_block_indexes": list(range(arch.vision_depth)), "tokens_per_second": 2,
        "temporal_patch_size": arch.temporal_patch_size,
    }
    config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)
    torch.manual_seed(seed)
    model = tf.Qwen2_5_VLForConditionalGeneration(config)
    size = {"shortest_edge": arch.frame_pixels, "longest_edge": arch.frame_pixels}
    processor = tf.Qwen2_5_VLProcessor(
        image_processor=tf.Qwen2VLImageProcessor(size=size, temporal_patch_size=arch.temporal_patch_size),
        tokenizer=tokenizer,
        video_processor=tf.Qwen2VLVideoProcessor(size=size, temporal_patch_size=arch.temporal_patch_size),
        chat_template=QWEN_VL_TEXT_FIRST_CHAT_TEMPLATE)
    return model, processor


def save_initial_critic(out_dir: str | Path, corpus: Iterable[str], arch: CriticArch, seed: int) -> int:
    """Stage 0 of the build: a tokenizer trained on ``corpus`` (``arch.vocab_size``) and a freshly initialised critic
    of ``arch`` (:func:`build_critic_model`), saved to ``out_dir`` with its processor (safetensors). Load it with
    ``VLMCritic.from_pretrained``, which applies the processor's pixel budget as every stage does. Returns the
    tokenizer's size."""
    tokenizer = train_tokenizer(corpus, arch.vocab_size)
    model, processor = build_critic_model(tokenizer, arch, seed)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return len(tokenizer)


def export_critic(critic, out_dir: Path, info: dict) -> None:
    """Atomically replace ``out_dir`` with a ``VLMCritic``'s model + processor (+ ``critic_build.json`` info)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-critic-", dir=out_dir.parent))
    tmp.chmod(0o755)
    critic.model.save_pretrained(tmp, safe_serialization=True)
    critic.processor.save_pretrained(tmp)
    (tmp / "critic_build.json").write_text(json.dumps(info, indent=2, sort_keys=True))
    for f in tmp.iterdir():
        f.chmod(0o644)
    old = out_dir.with_name(out_dir.name + ".old")
    if out_dir.exists():
        out_dir.replace(old)
    tmp.replace(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    logger.info("exported critic to %s", out_dir)


def grow_text_model(model, extra_layers: int) -> None:
    """Append ``extra_layers`` decoder layers to ``model``'s text model, each a copy of its last layer with the
    attention output projection and the MLP down projection zeroed, so the grown model computes exactly what it did:
    a decoder layer adds ``o_proj(attn(norm(h)))`` and then ``down_proj(mlp(norm(h)))`` to its input ``h``, both 0
    here. Training moves them off zero (their gradients are not zero: they multiply non-zero activations).

    In place; ``config.text_config`` (``num_hidden_layers``, ``layer_types``) follows, so ``save_pretrained`` →
    ``from_pretrained`` rebuilds the grown model.
    """
    import copy

    import torch

    layers = model.model.language_model.layers
    text_config = model.model.language_model.config  # the same object as model.config.text_config
    for _ in range(extra_layers):
        layer = copy.deepcopy(layers[-1])
        layer.self_attn.layer_idx = len(layers)  # its slot in a generation KV cache
        with torch.no_grad():
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        layers.append(layer)
    text_config.num_hidden_layers = len(layers)
    text_config.layer_types = [*text_config.layer_types, *[text_config.layer_types[-1]] * extra_layers]
    logger.info("text model grown to %d decoder layers", len(layers))
