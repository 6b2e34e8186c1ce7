"""``vidreward train gran-dpo``: Gran-DPO (HALO Sec. 3.3, Eqs. 7-9) LoRA fine-tuning on preference pairs.

One optimizer step, top to bottom:

1. take the next ``batch_size`` pairs of this rank from a seeded, resumable pair order;
2. load the winner's and loser's clean latents x_0 ``[C, T', H', W']`` and encode their prompt (frozen encoder);
3. draw ONE noise and ONE timestep per pair, shared by winner and loser (Diffusion-DPO convention), from the
   pair's own generator seeded by (seed, stream position);
4. reference errors: the same DiT with its LoRA adapters disabled, under ``no_grad`` (no second copy);
5. policy errors with the adapters on. ``prediction_error`` gives the per-element squared error; Wan is flow
   matching, so it is the velocity error ``(v_theta(x_t, t) - (eps - x_0))^2``;
6. reduce it to per-video means ``[B]`` and per-patch means ``[B, h_n, w_n]`` over the latent grid (the last row
   and column take the remainder) and evaluate Eq. 9 with :func:`vidreward.losses.gran_dpo.gran_dpo_loss`::

       L = E[ omega_V l(x^w, x^l) + sum_ij omega_ij l(x^w_ij, x^l_ij) ]
       l = -log sigma(-beta T F [(e^w_theta - e^w_ref) - (e^l_theta - e^l_ref)])

7. average gradients over ranks, skip the step if anything is non-finite, clip, AdamW, LR warm-up;
8. log loss, video/patch losses, implicit rewards of winners and losers (Fig. 4b), accuracy, grad norm,
   step time, peak memory; checkpoint atomically.

Decisions: the reference pass runs first, so its activations are freed before the policy graph is built and
peak memory stays that of one LoRA training pass (``benchmarks/gran_dpo_memory.py``). Winner and loser go through
the DiT as one batch of 2B. The DiT stays in eval mode: Wan/CogVideoX have no dropout or batch norm, and eval
keeps the policy and reference passes identical up to the adapters.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from pathlib import Path

import torch

from vidreward.config import to_dict
from vidreward.generators.base import PromptEmbeds, VideoGenerator
from vidreward.generators.registry import load_generator
from vidreward.halo.grid import patch_mean
from vidreward.halo.pairs import collate_pair_targets
from vidreward.log import get_logger, progress
from vidreward.lora import adapters_disabled, save_lora
from vidreward.losses.gran_dpo import GranDPOOutput, PairErrors, gran_dpo_loss
from vidreward.train.checkpoint import (
    TrainState,
    resolve_resume,
    save_checkpoint,
)
from vidreward.train.data_stream import noise_generator, stream_indices
from vidreward.train.distributed import DistInfo, cleanup_distributed, init_distributed
from vidreward.train.gran_dpo_config import GranDPOConfig
from vidreward.train.gran_dpo_data import PairBatch, check_latents_exist, load_pair_batch, read_pairs
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

log = get_logger(__name__)


# ---- noise and timesteps ---------------------------------------------------------------------------------
def draw_noise_and_timestep(
    generator: torch.Generator, latent_shape: torch.Size, num_train_timesteps: int, sampling: str,
    shift: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pair's noise ``[C, T', H', W']`` and timestep ``[]`` (see ``loss.timestep_sampling``)."""
    noise = torch.randn(latent_shape, generator=generator)
    k = torch.randint(0, num_train_timesteps, (), generator=generator)
    if sampling == "uniform":
        return noise, k.float()
    u = (k.double() + 1) / num_train_timesteps
    return noise, (num_train_timesteps * shift * u / (1 + (shift - 1) * u)).float()


# ---- the Gran-DPO forward --------------------------------------------------------------------------------
def pair_errors(
    gen: VideoGenerator, batch: PairBatch, noise: torch.Tensor, timesteps: torch.Tensor, embeds: PromptEmbeds,
    grid: tuple[int, int],
) -> tuple[PairErrors, PairErrors]:
    """(per-video MSEs ``[B]``, per-patch MSEs ``[B, h_n, w_n]``) of policy and reference, winners and losers.

    ``noise`` ``[B, C, T', H', W']`` and ``timesteps`` ``[B]`` are shared by each pair's winner and loser. The
    reference is the DiT with adapters disabled, computed under ``no_grad``; policy errors carry the graph.
    """
    b = batch.winners.shape[0]
    device = gen.device
    latents = torch.cat([batch.winners, batch.losers]).to(device)  # [2B, C, T', H', W']
    noise2 = torch.cat([noise, noise]).to(device)  # [2B, C, T', H', W']
    t2 = torch.cat([timesteps, timesteps]).to(device)  # [2B]
    embeds2 = PromptEmbeds(torch.cat([embeds.cond, embeds.cond]))  # [2B, L, D]
    with torch.no_grad(), adapters_disabled(gen.transformer):
        ref = gen.prediction_error(latents, noise2, t2, embeds2)  # [2B, C, T', H', W']
        ref_video, ref_patch = ref.flatten(1).mean(1), patch_mean(ref, grid)  # [2B], [2B, h_n, w_n]
        del ref
    policy = gen.prediction_error(latents, noise2, t2, embeds2)  # [2B, C, T', H', W']
    pol_video, pol_patch = policy.flatten(1).mean(1), patch_mean(policy, grid)
    video = PairErrors(pol_video[:b], pol_video[b:], ref_video[:b], ref_video[b:])
    patch = PairErrors(pol_patch[:b], pol_patch[b:], ref_patch[:b], ref_patch[b:])
    return video, patch


