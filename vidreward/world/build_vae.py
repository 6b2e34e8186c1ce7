"""Stage 1 of the world generator build: a tiny ``AutoencoderKLWan`` trained on world renders.

What a probe learned (shared/notes/world-probe.md) is built in: the encoder's **posterior mean** is the latent
(no sampling, no KL term), the decoder output is used **unclamped** while training (the shipped decode clamps
to [-1, 1], which passes no gradient on saturated pixels), lr about 2e-3, objects are large (the world's
renderer guarantees >= 0.28 of the frame), and the reconstruction loss is weighted towards object pixels:

    L = sum_p w_p (lambda1 |x_p - x^_p| + lambda2 (x_p - x^_p)^2) / sum_p w_p,     w_p = fg_weight on objects, else 1

with x in [-1, 1] per channel, p over every (frame, pixel, channel) and lambda1 = 1 (the vae_decoder stage may change
it). To keep object edges sharp at little cost the VAE patchifies 2x2 pixels (``patch_size=2``, Wan2.2-style) and
has one 2x spatial / 2x temporal down-sampling
stage: 9 x 64 x 64 frames -> 5 x 16 x 16 latents of ``z_dim`` channels (``scale_factor_spatial = 4``,
``scale_factor_temporal = 2``). Training windows are 48 x 48 crops aligned to the latent grid (convolutions are
translation-equivariant, so crops are cheap full-quality signal), first as 5-frame clips (first frame + one
causal chunk), then as whole 9-frame videos (the third chunk's feature cache only exists in whole videos).
Quality is measured on held-out renders (:func:`evaluate_vae`): PSNR over all
pixels, PSNR over object pixels (foreground), and the oracle's confirmation rate (TA = 1 on the reconstruction
against the render's own caption). The stage's gate (``VaeStageConfig.min_fg_psnr`` / ``min_oracle_confirm``)
must pass before the DiT stage starts.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from vidreward.log import get_logger
from vidreward.world.motion import scene_tracks
from vidreward.world.oracle import score_video
from vidreward.world.render import RenderConfig, render_tracks, shape_masks
from vidreward.world.splits import WorldPrompt, fresh_train_prompts

log = get_logger(__name__)


@dataclasses.dataclass
class HeldoutGate:
    """Held-out evaluation and quality gate, shared by the VAE stages (``vae``, ``vae_decoder``, ``vae_joint``)."""

    eval_videos: int = 48
    """held-out renders per evaluation (the first ones of the held-out split)"""
    train_prompts: int | None = 6000
    """size of the pool of train-split scenes the batches are drawn from; None draws fresh train-split scenes
    every step (:func:`.splits.fresh_train_prompts`), so no render is seen twice"""
    min_fg_psnr: float = 25.0
    """gate: held-out foreground PSNR (dB) required before the DiT stage"""
    min_oracle_confirm: float = 0.9
    """gate: share of held-out reconstructions the oracle confirms (TA = 1)"""
    target_fg_psnr: float = 27.0
    """stop the stage early once held-out foreground PSNR reaches this and the gate passes"""


@dataclasses.dataclass
class VaeStageConfig(HeldoutGate):
    """Architecture, optimisation and gate of the VAE stage."""

    base_dim: int = 16
    """channel width of the first VAE stage (>= 16: tiny widths make Wan's RMS norm degenerate)"""
    z_dim: int = 16
    """latent channels (the DiT's in/out channels)"""
    dim_mult: list[int] = dataclasses.field(default_factory=lambda: [1, 2])
    """channel multipliers per stage; len - 1 down-sampling stages (each 2x spatial, 2x temporal here)"""
    num_res_blocks: int = 1
    """residual blocks per stage"""
    patch_size: int = 2
    """pixel patchify factor before the encoder (Wan2.2 style); total spatial compression = patch * 2^(stages)"""
    batch_size: int = 8
    """videos per optimiser step"""
    lr: float = 2e-3
    """peak AdamW learning rate (linear warm-up, then cosine to lr_final_frac * lr over the budget)"""
    lr_final_frac: float = 0.1
    """final learning rate as a fraction of lr"""
    warmup_steps: int = 50
    """linear warm-up steps"""
    max_steps: int = 4000
    """step budget (the cosine schedule spans it; the minutes cap may stop earlier)"""
    minutes: float = 40.0
    """wall-clock cap of the stage in minutes (the schedule then uses elapsed / minutes as its progress)"""
    fg_weight: float = 10.0
    """loss weight of object pixels relative to background pixels"""
    l2_weight: float = 0.5
    """lambda2: weight of the squared error next to the absolute error"""
    eval_every: int = 150
    """steps between held-out evaluations (which may stop the stage early once target_fg_psnr is met)"""
    checkpoint_every: int = 50
    """steps between atomic training checkpoints"""
    short_clip_frames: int = 5
    """curriculum: for the first ``short_clip_steps`` steps, clips are this many consecutive frames (1 + 4k) starting
    at frame 0 or 4 (cheap steps that teach the first-frame and one-chunk paths)"""
    short_clip_steps: int = 1050
    """steps of the short-clip phase; afterwards clips are whole videos (a later causal chunk, whose feature cache
    comes from a non-first chunk, is only learnt from whole videos: frames 5-8 stay poor otherwise)"""
    sharpen_from_step: int = 1550
    """curriculum: from this step on, a ring of ``ring_px`` pixels around each object is weighted like the object
    and the edge term is added (the oracle caught halos and soft edges: rounded shapes, sizes read too large)"""
    ring_px: int = 2
    """width of the object ring weighted as foreground in the sharpening phase"""
    edge_weight: float = 1.0
    """weight of the edge term (L1 of horizontal and vertical pixel differences) in the sharpening phase"""
    train_crop: int = 48
    """training clips are square crops of this size at offsets that are multiples of the spatial compression (so
    the latent grid is aligned as in full frames); 0 = full frames"""


def make_vae(cfg: VaeStageConfig):
    """A fresh tiny ``AutoencoderKLWan`` (random init from torch's global RNG)."""
    from diffusers import AutoencoderKLWan

    stages = len(cfg.dim_mult) - 1
    channels = 3 * cfg.patch_size**2 if cfg.patch_size > 1 else 3
    return AutoencoderKLWan(
        base_dim=cfg.base_dim, z_dim=cfg.z_dim, dim_mult=list(cfg.dim_mult), num_res_blocks=cfg.num_res_blocks,
        temperal_downsample=[True] * stages, in_channels=channels, out_channels=channels,
        patch_size=cfg.patch_size if cfg.patch_size > 1 else None,
        scale_factor_spatial=cfg.patch_size * 2**stages, scale_factor_temporal=2**stages,
        latents_mean=[0.0] * cfg.z_dim, latents_std=[1.0] * cfg.z_dim,
    )


def render_with_masks(prompts: list[WorldPrompt], render_cfg: RenderConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Videos in [-1, 1] ``[B, 3, F, H, W]`` (the VAE's layout) and object masks ``[B, 1, F, H, W]`` (float 0/1)."""
    videos, masks = [], []
    for p in prompts:
        tracks = scene_tracks(p.spec, render_cfg.num_frames, render_cfg.height, render_cfg.width)
        video = render_tracks(tracks, p.spec.background, p.spec.lighting, render_cfg.height, render_cfg.width,
                              render_cfg.num_frames)  # [F, 3, H, W] in [0, 1]
        mask = np.zeros((render_cfg.num_frames, render_cfg.height, render_cfg.width), dtype=bool)
        for track in tracks:
            mask |= shape_masks(track, render_cfg.height, render_cfg.width)
        videos.append(video.permute(1, 0, 2, 3) * 2 - 1)  # [3, F, H, W]
        masks.append(torch.from_numpy(mask).float()[None])  # [1, F, H, W]
    return torch.stack(videos), torch.stack(masks)


def encode_mean(vae, video: torch.Tensor) -> torch.Tensor:
    """Posterior mean of ``video [B, 3, F, H, W]`` in [-1, 1] -> raw latents ``[B, z, F', H', W']``."""
    return vae.encode(video).latent_dist.mean


def decode_unclamped(vae, z: torch.Tensor) -> torch.Tensor:
    """``vae.decode`` without the final clamp: raw latents ``[B, z, F', H', W']`` -> ``[B, 3, F, H, W]``."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, unpatchify

    x = vae.post_quant_conv(z)
    cache: list = [None] * sum(isinstance(m, WanCausalConv3d) for m in vae.decoder.modules())
    outs = []
    for i in range(x.shape[2]):  # causal: one latent frame at a time, carrying the feature cache
        outs.append(vae.decoder(x[:, :, i:i + 1], feat_cache=cache, feat_idx=[0], first_chunk=i == 0))
    video = torch.cat(outs, dim=2)
    if vae.config.patch_size is not None:
        video = unpatchify(video, patch_size=vae.config.patch_size)
    return video


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, fg_weight: float,
                        l2_weight: float, edge_weight: float = 0.0, l1_weight: float = 1.0) -> torch.Tensor:
    """Foreground-weighted lambda1 L1 + lambda2 L2 (module doc); ``mask [B, 1, F, H, W]`` broadcasts over channels.

    With ``edge_weight`` > 0 it adds edge_weight * sum_d sum_p w_p |D_d x^_p - D_d x_p| / sum_p w_p over the
    horizontal and vertical neighbour differences D_d (w_p the weight of the difference's first pixel).
    """
    weight = (1.0 + (fg_weight - 1.0) * mask).expand_as(target)  # [B, 3, F, H, W]
    err = recon - target
    per_pixel = l1_weight * err.abs() + l2_weight * err.square()
    loss = (weight * per_pixel).sum() / weight.sum()
    if edge_weight > 0:
        for dim in (-1, -2):
            if err.shape[dim] < 2:
                continue
            d_err = torch.diff(err, dim=dim).abs()  # D x^ - D x = D (x^ - x)
            w = weight.narrow(dim, 0, weight.shape[dim] - 1)
            loss = loss + edge_weight * (w * d_err).sum() / w.sum()
    return loss


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Grow a 0/1 mask ``[B, 1, F, H, W]`` by ``radius`` pixels in-plane (square neighbourhood)."""
    if radius <= 0:
        return mask
    k = 2 * radius + 1
    return torch.nn.functional.max_pool3d(mask, (1, k, k), stride=1, padding=(0, radius, radius))


def psnr(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """PSNR in dB of videos in [0, 1] (peak 1) over every pixel, or over ``mask`` pixels (all channels)."""
    err = (recon - target).square()
    if mask is not None:
        mask = mask.expand_as(err)
        mse = float((err * mask).sum() / mask.sum().clamp_min(1))
    else:
        mse = float(err.mean())
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def evaluate_vae(vae, prompts: list[WorldPrompt], render_cfg: RenderConfig, batch_size: int = 8) -> dict:
    """Held-out reconstruction quality (decode clamped, as shipped): PSNR all / foreground, oracle confirmation.

    Returns ``{"psnr", "fg_psnr", "oracle_confirm", "oracle_ta", "oracle_phy", "oracle_vq", "count"}``; the PSNRs
    pool the squared error over all videos.
    """
    sq_all, n_all, sq_fg, n_fg = 0.0, 0, 0.0, 0.0
    scores = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start:start + batch_size]
            video, mask = render_with_masks(chunk, render_cfg)
            recon = vae.decode(encode_mean(vae, video)).sample.clamp(-1, 1)  # [B, 3, F, H, W]
            recon01, video01 = recon * 0.5 + 0.5, video * 0.5 + 0.5
            err = (recon01 - video01).square()
            sq_all += float(err.sum())
            n_all += err.numel()
            sq_fg += float((err * mask).sum())
            n_fg += float(mask.sum()) * 3
            for p, r in zip(chunk, recon01):
                scores.append(score_video(r.permute(1, 0, 2, 3), p.caption))  # [F, 3, H, W]
    return {
        "psnr": 10 * math.log10(1.0 / max(sq_all / n_all, 1e-12)),
        "fg_psnr": 10 * math.log10(1.0 / max(sq_fg / max(n_fg, 1), 1e-12)),
        "oracle_confirm": float(np.mean([s["ta"] == 1.0 for s in scores])),
        "oracle_ta": float(np.mean([s["ta"] for s in scores])),
        "oracle_phy": float(np.mean([s["phy"] for s in scores])),
        "oracle_vq": float(np.mean([s["vq"] for s in scores])),
        "count": len(scores),
    }


def gate_passed(metrics: dict, cfg: HeldoutGate) -> bool:
    """True when held-out ``metrics`` meet the stage's quality gate."""
    return metrics["fg_psnr"] >= cfg.min_fg_psnr and metrics["oracle_confirm"] >= cfg.min_oracle_confirm


def draw_train_batch(train: list[WorldPrompt] | None, rng: np.random.Generator, count: int,
                     num_frames: int) -> tuple[list[WorldPrompt], np.ndarray | None]:
    """A step's ``count`` training prompts and their indices in the pool ``train`` (drawn without replacement), or,
    with ``train=None`` (``train_prompts: None``), fresh train-split scenes from ``rng`` and no indices."""
    if train is None:
        return fresh_train_prompts(rng, count, num_frames), None
    picks = rng.choice(len(train), count, replace=False)
    return [train[i] for i in picks], picks


def heldout_evaluator(stage: str, vae, heldout: list[WorldPrompt], cfg, render_cfg: RenderConfig,
                      history: list[dict]):
    """``evaluate(step) -> stop``: held-out metrics appended to ``history`` and logged; stop once the gate passes
    and foreground PSNR reaches ``cfg.target_fg_psnr`` (``cfg``: a stage config, i.e. a :class:`HeldoutGate`)."""

    def evaluate(step: int) -> bool:
        metrics = evaluate_vae(vae, heldout[:cfg.eval_videos], render_cfg)
        history.append({"step": step, **metrics})
        log.info("%s step %d held-out: %s", stage, step, {k: round(v, 3) for k, v in metrics.items()})
        return gate_passed(metrics, cfg) and metrics["fg_psnr"] >= cfg.target_fg_psnr

    return evaluate


def train_vae(cfg: VaeStageConfig, render_cfg: RenderConfig, stage_dir, train: list[WorldPrompt] | None,
              heldout: list[WorldPrompt], seed: int):
    """Build (or resume) the VAE stage in ``stage_dir``; returns ``(vae, record)`` with held-out metrics.

    Batches: step s draws ``cfg.batch_size`` scenes from ``train`` with ``numpy.random.default_rng([seed, s])``.
    """
    from pathlib import Path

    from vidreward.world.build_loop import StageBudget, mark_done, stage_done, train_stage

    stage_dir = Path(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vae = make_vae(cfg)
    done = stage_done(stage_dir)
    if done is not None and done["gate_passed"]:
        vae.load_state_dict(load_checkpoint_weights(stage_dir))
        vae.eval()
        log.info("vae stage already done: %s", done["heldout"])
        return vae, done

    def loss_fn(step: int):
        rng = np.random.default_rng([seed, step])
        batch, _ = draw_train_batch(train, rng, cfg.batch_size, render_cfg.num_frames)
        video, mask = render_with_masks(batch, render_cfg)
        video, mask = _train_crop(video, mask, cfg, rng, vae.config.scale_factor_spatial, step)
        recon = decode_unclamped(vae, encode_mean(vae, video))
        sharpen = step >= cfg.sharpen_from_step
        loss = reconstruction_loss(recon, video, dilate(mask, cfg.ring_px) if sharpen else mask, cfg.fg_weight,
                                   cfg.l2_weight, cfg.edge_weight if sharpen else 0.0)
        with torch.no_grad():
            fg = psnr(recon.clamp(-1, 1) * 0.5 + 0.5, video * 0.5 + 0.5, mask)
        return loss, {"fg_psnr": fg}

    history: list[dict] = []
    evaluate = heldout_evaluator("vae", vae, heldout, cfg, render_cfg, history)

    budget = StageBudget(cfg.lr, cfg.lr_final_frac, cfg.warmup_steps, cfg.max_steps, cfg.minutes,
                         cfg.checkpoint_every, cfg.eval_every)
    run = train_stage("vae", stage_dir, vae, loss_fn, budget, evaluate)
    final = evaluate_vae(vae, heldout[:cfg.eval_videos], render_cfg)
    record = {**run, "heldout": final, "history": history, "gate_passed": gate_passed(final, cfg)}
    mark_done(stage_dir, record)
    return vae, record


def _train_crop(video: torch.Tensor, mask: torch.Tensor, cfg: VaeStageConfig, rng: np.random.Generator,
                align: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training window of ``[B, C, F, H, W]`` videos and masks at ``step`` (clip length and crop: see config)."""
    num_frames, height, width = video.shape[2:]
    clip = cfg.short_clip_frames if step < cfg.short_clip_steps else num_frames
    t0 = int(rng.choice(list(range(0, num_frames - clip + 1, 4))))
    crop = cfg.train_crop or height
    y0 = int(rng.integers(0, (height - crop) // align + 1)) * align
    x0 = int(rng.integers(0, (width - crop) // align + 1)) * align
    window = (slice(None), slice(None), slice(t0, t0 + clip), slice(y0, y0 + crop), slice(x0, x0 + crop))
    return video[window], mask[window]


def load_checkpoint_weights(stage_dir) -> dict[str, torch.Tensor]:
    """The weights of the last checkpoint of a stage directory."""
    from pathlib import Path

    from vidreward.train.checkpoint import list_checkpoints, load_checkpoint

    found = list_checkpoints(Path(stage_dir) / "checkpoints")
    if not found:
        raise FileNotFoundError(f"{stage_dir}: no checkpoint; delete done.json to retrain the stage")
    return load_checkpoint(found[-1]).trainable
