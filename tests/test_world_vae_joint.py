"""Latent growth (exact) and the whole-VAE fine-tuning stage ``vae_joint`` (trains, records, resumes identically)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from vidreward.world.build_vae import (
    VaeStageConfig,
    decode_unclamped,
    make_vae,
    render_with_masks,
)
from vidreward.world.build_vae_joint import JointStageConfig, start_vae, train_vae_joint
from vidreward.world.latent_expand import expand_latents
from vidreward.world.render import RenderConfig
from vidreward.world.splits import world_prompts

RENDER = RenderConfig(num_frames=5, height=32, width=32)

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_vae(z_dim: int = 4):
    torch.manual_seed(0)
    vae = make_vae(VaeStageConfig(base_dim=16, z_dim=z_dim))
    vae.register_to_config(latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim)
    return vae.eval()


def test_grown_latent_keeps_old_channels_and_video_exactly():
    vae = _tiny_vae(4)
    with torch.no_grad():  # give the biases values, so that zero biases could not hide a misplaced row
        for name in ("quant_conv", "post_quant_conv"):
            getattr(vae, name).bias.normal_()
    grown = expand_latents(vae, 7, init_std=0.1, generator=torch.Generator().manual_seed(0)).eval()
    assert grown.config.z_dim == 7 and len(grown.config.latents_std) == 7
    video, _ = render_with_masks(world_prompts("heldout", 2, num_frames=5), RENDER)  # [2, 3, 5, 32, 32]
    with torch.no_grad():
        old_post, new_post = vae.encode(video).latent_dist, grown.encode(video).latent_dist
        old_video, new_video = vae.decode(old_post.mean).sample, grown.decode(new_post.mean).sample
    assert torch.equal(new_post.mean[:, :4], old_post.mean)
    assert torch.equal(new_post.logvar[:, :4], old_post.logvar)
    assert new_post.mean[:, 4:].abs().max() > 0  # the new channels carry features of the encoder
    assert torch.allclose(new_video, old_video, atol=1e-6)
    # the new channels' decoder columns start at zero but receive a gradient
    loss = decode_unclamped(grown, grown.encode(video).latent_dist.mean).square().mean()
    loss.backward()
    new_columns = grown.decoder.conv_in.weight.grad[:, 4:]
    assert new_columns.abs().max() > 0
    assert torch.equal(grown.decoder.conv_in.weight[:, 4:], torch.zeros_like(grown.decoder.conv_in.weight[:, 4:]))
    assert expand_latents(vae, 4) is vae
    with pytest.raises(ValueError, match="only be added"):
        expand_latents(vae, 3)


def test_joint_stage_trains_both_sides_records_and_resumes_identically(tmp_path, kill_train_stage_at):
    vae = _tiny_vae(4)
    gen = tmp_path / "gen"
    vae.save_pretrained(str(gen / "vae"), safe_serialization=True)
    (gen / "build_report.json").write_text(json.dumps({"vae": {"steps": 7}, "dit": {"steps": 1}}))
    cfg = JointStageConfig(z_dim=6, batch_size=2, lr=3e-3, warmup_steps=1, max_steps=8, minutes=5.0, eval_every=4,
                           checkpoint_every=4, eval_videos=2, train_crop=16)
    train = world_prompts("train", 16, num_frames=RENDER.num_frames)
    heldout = world_prompts("heldout", 2, num_frames=RENDER.num_frames)
    trained, record = train_vae_joint(cfg, RENDER, gen / "vae", tmp_path / "stage", train, heldout, seed=0)
    assert record["steps"] == 8 and record["z_dim"] == 6 and trained.config.z_dim == 6
    assert [h["step"] for h in record["history"]] == [4, 8]
    assert record["start_report"] == {"vae": {"steps": 7}}  # the start VAE's own build record, nothing else
    assert set(record["before"]) >= {"fg_psnr", "oracle_confirm"} and record["gate_passed"] is False
    start = expand_latents(vae, 6, cfg.init_std, torch.Generator().manual_seed(0))
    for side in ("encoder", "decoder"):  # both sides trained
        before, after = getattr(start, side).state_dict(), getattr(trained, side).state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before), side
    # the generator's VAE may be replaced after the first run: the stage starts from its own copy
    _tiny_vae(5).save_pretrained(str(gen / "vae"), safe_serialization=True)
    again, _ = train_vae_joint(cfg, RENDER, gen / "vae", tmp_path / "stage", train, heldout, seed=0)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in trained.state_dict().items())
    # finished below the gate: a rerun with a larger budget trains on from the last checkpoint
    more, more_record = train_vae_joint(dataclasses.replace(cfg, max_steps=10), RENDER, gen / "vae",
                                        tmp_path / "stage", train, heldout, seed=0)
    assert more_record["steps"] == 10
    assert any(not torch.equal(v, more.state_dict()[k]) for k, v in trained.state_dict().items())
    # a run killed at step 6 (after its step-4 checkpoint) and resumed ends with the weights of the unbroken run
    vae.save_pretrained(str(gen / "vae"), safe_serialization=True)
    with kill_train_stage_at(6) as killed, pytest.raises(killed):
        train_vae_joint(cfg, RENDER, gen / "vae", tmp_path / "stage2", train, heldout, seed=0)
    resumed, resumed_record = train_vae_joint(cfg, RENDER, gen / "vae", tmp_path / "stage2", train, heldout, seed=0)
    assert [h["step"] for h in resumed_record["history"]] == [4, 8]  # the step-4 evaluation survived the kill
    for k, v in trained.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_joint_stage_widens_the_decoder_exactly_and_trains_on_fresh_scenes(tmp_path):
    vae = _tiny_vae(4)
    gen = tmp_path / "gen"
    vae.save_pretrained(str(gen / "vae"), safe_serialization=True)
    cfg = JointStageConfig(z_dim=6, decoder_base_dim=32, batch_size=2, lr=3e-3, warmup_steps=1, max_steps=3,
                           minutes=5.0, eval_every=0, checkpoint_every=10, eval_videos=2, train_crop=16)
    start, _ = start_vae(cfg, gen / "vae", tmp_path / "start", seed=0)
    assert start.config.decoder_base_dim == 32 and start.config.z_dim == 6
    assert start.decoder.conv_in.weight.shape[0] == 2 * vae.decoder.conv_in.weight.shape[0]  # 32 * 2 channels
    video, _ = render_with_masks(world_prompts("heldout", 2, num_frames=5), RENDER)  # [2, 3, 5, 32, 32]
    with torch.no_grad():
        old_video = vae.decode(vae.encode(video).latent_dist.mean).sample
        new_video = start.eval().decode(start.encode(video).latent_dist.mean).sample
    assert torch.allclose(new_video, old_video, atol=1e-5)
    heldout = world_prompts("heldout", 2, num_frames=RENDER.num_frames)
    # train=None: fresh train-split scenes per step, a pure function of the step (two runs end equal)
    first, record = train_vae_joint(cfg, RENDER, gen / "vae", tmp_path / "a", None, heldout, seed=0)
    second, _ = train_vae_joint(cfg, RENDER, gen / "vae", tmp_path / "b", None, heldout, seed=0)
    assert record["steps"] == 3 and record["config"]["decoder_base_dim"] == 32
    assert all(torch.equal(v, second.state_dict()[k]) for k, v in first.state_dict().items())
    assert any(not torch.equal(v, first.state_dict()[k]) for k, v in start.state_dict().items())


def test_joint_stage_names_a_missing_start(tmp_path):
    cfg = JointStageConfig(start_dir=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        train_vae_joint(cfg, RENDER, tmp_path / "gen" / "vae", tmp_path / "stage", [], [], seed=0)


def test_build_with_vae_joint_stops_before_the_dit_below_the_gate(tmp_path, caplog):
    from vidreward.world.build_generator import BuildConfig, build_generator

    gen = tmp_path / "gen"
    _tiny_vae(4).save_pretrained(str(gen / "vae"), safe_serialization=True)
    joint = JointStageConfig(z_dim=6, batch_size=2, warmup_steps=1, max_steps=2, minutes=5.0, eval_every=0,
                             eval_videos=2, train_prompts=16, train_crop=16)
    cfg = BuildConfig(work_dir=str(tmp_path / "work"), out_dir=str(gen), num_frames=5, size=32, vae_joint=joint,
                      stages=("vae_joint", "text", "dit", "export"))
    with caplog.at_level("ERROR"):
        report = build_generator(cfg)
    assert report["status"] == "vae_gate_failed" and report["vae_joint"]["steps"] == 2
    assert report["vae_joint"]["heldout"]["count"] == 2  # the stage's own held-out renders (eval_videos=2)
    assert "--vae-joint-minutes / --vae-joint-steps" in caplog.text
    assert "dit" not in report and not (tmp_path / "work" / "dit").exists()
    assert json.loads((tmp_path / "work" / "build_report.json").read_text())["status"] == "vae_gate_failed"


def test_build_with_a_passing_vae_joint_trains_and_exports_a_dit_on_the_grown_latent(tmp_path):
    """The chain the gate guards: a joint stage that passes (gate set to 0 here) grows the latent 4 -> 6 channels, and
    the DiT, its latent cache and the exported pipeline all take the grown channel count."""
    from vidreward.generators.wan import WanGenerator
    from vidreward.world.build_dit import DitStageConfig
    from vidreward.world.build_generator import BuildConfig, build_generator

    gen = tmp_path / "gen"
    _tiny_vae(4).save_pretrained(str(gen / "vae"), safe_serialization=True)
    joint = JointStageConfig(z_dim=6, batch_size=2, warmup_steps=1, max_steps=2, minutes=5.0, eval_every=0,
                             eval_videos=2, train_prompts=16, train_crop=16, min_fg_psnr=0.0, min_oracle_confirm=0.0)
    dit = DitStageConfig(text_dim=16, text_layers=1, num_layers=1, num_heads=2, head_dim=8, ffn_dim=32,
                         cache_videos=8, caption_styles=1, batch_size=2, warmup_steps=1, max_steps=2, minutes=5.0,
                         snapshot_every=1, checkpoint_every=1)
    cfg = BuildConfig(work_dir=str(tmp_path / "work"), out_dir=str(gen), num_frames=5, size=32, vae_joint=joint,
                      dit=dit, bench_prompts=2, stages=("vae_joint", "text", "dit", "export"))
    report = build_generator(cfg)
    assert report["status"] == "done" and report["vae_joint"]["gate_passed"]
    assert report["dit"]["steps"] == 2
    shipped = WanGenerator.from_pretrained(str(gen))
    assert shipped.vae.config.z_dim == 6 and shipped.transformer.config.in_channels == 6
    assert len(shipped.vae.config.latents_mean) == 6  # the cache's statistics of the grown latent
    assert json.loads((gen / "build_report.json").read_text())["status"] == "done"
