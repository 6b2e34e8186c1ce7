"""``vidreward train drf``: Diffusion-DRF fine-tuning of a video DiT with a frozen VLM critic.

One optimizer step, top to bottom (Diffusion-DRF Sec. 3-4.1, shared/DESIGN.md "Data flow of one DRF step"):

1. take the next ``batch_size`` records of this rank from a seeded, resumable data order;
2. encode the captions (frozen text encoder) and draw each sample's z_T from its own seeded generator;
3. run the unrolled sampler; only the last K steps build a graph (Eq. 2), each step checkpointed;
4. decode (frozen VAE, differentiable, optionally chunked) to a video in [0, 1], subsample N_f frames;
5. reward: Vanilla-DRF (Eq. 1) or rich Diffusion-DRF (Eq. 3); the pixel-boundary hand-off runs one VLM
   query at a time and returns d loss / d frames, then ``frames.backward(grad)`` reaches the DiT;
6. average gradients over ranks, skip the step if anything is non-finite, clip, AdamW, LR warm-up;
7. log (progress bar, JSONL, TensorBoard, optional W&B), sample, checkpoint atomically.

Multi-process (torchrun): every rank replicates the frozen parts and takes its slice of each global batch;
gradients are averaged in one flat all-reduce after the hand-off backward (DDP's arithmetic — the DDP wrapper
itself is not used because the DiT runs many forwards per backward: S steps x CFG x checkpoint recomputation).
With ``distributed.fsdp`` the DiT is sharded per block by FSDP2, which reduce-scatters the mean gradient itself;
its checkpoints hold the gathered weights but not the sharded AdamW moments (a resume restarts them).

Randomness: the data order is ``randperm`` seeded by (seed, epoch) and each sample's noise by
(seed, its position in the stream), so a resumed run sees the same data and noise as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from vidreward.config import to_dict
from vidreward.critics.config import load_critic
from vidreward.generators.registry import load_generator
from vidreward.log import get_logger, progress
from vidreward.rewards.handoff import pixel_gradient
from vidreward.rewards.rich_drf import RichDRFReward
from vidreward.rewards.vanilla_drf import VanillaDRFReward
from vidreward.sampling import sample
from vidreward.train.checkpoint import (
    TrainState,
    resolve_resume,
    save_checkpoint,
)
from vidreward.train.data_stream import noise_generator, stream_indices
from vidreward.train.distributed import cleanup_distributed, init_distributed, shard_fsdp2
from vidreward.train.drf_config import DRFConfig
from vidreward.train.drf_records import ReferenceFrames, load_records, make_samples
from vidreward.train.guards import NonFiniteGuard
from vidreward.train.loop import (
    assert_ranks_in_sync,
    average_gradients,
    build_optimizer,
    peak_memory_mb,
    resume_training,
    trainable_parameters,
)
from vidreward.train.metrics import MetricWriter
from vidreward.video_io import subsample_frames, write_video
from vidreward.world.drf_data import prepare_world_data

log = get_logger(__name__)


# ---- model -----------------------------------------------------------------------------------------------
def build_reward(cfg: DRFConfig, critic):
    """Vanilla-DRF or rich Diffusion-DRF from config."""
    if cfg.reward.kind == "vanilla":
        return VanillaDRFReward(critic, cfg.reward.vanilla_variant)
    return RichDRFReward(critic, tuple(cfg.reward.dimensions), cfg.reward.weights)


# ---- sampling for validation -----------------------------------------------------------------------------
@torch.no_grad()
def write_validation_samples(cfg: DRFConfig, gen, out_dir: Path) -> list[Path]:
    """Fixed prompts x fixed seeds, written as mp4 + GIF under ``out_dir``."""
    paths = []
    for p_idx, prompt in enumerate(cfg.data.validation_prompts):
        embeds = gen.encode_prompts([prompt], [cfg.sampling.negative_prompt])
        for seed in cfg.data.validation_seeds:
            s = cfg.sampling
            z = gen.initial_latents(1, s.num_frames, s.height, s.width, torch.Generator("cpu").manual_seed(seed))
            z0 = sample(gen, embeds, z, s.num_steps, s.guidance_scale, shift=s.shift)
            video = gen.decode(z0)[0]  # [F, 3, H, W]
            for ext in ("mp4", "gif"):
                paths.append(write_video(video, out_dir / f"prompt{p_idx:02d}-seed{seed}.{ext}"))
    return paths


# ---- the run ---------------------------------------------------------------------------------------------
def train(cfg: DRFConfig) -> dict[str, Any]:
    """Run DRF training; return a summary (final step, skipped steps, last metrics, output paths)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    info = init_distributed(cfg.generator.device)
    out = Path(cfg.output_dir)
    ckpt_dir = out / "checkpoints"
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    world_data = prepare_world_data(cfg, info) if cfg.data.source == "world" else None

    # models: the DiT trains; VAE, text encoder and critic are frozen
    gen_cfg = cfg.generator
    if cfg.train.trainable == "full" and gen_cfg.lora.rank > 0:
        raise ValueError("train.trainable is 'full' but generator.lora.rank > 0; pick one")
    gen_cfg.device = info.device
    gen = load_generator(gen_cfg)
    gen.vae.requires_grad_(False)
    gen.text_encoder.requires_grad_(False)
    if cfg.train.trainable == "full":
        gen.transformer.requires_grad_(True)
    gen.transformer.train()
    sharded = cfg.distributed.fsdp and info.enabled
    if sharded:
        shard_fsdp2(gen.transformer, cfg.distributed.fsdp_block_attr)
    params = trainable_parameters(gen.transformer)
    if not params:
        raise ValueError("nothing to train: the DiT has no trainable parameters")
    critic = load_critic(cfg.critic, device=info.device if cfg.critic.device == "auto" else cfg.critic.device)
    reward = build_reward(cfg, critic)

    optimizer, scheduler = build_optimizer(params, cfg.optim)
    resume_path = resolve_resume(cfg.train.resume, ckpt_dir)
    state = TrainState() if resume_path is None else resume_training(resume_path, params, optimizer, scheduler)

    records = load_records(cfg)
    report_records, report_base = None, None
    if cfg.report.enabled and info.is_main:
        from vidreward.eval.drf_report import report_before

        report_records, report_base = report_before(cfg, gen, critic, out)
    video_root = Path(cfg.data.video_root) if cfg.data.video_root else Path(cfg.data.path).parent
    references = ReferenceFrames(video_root, cfg.reward.num_frames)
    guard = NonFiniteGuard(cfg.train.max_nonfinite_steps, skipped_total=state.skipped_nonfinite)
    writer = MetricWriter(out, enabled=info.is_main, tensorboard=cfg.logging.tensorboard,
                          wandb=cfg.logging.wandb, wandb_project=cfg.logging.wandb_project, config=to_dict(cfg))
    s, b = cfg.sampling, cfg.train.batch_size
    global_batch = b * info.world_size
    last_metrics: dict[str, float] = {}
    bar = progress(total=cfg.train.max_steps, initial=state.step, desc="DRF", unit="step")
    try:
        while state.step < cfg.train.max_steps:
            t0 = time.perf_counter()
            totals: dict[str, float] = defaultdict(float)
            for _ in range(cfg.optim.grad_accum_steps):
                # 1. this rank's slice of the next global batch
                first = state.data_position + info.rank * b
                idx = stream_indices(first, b, len(records), cfg.seed, cfg.data.shuffle)
                batch = [records[i] for i in idx]
                # 2. prompts and noise
                with torch.no_grad():
                    embeds = gen.encode_prompts([r["caption"] for r in batch], [s.negative_prompt] * b)
                z_t = torch.cat([gen.initial_latents(1, s.num_frames, s.height, s.width,
                                                     noise_generator(cfg.seed, first + j)) for j in range(b)])
                # 3-4. truncated, checkpointed sampling and differentiable decode
                z0 = sample(gen, embeds, z_t, s.num_steps, s.guidance_scale, shift=s.shift,
                            grad_steps=s.grad_steps, checkpoint_steps=s.checkpoint_steps)
                video = gen.decode(z0, chunk_frames=s.decode_chunk_frames, checkpoint=s.decode_checkpoint)
                frames = subsample_frames(video, cfg.reward.num_frames, dim=1)  # [B, N_f, 3, H, W]
                # 5. reward and backward (hand-off: one VLM graph at a time)
                terms = reward.terms(make_samples(cfg, batch, references))
                scale = 1.0 / cfg.optim.grad_accum_steps
                if cfg.reward.handoff:
                    result = pixel_gradient(frames, [t.loss for t in terms])
                    frames.backward(result.grad * scale)
                    per_query, loss_value = result.per_query, result.loss
                else:
                    losses = [t.loss(frames) for t in terms]
                    (torch.stack(losses).sum() * scale).backward()
                    per_query = [float(x.detach()) for x in losses]
                    loss_value = sum(per_query)
                totals["loss"] += loss_value * scale
                for term, value in zip(terms, per_query):
                    totals[f"loss_{term.dimension}"] += value * scale
                state.data_position += global_batch
            # 6. all-reduce, guard, clip, step
            plist = list(params.values())
            if not sharded:  # FSDP2 already reduce-scattered the mean gradient
                average_gradients(plist, info)
            loss_t = torch.tensor(totals["loss"], device=info.device)
            if info.enabled:
                import torch.distributed as dist

                dist.all_reduce(loss_t, op=dist.ReduceOp.SUM)
                loss_t /= info.world_size
            grad_norm = torch.nn.utils.clip_grad_norm_(plist, cfg.optim.max_grad_norm or math.inf)
            applied = guard.check(loss_t, plist, state.step + 1)
            if applied:
                optimizer.step()
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.skipped_nonfinite = guard.skipped_total
            # 7. log, sample, checkpoint
            metrics = {k: v for k, v in totals.items()}
            metrics.update(loss=float(loss_t), reward=-float(loss_t), grad_norm=float(grad_norm),
                           lr=scheduler.get_last_lr()[0], step_time_s=time.perf_counter() - t0,
                           peak_memory_mb=peak_memory_mb(info.device), skipped=float(not applied))
            last_metrics = metrics
            if state.step % cfg.train.log_every == 0:
                writer.write(state.step, metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", gnorm=f"{metrics['grad_norm']:.2e}")
            if info.is_main and cfg.train.sample_every and state.step % cfg.train.sample_every == 0:
                write_validation_samples(cfg, gen, out / "samples" / f"step-{state.step:06d}")
            done = state.step >= cfg.train.max_steps
            if done or (cfg.train.checkpoint_every and state.step % cfg.train.checkpoint_every == 0):
                weights = full_weights(params)  # a collective under FSDP2: every rank takes part
                if info.is_main:
                    # under FSDP2 each rank holds a shard of the AdamW moments: they are not saved (see docstring)
                    save_checkpoint(ckpt_dir, state, weights, None if sharded else optimizer, scheduler,
                                    keep_last=cfg.train.keep_last)
        if not sharded:
            assert_ranks_in_sync(list(params.values()), info)
        summary = {"step": state.step, "skipped_nonfinite": state.skipped_nonfinite, "metrics": last_metrics,
                   "output_dir": str(out), "final": str(out / "final")}
        if world_data is not None:
            summary["world_data"] = world_data
        final_weights = full_weights(params) if sharded else None  # collective under FSDP2
        if info.is_main:
            export_weights(cfg, gen, out / "final", final_weights)
            if cfg.data.validation_prompts:
                write_validation_samples(cfg, gen, out / "samples" / "final")
            if report_base is not None:
                from vidreward.eval.drf_report import report_after

                summary["report"] = report_after(cfg, gen, critic, reward, report_records, report_base, out, summary)
    finally:
        bar.close()
        writer.close()
        cleanup_distributed()
    return summary


def full_weights(params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    """Unsharded copies of the trainable weights (``full_tensor()`` gathers FSDP2 shards on every rank)."""
    return {n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach() for n, p in params.items()}


def export_weights(cfg: DRFConfig, gen, directory: Path, gathered: dict[str, torch.Tensor] | None = None) -> Path:
    """Final weights: LoRA in diffusers format (``load_lora_weights``) or the full DiT in ``from_pretrained`` layout.

    ``gathered`` holds the unsharded weights of an FSDP2 run (the sharded module cannot ``save_pretrained``).
    """
    if cfg.train.trainable == "lora":
        from vidreward.lora import save_lora

        return save_lora(gen.transformer, directory)
    target = directory / "transformer"
    if gathered is None:
        gen.transformer.save_pretrained(target, safe_serialization=True)
    else:
        from safetensors.torch import save_file

        target.mkdir(parents=True, exist_ok=True)
        gen.transformer.save_config(target)
        save_file({k: v.cpu().contiguous() for k, v in gathered.items()},
                  str(target / "diffusion_pytorch_model.safetensors"))
    return target


# ---- CLI -------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    """``vidreward train drf --config X [key=value ...]``."""
    from vidreward.config import load_config

    _, cfg = load_config(args.config, args.overrides, job="train_drf")
    summary = train(cfg)
    log.info("DRF done: %d steps (%d skipped), outputs in %s", summary["step"], summary["skipped_nonfinite"],
             summary["output_dir"])
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train drf``."""
    from vidreward.cli import add_config_arguments

    parser = subparsers.add_parser("drf", help="Diffusion-DRF / Vanilla-DRF fine-tuning")
    add_config_arguments(parser)
    parser.set_defaults(func=run)
