"""Latent crops of the decoder-only VAE stage: the scored region by hand, the cache, and a crop stage run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidreward.world.build_vae import (
    VaeStageConfig,
    decode_unclamped,
    encode_mean,
    make_vae,
    psnr,
    render_with_masks,
)
from vidreward.world.build_vae_decoder import (
    DecoderStageConfig,
    load_decoder_trainable_vae,
    train_vae_decoder,
)
from vidreward.world.render import RenderConfig
from vidreward.world.splits import world_prompts
from vidreward.world.vae_crops import CropBox, LatentCache, _interior, crop_box, decode_crops

RENDER = RenderConfig(num_frames=5, height=32, width=32)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_interior_trims_only_inner_sides():
    # a 10-wide crop of a 16-wide latent, margin 1, 4 video pixels per latent pixel
    assert _interior(0, 10, 16, 1, 4) == (slice(0, 36), slice(0, 36))  # at the frame's left side: keep it
    assert _interior(6, 10, 16, 1, 4) == (slice(4, 40), slice(28, 64))  # at the right side: keep it
    assert _interior(3, 10, 16, 1, 4) == (slice(4, 36), slice(16, 48))  # inside: trim both
    assert _interior(0, 16, 16, 2, 4) == (slice(0, 64), slice(0, 64))  # the whole frame: nothing to trim


def test_crop_box_is_uniform_and_checks_its_size():
    rng = np.random.default_rng(0)
    boxes = [crop_box(rng, (16, 16), 10, 1, 4) for _ in range(400)]
    assert {b.top for b in boxes} == set(range(7)) and {b.left for b in boxes} == set(range(7))
    for b in boxes:
        assert b.loss_rows.stop - b.loss_rows.start == b.pixel_rows.stop - b.pixel_rows.start
        assert b.pixel_rows.start == 4 * b.top + b.loss_rows.start
    with pytest.raises(ValueError, match="does not fit"):
        crop_box(rng, (16, 16), 17, 1, 4)
    with pytest.raises(ValueError, match="does not fit"):
        crop_box(rng, (16, 16), 2, 1, 4)


def test_latent_cache_encodes_each_video_once():
    calls = []

    def encode(video):
        calls.append(video.shape)
        return video.mean(dim=2, keepdim=True) + len(calls)

    cache = LatentCache(encode)
    video = torch.rand(3, 5, 8, 8)
    first = cache.get(7, video)
    assert torch.equal(cache.get(7, torch.zeros_like(video)), first)  # the stored latent, not a new encode
    assert calls == [(1, 3, 5, 8, 8)] and len(cache) == 1
    cache.get(8, video)
    assert len(calls) == 2 and len(cache) == 2


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of videos in [-1, 1], through the build's own :func:`build_vae.psnr` on [0, 1]."""
    return psnr(a * 0.5 + 0.5, b * 0.5 + 0.5)


def test_scored_region_of_a_crop_decodes_like_the_whole_frame():
    """On the shipped world VAE (what the stage fine-tunes), a 10 x 10 crop's scored region matches the whole-frame
    decode far above the 25 dB gate (38.4 dB measured on 8 train renders in session 7), and better than the
    untrimmed crop: the margin is needed."""
    from diffusers import AutoencoderKLWan

    from vidreward.world.build_generator import ASSET_DIR

    vae = AutoencoderKLWan.from_pretrained(str(ASSET_DIR / "vae")).eval()
    render_cfg = RenderConfig(num_frames=9, height=64, width=64)
    video, mask = render_with_masks(world_prompts("train", 2, num_frames=9), render_cfg)
    with torch.no_grad():
        z = encode_mean(vae, video)  # [2, 16, 5, 16, 16]
        full = decode_unclamped(vae, z)
        boxes = [CropBox(0, 0, 10, *[slice(0, 36)] * 2, *[slice(0, 36)] * 2),  # the top-left corner crop
                 CropBox(3, 4, 10, slice(4, 36), slice(4, 36), slice(16, 48), slice(20, 52))]  # an inner crop
        parts = decode_crops(lambda zz: decode_unclamped(vae, zz), z, video, mask, boxes)
        untrimmed = decode_unclamped(vae, z[1:, ..., 3:13, 4:14])
    for (recon, target, m), box, i in zip(parts, boxes, range(2)):
        assert torch.equal(target, video[i:i + 1, ..., box.pixel_rows, box.pixel_cols])
        assert torch.equal(m, mask[i:i + 1, ..., box.pixel_rows, box.pixel_cols])
        assert _psnr(recon, full[i:i + 1, ..., box.pixel_rows, box.pixel_cols]) > 35
    assert _psnr(untrimmed, full[1:, ..., 12:52, 16:56]) < _psnr(parts[1][0], full[1:, ..., 16:48, 20:52]) - 3