def step_metrics(out: GranDPOOutput, patch_signs: torch.Tensor) -> dict[str, tuple[float, float]]:
    """name -> (sum, count) of one micro-batch's logged values (summed so ranks and micro-batches average exactly)."""
    b = float(out.video_reward_winner.numel())
    metrics = {
        "loss": (float(out.loss.detach()) * b, b),
        "video_loss": (float(out.video_loss.detach()) * b, b),
        "patch_loss": (float(out.patch_loss.detach()) * b, b),
        "reward_winner": (float(out.video_reward_winner.sum()), b),
        "reward_loser": (float(out.video_reward_loser.sum()), b),
        "reward_margin": (float((out.video_reward_winner - out.video_reward_loser).sum()), b),
        "accuracy": (float(out.video_accuracy) * b, b),
    }
    if out.patch_reward_winner is not None and out.patch_reward_loser is not None:
        decided = patch_signs != 0  # [B, h_n, w_n]: tied patches have no winner
        n = float(decided.sum())
        metrics["patch_reward_winner"] = (float(out.patch_reward_winner[decided].sum()), n)
        metrics["patch_reward_loser"] = (float(out.patch_reward_loser[decided].sum()), n)
        metrics["patch_accuracy"] = (float((out.patch_reward_winner > out.patch_reward_loser)[decided].sum()), n)
    return metrics


