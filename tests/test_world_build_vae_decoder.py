"""The vae_decoder build stage on a tiny AutoencoderKLWan: encoder bit-exact, decoder learns, export is atomic."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vidreward.world.build_vae import (
    VaeStageConfig,
    decode_unclamped,
    dilate,
    encode_mean,
    make_vae,
    reconstruction_loss,
    render_with_masks,
)
from vidreward.world.build_vae_decoder import (
    DecoderStageConfig,
    assert_frozen_unchanged,
    frozen_state,
    load_decoder_trainable_vae,
    noisy_latent,
    train_vae_decoder,
)
from vidreward.world.render import RenderConfig
from vidreward.world.splits import world_prompts
from vidreward.world.vae_export import export_vae

RENDER = RenderConfig(num_frames=5, height=32, width=32)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def tiny_vae_dir(tmp_path):
    """A randomly initialised tiny VAE of the shipped architecture, saved as a diffusers directory."""
    torch.manual_seed(0)
    vae = make_vae(VaeStageConfig(base_dim=16, z_dim=4))
    vae.register_to_config(latents_mean=[0.1, -0.2, 0.0, 0.3], latents_std=[0.5, 1.0, 2.0, 1.5])
    path = tmp_path / "gen" / "vae"
    vae.save_pretrained(str(path), safe_serialization=True)
    return path


def _stage_loss(vae, cfg: DecoderStageConfig, prompts) -> float:
    """The stage's training loss (clean latents) on fixed ``prompts``."""
    video, mask = render_with_masks(prompts, RENDER)
    with torch.no_grad():
        recon = decode_unclamped(vae, encode_mean(vae, video))
        return float(reconstruction_loss(recon, video, dilate(mask, cfg.ring_px), cfg.fg_weight, cfg.l2_weight,
                                         cfg.edge_weight))


def test_only_decoder_is_trainable(tiny_vae_dir):
    vae = load_decoder_trainable_vae(tiny_vae_dir)
    trainable = {n.split(".")[0] for n, p in vae.named_parameters() if p.requires_grad}
    frozen = {n.split(".")[0] for n, p in vae.named_parameters() if not p.requires_grad}
    assert trainable == {"decoder", "post_quant_conv"}
    assert frozen == {"encoder", "quant_conv"}


def test_widened_decoder_keeps_encoder_statistics_and_starts_as_the_shipped_decoder(tiny_vae_dir, tmp_path):
    shipped = load_decoder_trainable_vae(tiny_vae_dir)
    wide = load_decoder_trainable_vae(tiny_vae_dir, decoder_base_dim=32)
    assert wide.config.decoder_base_dim == 32 and shipped.config.decoder_base_dim is None
    assert list(wide.config.latents_mean) == list(shipped.config.latents_mean)
    assert list(wide.config.latents_std) == list(shipped.config.latents_std)
    for name, tensor in frozen_state(shipped).items():
        assert torch.equal(frozen_state(wide)[name], tensor), name
    # the decoder is a new, wider module: its first conv maps z to 4 * 32 channels instead of 4 * 16
    assert wide.decoder.conv_in.weight.shape[0] == 2 * shipped.decoder.conv_in.weight.shape[0]
    video, _ = render_with_masks(world_prompts("heldout", 1, num_frames=RENDER.num_frames), RENDER)
    with torch.no_grad():
        z = encode_mean(shipped, video)
        assert torch.equal(encode_mean(wide, video), z)
        # widening without noise is function-preserving: the same video as the shipped decoder
        assert torch.allclose(wide.decode(z).sample, shipped.decode(z).sample, atol=1e-5)
        noisy = load_decoder_trainable_vae(tiny_vae_dir, decoder_base_dim=32, widen_noise=0.01)
        assert not torch.equal(noisy.decode(z).sample, wide.decode(z).sample)
    # same width as shipped = the shipped decoder itself, fine-tuned in place
    same = load_decoder_trainable_vae(tiny_vae_dir, decoder_base_dim=16)
    assert all(torch.equal(v, shipped.state_dict()[k]) for k, v in same.state_dict().items())
    # the stage's "before" metrics are the shipped VAE's, not the noised widened decoder's
    cfg = DecoderStageConfig(decoder_base_dim=32, batch_size=2, warmup_steps=1, max_steps=2, minutes=5.0,
                             eval_every=0, checkpoint_every=2, eval_videos=2, latent_noise_max=0.0)
    train = world_prompts("train", 8, num_frames=RENDER.num_frames)
    heldout = world_prompts("heldout", 2, num_frames=RENDER.num_frames)
    _, record = train_vae_decoder(cfg, RENDER, tiny_vae_dir, tmp_path / "stage", train, heldout, seed=0)
    from vidreward.world.build_vae_decoder import heldout_metrics
    assert record["before"] == heldout_metrics(shipped.eval(), cfg, RENDER, heldout)


