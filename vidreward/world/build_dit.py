"""Stages 2-4 of the world generator build: text encoder + tokenizer, the DiT, and the export.

**Text** — a word-level tokenizer over the world's caption vocabulary (plus the generic tiny-model words of
:func:`vidreward.generators.tiny.build_word_tokenizer`) and a tiny ``UMT5EncoderModel``, **randomly initialised
and frozen** (decision: the DiT learns to read a fixed random code; a random UMT5 still maps each word and its
position to a distinct vector, which is all the world's closed grammar needs).

**DiT** — a tiny ``WanTransformer3DModel`` trained by flow matching on cached latents. Per step, with x_0 the
normalised posterior-mean latent ``(z - mean_c) / std_c`` of a train render, eps ~ N(0, I) and
u ~ U(0, 1) mapped through Wan's shift s (``sigma = s u / (1 + (s - 1) u)``, t = 1000 sigma):

    x_sigma = (1 - sigma) x_0 + sigma eps,     L = || v_theta(x_sigma, t, c) - (eps - x_0) ||^2

(:meth:`WanGenerator.prediction_error`), with the caption embedding c replaced by the empty prompt's with
probability ``cond_drop`` so classifier-free guidance works. Text is encoded exactly as at sampling time (padded
to the generator's 512 tokens, zero after each caption), and the latents are computed once and cached.

**Export** — the diffusers ``WanPipeline`` layout written atomically to the output directory.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from vidreward.generators.base import PromptEmbeds
from vidreward.generators.wan import WanGenerator
from vidreward.log import get_logger, progress
from vidreward.world.build_loop import StageBudget, mark_done, stage_done, train_stage
from vidreward.world.build_vae import encode_mean, render_with_masks
from vidreward.world.captions import make_caption
from vidreward.world.render import RenderConfig
from vidreward.world.splits import world_prompts

log = get_logger(__name__)

SHIFT: float = 3.0
"""flow-matching sigma shift of the shipped scheduler (and of the training sigmas)"""
MAX_SEQUENCE_LENGTH: int = 512
"""text tokens per prompt, as WanGenerator / WanPipeline use by default"""


@dataclasses.dataclass
class DitStageConfig:
    """Architecture, data and optimisation of the text and DiT stages."""

    text_dim: int = 64
    """UMT5 d_model (= the DiT's text_dim)"""
    text_layers: int = 2
    """UMT5 encoder layers"""
    num_layers: int = 4
    """DiT blocks"""
    num_heads: int = 4
    """DiT attention heads"""
    head_dim: int = 32
    """DiT head dimension (hidden size = num_heads * head_dim)"""
    ffn_dim: int = 256
    """DiT feed-forward width"""
    cache_videos: int = 2000
    """train-split videos whose latents are cached (each with captions of ``caption_styles`` styles)"""
    caption_styles: int = 2
    """caption styles per cached video (style = seed + k), so the DiT sees paraphrases"""
    batch_size: int = 16
    """latents per optimiser step"""
    lr: float = 1e-3
    """peak learning rate"""
    lr_final_frac: float = 0.1
    """final learning rate as a fraction of lr"""
    warmup_steps: int = 100
    """linear warm-up steps"""
    max_steps: int = 3000
    """step budget"""
    minutes: float = 25.0
    """wall-clock cap of the DiT stage in minutes"""
    cond_drop: float = 0.1
    """probability of training on the empty prompt (for classifier-free guidance)"""
    snapshot_every: int = 100
    """steps between DiT snapshots that the oracle bench scores after training"""
    checkpoint_every: int = 50
    """steps between training checkpoints"""


def world_vocabulary(count: int = 3000, styles: int = 3) -> list[str]:
    """Every lower-case word / punctuation token of captions of ``count`` scenes per split in ``styles`` styles."""
    words: set[str] = set()
    for split in ("train", "heldout"):
        for p in world_prompts(split, count):
            for k in range(styles):
                words.update(re.findall(r"\w+|[^\w\s]", make_caption(p.spec, style=p.seed + k).lower()))
    return sorted(words)


def make_text_encoder(cfg: DitStageConfig, seed: int):
    """(tokenizer, frozen random UMT5EncoderModel) over the world vocabulary."""
    from transformers import UMT5Config, UMT5EncoderModel

    from vidreward.generators.tiny import _WORDS, build_word_tokenizer

    words = list(dict.fromkeys(world_vocabulary() + list(_WORDS)))
    tokenizer = build_word_tokenizer(words)
    torch.manual_seed(seed)
    encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=cfg.text_dim, d_kv=cfg.text_dim // 4, d_ff=2 * cfg.text_dim,
        num_layers=cfg.text_layers, num_heads=4, relative_attention_num_buckets=16,
        relative_attention_max_distance=64, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )).eval().requires_grad_(False)
    return tokenizer, encoder


