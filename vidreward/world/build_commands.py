"""``vidreward world build TARGET`` (targets: ``generator``, ``critic``; extend :data:`BUILD_TARGETS`) and
``vidreward world eval``."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from vidreward.log import get_logger

log = get_logger(__name__)


def _build_generator(args: argparse.Namespace) -> int:
    from vidreward.world.build_generator import BuildConfig, build_generator

    cfg = BuildConfig(seed=args.seed, threads=args.threads)
    cfg.dit.minutes = args.dit_minutes
    if args.work_dir:
        cfg.work_dir = args.work_dir
    if args.out:
        cfg.out_dir = args.out
    cfg.vae.minutes = args.vae_minutes
    if args.vae_steps:
        cfg.vae.max_steps = args.vae_steps
    cfg.ignore_vae_gate = args.ignore_vae_gate
    if args.vae_only:
        cfg.stages = ("vae",)
    if args.vae_decoder_only:
        cfg.stages = ("vae_decoder",)
        cfg.vae_decoder.minutes = args.vae_decoder_minutes
        cfg.vae_decoder.decoder_base_dim = args.vae_decoder_width
        if args.vae_decoder_steps:
            cfg.vae_decoder.max_steps = args.vae_decoder_steps
        if args.vae_decoder_latent_noise is not None:
            cfg.vae_decoder.latent_noise_max = args.vae_decoder_latent_noise
        if args.vae_decoder_lr is not None:
            cfg.vae_decoder.lr = args.vae_decoder_lr
        if args.vae_decoder_eval_every is not None:
            cfg.vae_decoder.eval_every = args.vae_decoder_eval_every
        if args.vae_decoder_crop:
            cfg.vae_decoder.crop_latent = args.vae_decoder_crop
        if args.vae_decoder_batch:
            cfg.vae_decoder.batch_size = args.vae_decoder_batch
        if args.vae_decoder_loss == "l2":
            cfg.vae_decoder.l1_weight, cfg.vae_decoder.l2_weight, cfg.vae_decoder.edge_weight = 0.0, 1.0, 0.0
    if args.vae_joint:
        cfg.stages = ("vae_joint", "text", "dit", "export")
        joint = cfg.vae_joint
        joint.minutes = args.vae_joint_minutes
        joint.start_dir = args.vae_joint_from
        if args.vae_joint_steps:
            joint.max_steps = args.vae_joint_steps
        if args.vae_joint_z is not None:
            joint.z_dim = args.vae_joint_z
        joint.decoder_base_dim = args.vae_joint_decoder_width
        if args.vae_joint_lr is not None:
            joint.lr = args.vae_joint_lr
        if args.vae_joint_eval_every is not None:
            joint.eval_every = args.vae_joint_eval_every
    if args.vae_fresh_scenes:
        for stage in (cfg.vae, cfg.vae_decoder, cfg.vae_joint):
            stage.train_prompts = None
    report = build_generator(cfg)
    log.info("build status: %s", report.get("status"))
    return 0 if report.get("status") in ("done", "vae_only", "exported_gate_passed") else 1


def _build_critic(args: argparse.Namespace) -> int:
    """``vidreward world build critic``: the ``--critic-recipe`` config with ``--seed``, ``--threads``,
    ``--critic-minutes`` (the stage (iii) deadline), ``--work-dir`` and ``--out`` applied."""
    from vidreward.world.build_critic import run_build
    from vidreward.world.critic_build_config import (
        CriticBuildConfig,
        checks_recipe,
        joint_recipe,
        prompts_recipe,
        temporal_recipe,
    )

    recipe = {"checks": checks_recipe, "joint": joint_recipe, "prompts": prompts_recipe, "temporal": temporal_recipe,
              "session10": CriticBuildConfig}[args.critic_recipe]
    cfg = recipe(seed=args.seed, threads=args.threads)
    if args.critic_minutes:
        cfg.deadline_minutes = args.critic_minutes
    if args.work_dir:
        cfg.work_dir = args.work_dir
    if args.out:
        cfg.out_dir = args.out
    info = run_build(cfg)
    return 0 if info.get("best_eval") else 1


#: build target -> function(args) -> exit code
BUILD_TARGETS: dict[str, Callable[[argparse.Namespace], int]] = {"generator": _build_generator, "critic": _build_critic}


def _run_build(args: argparse.Namespace) -> int:
    return BUILD_TARGETS[args.target](args)


def _run_eval(args: argparse.Namespace) -> int:
    from vidreward.world.eval import run_eval_command

    return run_eval_command(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``build`` and ``eval`` to the ``world`` group."""
    build = subparsers.add_parser("build", help="build a shipped world model (resumable recipe)")
    build.add_argument("target", choices=sorted(BUILD_TARGETS), help="what to build")
    build.add_argument("--work-dir", default=None, help="stage checkpoints and caches (resumable)")
    build.add_argument("--out", default=None, help="output directory (default: the package's assets)")
    build.add_argument("--seed", type=int, default=0, help="seed of the build (default 0)")
    build.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: cores are shared)")
    build.add_argument("--vae-minutes", type=float, default=40.0, help="wall-clock cap of the VAE stage")
    build.add_argument("--vae-steps", type=int, default=0, help="step budget of the VAE stage (0 = recipe default)")
    build.add_argument("--dit-minutes", type=float, default=25.0, help="wall-clock cap of the DiT stage")
    build.add_argument("--vae-only", action="store_true", help="stop after the VAE stage")
    build.add_argument("--vae-decoder-only", action="store_true",
                       help="only fine-tune the decoder of the VAE in --out (encoder frozen, DiT stays valid) and "
                            "replace <out>/vae when the gate passes (stage vae_decoder)")
    build.add_argument("--vae-decoder-minutes", type=float, default=40.0,
                       help="wall-clock cap of the vae_decoder stage")
    build.add_argument("--vae-decoder-steps", type=int, default=None,
                       help="step budget of the vae_decoder stage (the minutes cap may stop it earlier)")
    build.add_argument("--vae-decoder-latent-noise", type=float, default=None,
                       help="max std of the training latent noise of the vae_decoder stage (normalised units)")
    build.add_argument("--vae-decoder-width", type=int, default=None,
                       help="widen the shipped decoder to this base width (a whole multiple of it; function-"
                            "preserving, then fine-tuned) on the frozen encoder (default: its own width)")
    build.add_argument("--vae-decoder-lr", type=float, default=None, help="peak learning rate of the vae_decoder stage")
    build.add_argument("--vae-decoder-eval-every", type=int, default=None,
                       help="steps between held-out evaluations of the vae_decoder stage (default 250)")
    build.add_argument("--vae-decoder-crop", type=int, default=None,
                       help="vae_decoder: train on random latent crops of this side (e.g. 10 of 16) instead of whole "
                            "frames, the loss on their interior (crop 10: 2.2x faster steps, "
                            "benchmarks/vae_decoder_crops.py)")
    build.add_argument("--vae-decoder-batch", type=int, default=None,
                       help="videos per step of the vae_decoder stage (default 8)")
    build.add_argument("--vae-decoder-loss", choices=("mixed", "l2"), default="mixed",
                       help="vae_decoder loss: the recipe's L1 + L2 + edge mix, or the foreground-weighted L2 alone")
    build.add_argument("--vae-joint", action="store_true",
                       help="fine-tune the whole VAE in --out (encoder too; stage vae_joint) instead of training one, "
                            "then retrain the DiT on its latents and export the whole generator")
    build.add_argument("--vae-joint-from", default=None, help="vae_joint: start VAE directory (default: <out>/vae)")
    build.add_argument("--vae-joint-z", type=int, default=None,
                       help="vae_joint: latent channels (more than the start's are grown function-preservingly; "
                            "default 32)")
    build.add_argument("--vae-joint-decoder-width", type=int, default=None,
                       help="vae_joint: widen the start's decoder to this width first (exact; e.g. 32)")
    build.add_argument("--vae-joint-minutes", type=float, default=60.0, help="wall-clock cap of the vae_joint stage")
    build.add_argument("--vae-joint-steps", type=int, default=None, help="step budget of the vae_joint stage")
    build.add_argument("--vae-joint-lr", type=float, default=None, help="peak learning rate of the vae_joint stage")
    build.add_argument("--vae-joint-eval-every", type=int, default=None,
                       help="steps between held-out evaluations of the vae_joint stage (default 300)")
    build.add_argument("--vae-fresh-scenes", action="store_true",
                       help="VAE stages: draw fresh train-split scenes every step instead of from a pool of 6000 "
                            "(a tiny VAE memorises the pool: 24.5 dB on 96 pool renders, 23.9 on 96 other train renders)")
    build.add_argument("--critic-minutes", type=float, default=None,
                       help="critic: wall-clock minutes of the whole build (all stages, summed over resumed runs) after "
                            "which stage (iii) stops (default: the recipe's 88)")
    build.add_argument("--critic-recipe", choices=("checks", "joint", "prompts", "temporal", "session10"),
                       default="checks",
                       help="critic: the recipe of the critic shipped since session 16 (critic_build_config."
                            "checks_recipe: the temporal one with check answers and one unit per curriculum phase), "
                            "session 18's (prompts_recipe: checks with one more text layer after Object(s) and a "
                            "Vanilla prompt curriculum), session 19's (joint_recipe: prompts with earlier Vanilla "
                            "units kept in later Vanilla phases, the vision tower frozen after the growth and lower "
                            "caps), the session-13 one (temporal_recipe: 10 frames per temporal patch, stage (i) heads for "
                            "motion / physics / quality, balanced Phy decisions) or the session-10 one "
                            "(CriticBuildConfig defaults)")
    build.add_argument("--ignore-vae-gate", action="store_true",
                       help="train the DiT even if the VAE gate failed (recorded in the report; for deadlines only)")
    build.set_defaults(func=_run_build)

    ev = subparsers.add_parser("eval", help="the oracle bench: score a generator on held-out world prompts")
    ev.add_argument("--checkpoint", default=None, help="diffusers Wan directory (default: the shipped generator)")
    ev.add_argument("--lora", default=None, help="LoRA weights (directory or .safetensors) to load on the DiT")
    ev.add_argument("--lora-rank", type=int, default=0, help="rank of --lora (0 = read it from the file)")
    ev.add_argument("--out", default=None, help="write the JSON report here")
    ev.add_argument("--num-prompts", type=int, default=64, help="held-out prompts (one video each; default 64)")
    ev.add_argument("--seed", type=int, default=0, help="noise seed of the first video (video i uses seed + i)")
    ev.add_argument("--steps", type=int, default=None, help="denoising steps (default: the bench's)")
    ev.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the bench's)")
    ev.add_argument("--batch-size", type=int, default=16, help="videos per sampling batch")
    ev.add_argument("--grid", default=None, help="also write an animated GIF grid of the first 16 samples")
    ev.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: cores are shared)")
    ev.set_defaults(func=_run_eval)