def test_decoder_stage_keeps_encoder_bit_exact_and_lowers_loss(tiny_vae_dir, tmp_path):
    cfg = DecoderStageConfig(batch_size=2, lr=3e-3, warmup_steps=1, max_steps=12, minutes=5.0, eval_every=0,
                             checkpoint_every=6, eval_videos=2, latent_noise_max=0.05)
    train = world_prompts("train", 16, num_frames=RENDER.num_frames)
    heldout = world_prompts("heldout", 2, num_frames=RENDER.num_frames)
    original = load_decoder_trainable_vae(tiny_vae_dir).eval()
    loss_before = _stage_loss(original, cfg, train[:4])

    vae, record = train_vae_decoder(cfg, RENDER, tiny_vae_dir, tmp_path / "stage", train, heldout, seed=0)

    assert record["steps"] == 12 and record["encoder_bit_exact"]
    for name, tensor in frozen_state(original).items():
        assert torch.equal(frozen_state(vae)[name], tensor), name
    changed = [k for k, v in original.decoder.state_dict().items() if not torch.equal(v, vae.decoder.state_dict()[k])]
    assert changed, "the decoder did not change"
    assert _stage_loss(vae, cfg, train[:4]) < 0.9 * loss_before
    assert set(record["before"]) >= {"fg_psnr", "psnr", "oracle_confirm", "noisy_fg_psnr"}
    # a finished stage is skipped and returns the same weights
    again, record2 = train_vae_decoder(cfg, RENDER, tiny_vae_dir, tmp_path / "stage", train, heldout, seed=0)
    assert record2["after"] == record["after"]
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in vae.state_dict().items())


def test_frozen_check_catches_a_changed_encoder(tiny_vae_dir):
    vae = load_decoder_trainable_vae(tiny_vae_dir)
    reference = frozen_state(vae)
    assert_frozen_unchanged(vae, reference)
    with torch.no_grad():
        next(vae.encoder.parameters()).view(-1)[0] += 1e-6
    with pytest.raises(RuntimeError, match="frozen encoder weights changed"):
        assert_frozen_unchanged(vae, reference)


def test_latent_noise_is_in_normalised_units(tiny_vae_dir):
    vae = load_decoder_trainable_vae(tiny_vae_dir)
    z = torch.zeros(64, 4, 3, 8, 8)
    assert torch.equal(noisy_latent(vae, z, 0.0, np.random.default_rng(0)), z)
    noisy = noisy_latent(vae, z, 0.2, np.random.default_rng(0))
    # per channel c: std = latents_std[c] * sqrt(E[s^2]) with s ~ U(0, 0.2): E[s^2] = 0.2^2 / 3
    expected = torch.tensor([0.5, 1.0, 2.0, 1.5]) * 0.2 / 3**0.5
    measured = noisy.transpose(0, 1).reshape(4, -1).std(dim=1)
    assert torch.allclose(measured, expected, rtol=0.1)


def test_export_replaces_only_the_vae(tiny_vae_dir):
    gen = tiny_vae_dir.parent
    (gen / "transformer").mkdir()
    (gen / "transformer" / "weights.bin").write_bytes(b"dit")
    (gen / "build_report.json").write_text(json.dumps({"bench": 1}))
    torch.manual_seed(1)
    other = make_vae(VaeStageConfig(base_dim=16, z_dim=4))
    other.save_pretrained(str(gen / "elsewhere"))
    other = type(other).from_pretrained(str(gen / "elsewhere"))  # a model loaded from a path remembers it
    (gen / "elsewhere" / "config.json").unlink()
    (gen / "elsewhere" / "diffusion_pytorch_model.safetensors").unlink()
    (gen / "elsewhere").rmdir()
    export_vae(other, gen)
    assert "_name_or_path" not in json.loads((gen / "vae" / "config.json").read_text())  # no local path shipped
    loaded = load_decoder_trainable_vae(gen / "vae")
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert (gen / "transformer" / "weights.bin").read_bytes() == b"dit"
    assert sorted(p.name for p in gen.iterdir()) == ["build_report.json", "transformer", "vae"]