def _saved_tiny_vae(tmp_path):
    """A seeded 4-channel tiny VAE (latent statistics 0 / 1) saved as ``<tmp_path>/gen/vae``; returns that path."""
    torch.manual_seed(0)
    vae = make_vae(VaeStageConfig(base_dim=16, z_dim=4))
    vae.register_to_config(latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    vae_dir = tmp_path / "gen" / "vae"
    vae.save_pretrained(str(vae_dir), safe_serialization=True)
    return vae_dir


def test_decoder_stage_on_crops_lowers_loss_and_resumes_identically(tmp_path, kill_train_stage_at):
    vae_dir = _saved_tiny_vae(tmp_path)
    cfg = DecoderStageConfig(batch_size=2, lr=3e-3, warmup_steps=1, max_steps=12, minutes=5.0, eval_every=0,
                             checkpoint_every=6, eval_videos=2, latent_noise_max=0.0, crop_latent=6)
    train = world_prompts("train", 16, num_frames=RENDER.num_frames)
    heldout = world_prompts("heldout", 2, num_frames=RENDER.num_frames)
    trained, record = train_vae_decoder(cfg, RENDER, vae_dir, tmp_path / "stage", train, heldout, seed=0)
    assert record["steps"] == 12 and record["encoder_bit_exact"]
    original = load_decoder_trainable_vae(vae_dir).eval()
    video, _ = render_with_masks(train[:4], RENDER)
    with torch.no_grad():
        err = [float((decode_unclamped(v, encode_mean(v, video)) - video).square().mean()) for v in (original, trained)]
    assert err[1] < 0.9 * err[0]
    # a run killed at step 6 (after its checkpoint) and resumed ends with the same weights as the run that never
    # stopped; the resumed run starts with an empty latent cache
    stage = tmp_path / "stage2"
    with kill_train_stage_at(6) as killed, pytest.raises(killed):
        train_vae_decoder(cfg, RENDER, vae_dir, stage, train, heldout, seed=0)
    resumed, _ = train_vae_decoder(cfg, RENDER, vae_dir, stage, train, heldout, seed=0)
    for k, v in trained.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_decoder_stage_on_fresh_scenes_resumes_identically(tmp_path, kill_train_stage_at):
    vae_dir = _saved_tiny_vae(tmp_path)
    cfg = DecoderStageConfig(batch_size=2, lr=3e-3, warmup_steps=1, max_steps=6, minutes=5.0, eval_every=0,
                             checkpoint_every=3, eval_videos=2, latent_noise_max=0.02, crop_latent=6,
                             train_prompts=None)
    heldout = world_prompts("heldout", 2, num_frames=RENDER.num_frames)
    trained, record = train_vae_decoder(cfg, RENDER, vae_dir, tmp_path / "stage", None, heldout, seed=0)
    assert record["steps"] == 6 and record["encoder_bit_exact"]
    start = load_decoder_trainable_vae(vae_dir).state_dict()
    assert any(not torch.equal(v, trained.state_dict()[k]) for k, v in start.items() if k.startswith("decoder."))
    with kill_train_stage_at(4) as killed, pytest.raises(killed):
        train_vae_decoder(cfg, RENDER, vae_dir, tmp_path / "stage2", None, heldout, seed=0)
    resumed, _ = train_vae_decoder(cfg, RENDER, vae_dir, tmp_path / "stage2", None, heldout, seed=0)
    for k, v in trained.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