def make_transformer(cfg: DitStageConfig, z_dim: int, seed: int):
    """A fresh tiny ``WanTransformer3DModel``."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim,
        in_channels=z_dim, out_channels=z_dim, text_dim=cfg.text_dim, freq_dim=64, ffn_dim=cfg.ffn_dim,
        num_layers=cfg.num_layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=64,
    )


def scheduler_config() -> dict:
    """The shipped ``FlowMatchEulerDiscreteScheduler`` config."""
    return {"num_train_timesteps": 1000, "shift": SHIFT}


def cache_latents(gen: WanGenerator, cfg: DitStageConfig, render_cfg: RenderConfig, path: Path, seed: int) -> dict:
    """Compute once (or load) raw posterior-mean latents and trimmed caption embeddings of train videos.

    Saved with ``torch.save`` as ``{"latents": [N, z, F', H', W'], "text": [N * styles, L_max, D],
    "text_len": [N * styles], "uncond": [L_u, D]}``; caption k of video i is row ``i * styles + k``.
    """
    if path.is_file():
        return torch.load(path, weights_only=True)
    prompts = world_prompts("train", cfg.cache_videos, num_frames=render_cfg.num_frames)
    latents, texts = [], []
    with torch.no_grad():
        for start in progress(range(0, len(prompts), 16), desc="caching latents"):
            chunk = prompts[start:start + 16]
            video, _ = render_with_masks(chunk, render_cfg)
            latents.append(encode_mean(gen.vae, video))
            captions = [make_caption(p.spec, style=p.seed + k) for p in chunk for k in range(cfg.caption_styles)]
            texts.extend(_trimmed(gen, captions))
        uncond = _trimmed(gen, [""])[0]
    length = max(t.shape[0] for t in texts)
    text = torch.zeros(len(texts), length, texts[0].shape[1])
    for i, t in enumerate(texts):
        text[i, :t.shape[0]] = t
    cache = {"latents": torch.cat(latents), "text": text, "text_len": torch.tensor([t.shape[0] for t in texts]),
             "uncond": uncond}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(cache, tmp)
    tmp.replace(path)
    return cache


def _trimmed(gen: WanGenerator, captions: list[str]) -> list[torch.Tensor]:
    """Each caption's embedding rows up to its length (rows after it are zero at sampling time)."""
    embeds = gen.encode_prompts(captions).cond  # [B, 512, D]
    lengths = (embeds.abs().sum(-1) > 0).sum(-1)  # [B]
    return [e[:n].clone() for e, n in zip(embeds, lengths)]


def _padded(rows: list[torch.Tensor], dim: int) -> torch.Tensor:
    out = torch.zeros(len(rows), MAX_SEQUENCE_LENGTH, dim)
    for i, r in enumerate(rows):
        out[i, :r.shape[0]] = r
    return out  # [B, 512, D]


def train_dit(gen: WanGenerator, cache: dict, cfg: DitStageConfig, stage_dir: Path, seed: int) -> dict:
    """Flow-matching training of ``gen.transformer`` on the normalised cached latents (module doc)."""
    vae_cfg = gen.vae.config
    mean = torch.tensor(vae_cfg.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae_cfg.latents_std).view(1, -1, 1, 1, 1)
    x0_all = (cache["latents"] - mean) / std  # [N, z, F', H', W']
    styles = cfg.caption_styles
    text_dim = cache["text"].shape[-1]

    def loss_fn(step: int):
        rng = np.random.default_rng([seed, 1, step])
        idx = rng.choice(x0_all.shape[0], cfg.batch_size, replace=False)
        rows = []
        for i in idx:
            j = int(i) * styles + int(rng.integers(styles))
            rows.append(cache["uncond"] if rng.random() < cfg.cond_drop else cache["text"][j, :int(cache["text_len"][j])])
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        x0 = x0_all[torch.as_tensor(idx)]
        noise = torch.randn(x0.shape, generator=g)
        u = torch.rand(x0.shape[0], generator=g)
        sigma = SHIFT * u / (1 + (SHIFT - 1) * u)
        err = gen.prediction_error(x0, noise, sigma * 1000.0, PromptEmbeds(_padded(rows, text_dim), None))
        return err.mean(), {}

    budget = StageBudget(cfg.lr, cfg.lr_final_frac, cfg.warmup_steps, cfg.max_steps, cfg.minutes,
                         cfg.checkpoint_every, 0)
    return train_stage("dit", stage_dir, gen.transformer, loss_fn, budget, keep_every=cfg.snapshot_every)


def export_pipeline(gen: WanGenerator, out_dir: Path) -> Path:
    """Write ``gen`` as a diffusers ``WanPipeline`` directory (atomic: temp dir, then rename over ``out_dir``)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    pipe = WanPipeline(tokenizer=gen.tokenizer, text_encoder=gen.text_encoder, vae=gen.vae,
                       transformer=gen.transformer, scheduler=FlowMatchEulerDiscreteScheduler(**scheduler_config()))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.replace(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def snapshot_dirs(stage_dir: Path) -> list[Path]:
    """The DiT snapshots written during training, oldest first."""
    from vidreward.train.checkpoint import list_checkpoints

    return list_checkpoints(stage_dir / "snapshots")




__all__ = ["DitStageConfig", "cache_latents", "export_pipeline", "make_text_encoder", "make_transformer",
           "mark_done", "snapshot_dirs", "stage_done", "train_dit", "world_vocabulary"]