def reduce_metrics(sums: dict[str, float], counts: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Global means over micro-batches and ranks (a metric with count 0 is left out)."""
    names = sorted(sums)
    flat = torch.tensor([sums[n] for n in names] + [counts[n] for n in names], dtype=torch.float64)
    if info.enabled:
        import torch.distributed as dist

        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    k = len(names)
    return {n: float(flat[i] / flat[k + i]) for i, n in enumerate(names) if flat[k + i] > 0}


# ---- the run ---------------------------------------------------------------------------------------------
def train(cfg: GranDPOConfig) -> dict:
    """Run Gran-DPO training; return a summary (final step, skipped steps, last metrics, output paths)."""
    info = init_distributed(cfg.generator.device)
    out = Path(cfg.output_dir)
    ckpt_dir = out / "checkpoints"
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))

    grid = (cfg.loss.grid[0], cfg.loss.grid[1])
    pairs = read_pairs(cfg.data.pairs_path, grid)
    latents_dir = Path(cfg.data.latents_dir) if cfg.data.latents_dir else Path(cfg.data.pairs_path).parent / "latents"
    check_latents_exist(pairs, latents_dir)

    # model: LoRA adapters train; the base DiT, VAE and text encoder are frozen
    gen_cfg = cfg.generator
    gen_cfg.device = info.device
    gen = load_generator(gen_cfg)
    gen.transformer.eval()
    if cfg.train.gradient_checkpointing:
        gen.transformer.enable_gradient_checkpointing()
    params = trainable_parameters(gen.transformer)
    if not params or not all("lora_" in n for n in params):
        raise ValueError("Gran-DPO trains LoRA adapters only; the DiT must have trainable LoRA parameters and no others")
    num_train_timesteps = int(getattr(gen, "num_train_timesteps", 0) or gen.scheduler.config.num_train_timesteps)
    shift = None
    if cfg.loss.timestep_sampling == "shifted":
        shift = cfg.loss.timestep_shift or getattr(gen, "default_shift", None)
        if shift is None:
            raise ValueError(f"loss.timestep_sampling='shifted' is for flow-matching generators; "
                             f"{cfg.generator.family} has no shift: use 'uniform'")

    optimizer, scheduler = build_optimizer(params, cfg.optim)
    resume_path = resolve_resume(cfg.train.resume, ckpt_dir)
    state = TrainState() if resume_path is None else resume_training(resume_path, params, optimizer, scheduler)

    guard = NonFiniteGuard(cfg.train.max_nonfinite_steps, skipped_total=state.skipped_nonfinite)
    writer = MetricWriter(out, enabled=info.is_main, tensorboard=cfg.logging.tensorboard,
                          wandb=cfg.logging.wandb, wandb_project=cfg.logging.wandb_project, config=to_dict(cfg))
    b, lc = cfg.train.batch_size, cfg.loss
    global_batch = b * info.world_size
    plist = list(params.values())
    last_metrics: dict[str, float] = {}
    bar = progress(total=cfg.train.max_steps, initial=state.step, desc="Gran-DPO", unit="step")
    try:
        while state.step < cfg.train.max_steps:
            t0 = time.perf_counter()
            sums: dict[str, float] = defaultdict(float)
            counts: dict[str, float] = defaultdict(float)
            for _ in range(cfg.optim.grad_accum_steps):
                # 1-2. this rank's slice of the next global batch: latents and prompts
                first = state.data_position + info.rank * b
                chosen = [pairs[i] for i in stream_indices(first, b, len(pairs), cfg.seed, cfg.data.shuffle)]
                batch = load_pair_batch(chosen, latents_dir)
                with torch.no_grad():
                    embeds = gen.encode_prompts(batch.prompts)
                # 3. one noise and one timestep per pair, shared by winner and loser
                draws = [draw_noise_and_timestep(noise_generator(cfg.seed, first + j), batch.winners.shape[1:],
                                                 num_train_timesteps, lc.timestep_sampling, shift) for j in range(b)]
                noise = torch.stack([d[0] for d in draws])  # [B, C, T', H', W']
                timesteps = torch.stack([d[1] for d in draws])  # [B]
                # 4-6. reference and policy errors, Eq. 9
                video_err, patch_err = pair_errors(gen, batch, noise, timesteps, embeds, grid)
                targets = collate_pair_targets(chosen)
                dev = gen.device
                result = gran_dpo_loss(
                    video_err, patch_err, targets.video_weights.to(dev), targets.patch_weights.to(dev),
                    targets.patch_signs.to(dev), beta=lc.beta, num_timesteps=lc.num_timesteps,
                    video_signs=targets.video_signs.to(dev), use_video_dpo=lc.use_video_dpo,
                    use_patch_dpo=lc.use_patch_dpo, use_pair_weights=lc.use_pair_weights,
                    patch_reduction=lc.patch_reduction,
                )
                (result.loss / cfg.optim.grad_accum_steps).backward()
                for name, (total, count) in step_metrics(result, targets.patch_signs.to(dev)).items():
                    sums[name] += total
                    counts[name] += count
                state.data_position += global_batch
            # 7. all-reduce, guard, clip, step
            average_gradients(plist, info)
            metrics = reduce_metrics(sums, counts, info)
            grad_norm = torch.nn.utils.clip_grad_norm_(plist, cfg.optim.max_grad_norm or math.inf)
            applied = guard.check(torch.tensor(metrics.get("loss", math.nan)), plist, state.step + 1)
            if applied:
                optimizer.step()
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.skipped_nonfinite = guard.skipped_total
            # 8. log, checkpoint
            metrics.update(grad_norm=float(grad_norm), lr=scheduler.get_last_lr()[0],
                           step_time_s=time.perf_counter() - t0, peak_memory_mb=peak_memory_mb(info.device),
                           skipped=float(not applied))
            last_metrics = metrics
            if state.step % cfg.train.log_every == 0:
                writer.write(state.step, metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", acc=f"{metrics['accuracy']:.2f}")
            done = state.step >= cfg.train.max_steps
            if info.is_main and (done or (cfg.train.checkpoint_every and state.step % cfg.train.checkpoint_every == 0)):
                save_checkpoint(ckpt_dir, state, params, optimizer, scheduler, keep_last=cfg.train.keep_last)
        assert_ranks_in_sync(plist, info)
        if info.is_main:
            save_lora(gen.transformer, out / "final")
    finally:
        bar.close()
        writer.close()
        cleanup_distributed()
    return {"step": state.step, "skipped_nonfinite": state.skipped_nonfinite, "metrics": last_metrics,
            "output_dir": str(out), "final": str(out / "final")}


# ---- CLI -------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    """``vidreward train gran-dpo --config X [key=value ...]``.

    A preset with ``job: world_gran_dpo`` runs the whole HALO loop in the world instead (prompts -> sample ->
    score -> pairs -> this trainer -> report), building any missing stage first (:mod:`vidreward.halo.world_loop`).
    """
    from vidreward.config import load_config
    from vidreward.halo.world_loop import world_loop_entry

    if (code := world_loop_entry(args)) is not None:
        return code

    _, cfg = load_config(args.config, args.overrides, job="train_gran_dpo")
    summary = train(cfg)
    log.info("Gran-DPO done: %d steps (%d skipped), LoRA in %s", summary["step"], summary["skipped_nonfinite"],
             summary["final"])
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train gran-dpo``."""
    from vidreward.cli import add_config_arguments

    parser = subparsers.add_parser("gran-dpo", help="Gran-DPO (HALO) LoRA fine-tuning on preference pairs")
    add_config_arguments(parser)
    parser.set_defaults(func=run)
