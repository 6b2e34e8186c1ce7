"""Build stage ``vae_joint``: fine-tune the whole world VAE (encoder and decoder), optionally with more latent
channels, then retrain the DiT on its latents.

Why: the ``vae_decoder`` stage keeps the encoder frozen so the shipped DiT stays valid, and decoder-only runs
stopped at 23.7-24.0 dB held-out foreground PSNR (sessions 4-8), below the 25 dB target, on training renders too.
This stage lets the encoder change what the latent holds (and, with more channels, hold more). Its probe
(``scripts/experiments/vae_train_probe.py --arm joint``, session 9; constant lr 3e-4) measured 24.0 dB after 300 steps
and 23.4 dB after 600, with 16 or 32 channels alike. On a fixed pool of train scenes it stopped at 24.7 dB (the pool
is memorised); on fresh scenes every step, the decoder widened to 32 and the latent grown to 32 channels, it reached
25.13 dB after 6000 steps (session 11, the shipped VAE; README "The world"). The latents change, so this stage is
always followed by the text, DiT and export stages of the build.

Start: ``<start_dir>`` (default: the generator's ``vae/``) is copied into ``<work_dir>/vae_joint/start_vae`` on the
first run, so a resumed or repeated run starts from the same weights even after the export replaced the
generator's VAE. With ``decoder_base_dim`` the start's decoder is first widened exactly (:mod:`.widen`, copies split
randomly); with ``z_dim`` above the start's, the latent is grown function-preservingly
(:func:`.latent_expand.expand_latents`, noise from ``torch.Generator().manual_seed(seed)``).

Loss (:func:`.build_vae.reconstruction_loss`, never duplicated): foreground-weighted squared error of the decoder's
**unclamped** output over objects plus a ``ring_px`` ring (weight ``fg_weight``), the rest weight 1:

    L = sum_p w_p (x_p - x^_p)^2 / sum_p w_p

Data: step s draws ``batch_size`` train-split scenes with ``numpy.random.default_rng([seed, s])``, from the pool
of ``train_prompts`` scenes or, with ``train_prompts=None``, fresh ones every step; it renders whole 9-frame videos
and takes one ``train_crop`` x ``train_crop`` window aligned to the latent grid (:func:`.build_vae._train_crop`),
so a killed run resumes identically. Held-out renders are only evaluated
(:func:`.build_vae.evaluate_vae`); the gate is the VAE stage's (``min_fg_psnr``, ``min_oracle_confirm``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from vidreward.log import get_logger
from vidreward.world.build_vae import (
    HeldoutGate,
    VaeStageConfig,
    _train_crop,
    decode_unclamped,
    dilate,
    draw_train_batch,
    encode_mean,
    evaluate_vae,
    gate_passed,
    heldout_evaluator,
    psnr,
    reconstruction_loss,
    render_with_masks,
)
from vidreward.world.render import RenderConfig
from vidreward.world.splits import WorldPrompt

log = get_logger(__name__)


@dataclasses.dataclass
class JointStageConfig(HeldoutGate):
    """Start, optimisation, loss and gate of the joint (encoder + decoder) fine-tuning stage."""

    start_dir: str | None = None
    """VAE directory to start from (None: the generator's ``vae/`` in the build's ``out_dir``)"""
    z_dim: int | None = 32
    """latent channels after the stage (None or the start's ``z_dim``: keep them; more: grow them at the start)"""
    decoder_base_dim: int | None = None
    """widen the start's decoder to this width first (:func:`.build_vae_decoder.load_decoder_trainable_vae`, exact,
    copies split randomly); None keeps the start's decoder width"""
    init_std: float = 0.02
    """std of the new latent channels' random encoder rows"""
    batch_size: int = 8
    """videos per optimiser step"""
    lr: float = 3e-4
    """peak AdamW learning rate (linear warm-up, then cosine to lr_final_frac * lr)"""
    lr_final_frac: float = 0.1
    """final learning rate as a fraction of lr"""
    warmup_steps: int = 20
    """linear warm-up steps"""
    max_steps: int = 3000
    """step budget (the cosine spans it; the minutes cap may stop earlier and then drives the schedule)"""
    minutes: float = 60.0
    """wall-clock cap of the stage in minutes (evaluation time excluded)"""
    fg_weight: float = 10.0
    """loss weight of object (and ring) pixels relative to background pixels"""
    ring_px: int = 2
    """width of the ring around each object weighted like the object"""
    train_crop: int = 48
    """square training window (pixels, a multiple of the spatial compression) of whole 9-frame videos"""
    eval_every: int = 300
    """steps between held-out evaluations (which stop the stage once target_fg_psnr and the gate are met)"""
    checkpoint_every: int = 25
    """steps between atomic training checkpoints"""


def start_vae(cfg: JointStageConfig, default_dir: Path, stage_dir: Path, seed: int):
    """The stage's starting VAE: the copied start directory, its decoder widened to ``cfg.decoder_base_dim`` and its
    latent grown to ``cfg.z_dim`` channels."""
    from vidreward.world.build_vae_decoder import load_decoder_trainable_vae
    from vidreward.world.latent_expand import expand_latents

    copy = stage_dir / "start_vae"
    if not copy.is_dir():
        source = Path(cfg.start_dir) if cfg.start_dir else default_dir
        if not (source / "config.json").is_file():
            raise FileNotFoundError(f"vae_joint: no VAE at {source}; pass a VAE directory as the stage's start_dir")
        tmp = stage_dir / ".start_vae.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(source, tmp)
        report = source.parent / "build_report.json"  # how the start VAE was built, kept for the new report
        if report.is_file():
            shutil.copy(report, tmp / "start_build_report.json")
        tmp.rename(copy)
    vae = load_decoder_trainable_vae(copy, cfg.decoder_base_dim, seed=seed, random_split=True)
    generator = torch.Generator().manual_seed(seed)
    return expand_latents(vae, cfg.z_dim or vae.config.z_dim, cfg.init_std, generator), copy


def start_report(start_copy: Path) -> dict:
    """The ``vae`` and ``vae_decoder`` sections of the start VAE's build report (empty when it had none)."""
    path = start_copy / "start_build_report.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    return {k: report[k] for k in ("vae", "vae_decoder") if k in report}


def train_vae_joint(cfg: JointStageConfig, render_cfg: RenderConfig, default_start: str | Path,
                    stage_dir: str | Path, train: list[WorldPrompt] | None, heldout: list[WorldPrompt], seed: int):
    """Fine-tune (or resume) the whole VAE; returns ``(vae, record)`` with ``before`` / ``after`` held-out metrics,
    ``gate_passed``, steps and seconds. A stage that passed its gate (``done.json``) is loaded, not retrained; one that
    finished below it resumes, so a rerun with a larger budget trains on."""
    from diffusers import AutoencoderKLWan

    from vidreward.world.build_loop import (
        StageBudget,
        mark_done,
        measured_once,
        stage_done,
        train_stage,
        write_json,
    )
    from vidreward.world.build_vae import load_checkpoint_weights

    stage_dir = Path(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vae, start_copy = start_vae(cfg, Path(default_start), stage_dir, seed)
    done = stage_done(stage_dir)
    if done is not None and done["gate_passed"]:
        vae.load_state_dict(load_checkpoint_weights(stage_dir))
        vae.eval()
        log.info("vae_joint stage already done: %s", done["after"])
        return vae, done
    # not started, or finished below the gate: resume from the last checkpoint (a larger step or minute budget
    # trains on; otherwise the loop ends at once and the held-out metrics are measured again)
    before = measured_once(stage_dir / "before.json", lambda: evaluate_vae(
        AutoencoderKLWan.from_pretrained(str(start_copy)).eval(), heldout[:cfg.eval_videos], render_cfg))
    log.info("vae_joint before: %s", {k: round(v, 3) for k, v in before.items()})
    vae.requires_grad_(True)
    crop_cfg = VaeStageConfig(short_clip_steps=0, train_crop=cfg.train_crop)

    def loss_fn(step: int):
        rng = np.random.default_rng([seed, step])
        batch, _ = draw_train_batch(train, rng, cfg.batch_size, render_cfg.num_frames)
        video, mask = render_with_masks(batch, render_cfg)  # [B, 3, F, H, W], [B, 1, F, H, W]
        video, mask = _train_crop(video, mask, crop_cfg, rng, vae.config.scale_factor_spatial, step)
        recon = decode_unclamped(vae, encode_mean(vae, video))  # [B, 3, F, h, w], unclamped
        loss = reconstruction_loss(recon, video, dilate(mask, cfg.ring_px), cfg.fg_weight, 1.0, 0.0, 0.0)
        with torch.no_grad():
            fg = psnr(recon.clamp(-1, 1) * 0.5 + 0.5, video * 0.5 + 0.5, mask)
        return loss, {"fg_psnr": fg}

    history_path = stage_dir / "history.json"  # evaluations survive a resume with the checkpoints
    history: list[dict] = json.loads(history_path.read_text()) if history_path.is_file() else []
    evaluate_only = heldout_evaluator("vae_joint", vae, heldout, cfg, render_cfg, history)

    def evaluate(step: int) -> bool:
        del history[next((i for i, h in enumerate(history) if h["step"] >= step), len(history)):]  # a rerun step
        stop = evaluate_only(step)
        write_json(history_path, history)
        return stop

    budget = StageBudget(cfg.lr, cfg.lr_final_frac, cfg.warmup_steps, cfg.max_steps, cfg.minutes,
                         cfg.checkpoint_every, cfg.eval_every)
    run = train_stage("vae_joint", stage_dir, vae, loss_fn, budget, evaluate)
    after = evaluate_vae(vae, heldout[:cfg.eval_videos], render_cfg)
    record = {**run, "before": before, "after": after, "history": history, "gate_passed": gate_passed(after, cfg),
              "z_dim": vae.config.z_dim, "config": dataclasses.asdict(cfg), "start_report": start_report(start_copy)}
    mark_done(stage_dir, record)
    return vae, record
