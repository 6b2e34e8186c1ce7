"""Build stage ``vae_decoder``: fine-tune only the decoder of the shipped world VAE, the encoder frozen.

Why the decoder alone: the shipped DiT was trained on the encoder's posterior-mean latents, normalised with the
VAE config's ``latents_mean`` / ``latents_std``. Freezing ``encoder`` and ``quant_conv`` keeps every latent,
both statistics and so the trained DiT valid, while the decoder (``post_quant_conv`` + ``decoder``) learns to
render those latents back sharply. The stage asserts the encoder is bit-exact before it exports. With
``decoder_base_dim`` the decoder is first widened function-preservingly (:mod:`.widen`), so training starts from the
shipped decoder's output with more channels to learn with.

Loss (reused from :mod:`.build_vae`, never duplicated): the foreground-weighted reconstruction of the decoder's
**unclamped** output, objects and a ``ring_px`` ring around them weighted ``fg_weight``, plus the edge term
(image-gradient L1, ``edge_weight``) that fights the blur the oracle's VQ check catches:

    L = sum_p w_p (l1 |x_p - x^_p| + l2 (x_p - x^_p)^2) / sum_p w_p
        + edge_weight * sum_d sum_p w_p |D_d (x^ - x)|_p / sum_p w_p

Latent noise (robustness to DiT-generated latents): each training video's latent is decoded as
``z + s * latents_std * eps`` with ``eps ~ N(0, I)`` and ``s ~ U(0, latent_noise_max)`` per video, i.e. noise of
std ``s`` in the DiT's normalised latent space. Held-out foreground PSNR is also measured at
``s = latent_noise_max`` (``noisy_fg_psnr``) before and after, to see what the noise bought.

Data: whole 9-frame, full 64 x 64 train-split renders (the DiT's latents are whole frames, so the decoder
learns exactly the distribution it decodes at sampling time); step s draws its batch with
``numpy.random.default_rng([seed, s])``, so a killed run resumes identically from ``<work_dir>/vae_decoder/``.
Held-out renders are only evaluated (:func:`.build_vae.evaluate_vae`, same prompts as the VAE stage).

Run it as ``vidreward world build generator --vae-decoder-only [--vae-decoder-minutes M]``: it reads the
shipped ``vae/`` of ``--out`` (default: the package's generator), and when the gate passes (or, failing that,
when every held-out metric improved) it atomically replaces only ``<out>/vae`` and records a ``vae_decoder``
section in ``<out>/build_report.json``; the DiT, text encoder and tokenizer files are left untouched.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from vidreward.log import get_logger
from vidreward.world.build_vae import (
    HeldoutGate,
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
from vidreward.world.vae_crops import LatentCache, crop_box, decode_crops
from vidreward.world.vae_export import export_vae, record_in_report

log = get_logger(__name__)

#: sub-modules that stay frozen (they define the latents the DiT was trained on)
FROZEN_MODULES: tuple[str, ...] = ("encoder", "quant_conv")
#: sub-modules that are fine-tuned
TRAINED_MODULES: tuple[str, ...] = ("post_quant_conv", "decoder")
#: held-out metrics that must all improve to keep a decoder that misses the gate
IMPROVE_KEYS: tuple[str, ...] = ("psnr", "fg_psnr", "oracle_confirm", "oracle_ta", "oracle_phy", "oracle_vq")


@dataclasses.dataclass
class DecoderStageConfig(HeldoutGate):
    """Optimisation, loss and gate of the decoder-only fine-tuning stage."""

    decoder_base_dim: int | None = None
    """width (``AutoencoderKLWan``'s ``decoder_base_dim``, a whole multiple of the shipped width) of the decoder to
    train: the shipped decoder widened function-preservingly (:mod:`.widen`), then fine-tuned; None fine-tunes the
    shipped decoder in place at its own width"""
    widen_noise: float = 0.0
    """std of the symmetry-breaking noise added to widened weights, relative to each weight tensor's std"""
    widen_random_split: bool = True
    """break the widened copies' symmetry exactly, reading each copy with a random share of its column
    (:mod:`.widen`); the copy-and-1e-2-noise widening of session 5 left the copies nearly equal"""
    batch_size: int = 8
    """whole videos per optimiser step"""
    lr: float = 5e-4
    """peak AdamW learning rate (linear warm-up, then cosine to lr_final_frac * lr)"""
    lr_final_frac: float = 0.05
    """final learning rate as a fraction of lr"""
    warmup_steps: int = 50
    """linear warm-up steps"""
    max_steps: int = 1500
    """step budget (the cosine spans it; the minutes cap may stop earlier and then drives the schedule)"""
    minutes: float = 40.0
    """wall-clock cap of the stage in minutes (evaluation time excluded)"""
    fg_weight: float = 10.0
    """loss weight of object (and ring) pixels relative to background pixels"""
    l1_weight: float = 1.0
    """weight of the absolute error"""
    l2_weight: float = 0.5
    """weight of the squared error (PSNR's own error; ``l1_weight=0, l2_weight=1, edge_weight=0`` trains for PSNR
    alone)"""
    edge_weight: float = 1.0
    """weight of the image-gradient L1 (sharpness) term"""
    ring_px: int = 2
    """width of the ring around each object weighted like the object (edges and halos)"""
    latent_noise_max: float = 0.1
    """max std of the Gaussian noise added to a training latent, in normalised latent units (0 = clean latents)"""
    crop_latent: int | None = None
    """train on random ``crop_latent x crop_latent`` crops of the (cached) latents instead of whole frames
    (:mod:`.vae_crops`; crop 10 of 16 makes steps 2.2x faster, benchmarks/vae_decoder_crops.py); None trains on
    whole frames"""
    crop_margin: int = 1
    """latent pixels trimmed off each inner side of a crop before the loss (where a crop decodes unlike the frame)"""
    eval_every: int = 250
    """steps between held-out evaluations (which stop the stage once target_fg_psnr and the gate are met)"""
    checkpoint_every: int = 25
    """steps between atomic training checkpoints"""


def widens_decoder(config, decoder_base_dim: int | None) -> bool:
    """True when ``decoder_base_dim`` asks for a decoder width other than that of the VAE ``config``."""
    return decoder_base_dim is not None and decoder_base_dim != (config["decoder_base_dim"] or config["base_dim"])


def load_decoder_trainable_vae(vae_dir: str | Path, decoder_base_dim: int | None = None, widen_noise: float = 0.0,
                               seed: int = 0, random_split: bool = False):
    """``AutoencoderKLWan`` from ``vae_dir`` with only :data:`TRAINED_MODULES` requiring grad.

    With ``decoder_base_dim`` the decoder side (``post_quant_conv`` + ``decoder``) is the shipped one widened to that
    width (:func:`.widen.widen_decoder`; symmetry broken by ``random_split`` and / or ``widen_noise``); the encoder,
    ``quant_conv`` and the latent statistics are the shipped ones.
    """
    from diffusers import AutoencoderKLWan

    from vidreward.world.widen import widen_decoder

    vae = AutoencoderKLWan.from_pretrained(str(vae_dir))
    if widens_decoder(vae.config, decoder_base_dim):
        config = {k: v for k, v in vae.config.items() if not k.startswith("_")}
        wide = AutoencoderKLWan.from_config({**config, "decoder_base_dim": decoder_base_dim})
        for name in FROZEN_MODULES:
            getattr(wide, name).load_state_dict(getattr(vae, name).state_dict())
        widen_decoder(vae, wide, widen_noise, seed, random_split)
        vae = wide
    vae.requires_grad_(False)
    for name in TRAINED_MODULES:
        getattr(vae, name).requires_grad_(True)
    return vae


def frozen_state(vae) -> dict[str, torch.Tensor]:
    """Copies of the weights of :data:`FROZEN_MODULES` (to prove later that they did not change)."""
    return {f"{m}.{k}": v.detach().clone() for m in FROZEN_MODULES for k, v in getattr(vae, m).state_dict().items()}


def assert_frozen_unchanged(vae, reference: dict[str, torch.Tensor]) -> None:
    """Raise if any encoder / quant_conv weight differs bit-wise from ``reference``."""
    now = frozen_state(vae)
    changed = [k for k in reference if not torch.equal(now[k], reference[k])]
    if changed or now.keys() != reference.keys():
        raise RuntimeError(f"vae_decoder: frozen encoder weights changed ({changed[:5]}); the DiT's latents would no "
                           "longer match — delete the stage directory and rerun")


def noisy_latent(vae, z: torch.Tensor, noise_max: float, rng: np.random.Generator) -> torch.Tensor:
    """``z [B, C, F', H', W']`` plus per-video noise of std ``U(0, noise_max)`` in normalised latent units."""
    if noise_max <= 0:
        return z
    std = torch.tensor(vae.config.latents_std, dtype=z.dtype).view(1, -1, 1, 1, 1)  # [1, C, 1, 1, 1]
    scale = torch.from_numpy(rng.uniform(0, noise_max, z.shape[0])).to(z.dtype).view(-1, 1, 1, 1, 1)
    eps = torch.from_numpy(rng.standard_normal(z.shape)).to(z.dtype)
    return z + scale * std * eps


def noisy_fg_psnr(vae, prompts: list[WorldPrompt], render_cfg: RenderConfig, noise: float, seed: int = 0) -> float:
    """Held-out foreground PSNR (dB, clamped decode) of latents with normalised noise of std exactly ``noise``."""
    rng = np.random.default_rng(seed)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)  # [1, C, 1, 1, 1]
    sq, n = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, len(prompts), 8):
            video, mask = render_with_masks(prompts[start:start + 8], render_cfg)  # [B, 3, F, H, W], [B, 1, F, H, W]
            z = encode_mean(vae, video)
            z = z + noise * std * torch.from_numpy(rng.standard_normal(z.shape)).to(z.dtype)
            recon = vae.decode(z).sample.clamp(-1, 1)
            sq += float(((recon - video) * 0.5).square().mul(mask).sum())
            n += float(mask.sum()) * 3
    return 10 * math.log10(1.0 / max(sq / max(n, 1.0), 1e-12))


def heldout_metrics(vae, cfg: DecoderStageConfig, render_cfg: RenderConfig, heldout: list[WorldPrompt]) -> dict:
    """:func:`.build_vae.evaluate_vae` on ``heldout[:eval_videos]`` plus ``noisy_fg_psnr``."""
    prompts = heldout[:cfg.eval_videos]
    metrics = evaluate_vae(vae, prompts, render_cfg)
    metrics["noisy_fg_psnr"] = noisy_fg_psnr(vae, prompts, render_cfg, cfg.latent_noise_max or 0.1)
    return metrics


def train_vae_decoder(cfg: DecoderStageConfig, render_cfg: RenderConfig, vae_dir: str | Path, stage_dir: str | Path,
                      train: list[WorldPrompt] | None, heldout: list[WorldPrompt], seed: int):
    """Fine-tune (or resume) the decoder of the VAE in ``vae_dir``; returns ``(vae, record)``.

    ``record`` has ``before`` / ``after`` held-out metrics, ``gate_passed``, ``improved_all``, steps, seconds.
    """
    from vidreward.world.build_loop import StageBudget, mark_done, measured_once, stage_done, train_stage

    stage_dir = Path(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vae = load_decoder_trainable_vae(vae_dir, cfg.decoder_base_dim, cfg.widen_noise, seed, cfg.widen_random_split)
    reference = frozen_state(vae)
    done = stage_done(stage_dir)
    if done is not None:
        from vidreward.world.build_vae import load_checkpoint_weights

        vae.load_state_dict(load_checkpoint_weights(stage_dir))
        assert_frozen_unchanged(vae, reference)
        vae.eval()
        log.info("vae_decoder stage already done: %s", done["after"])
        return vae, done
    from diffusers import AutoencoderKLWan

    # the VAE in vae_dir as it is (what an export would replace), not the noised widened decoder
    before = measured_once(stage_dir / "before.json", lambda: heldout_metrics(
        AutoencoderKLWan.from_pretrained(str(vae_dir)).eval(), cfg, render_cfg, heldout))
    log.info("vae_decoder before: %s", {k: round(v, 3) for k, v in before.items()})

    cache = LatentCache(lambda v: encode_mean(vae, v))

    def loss_fn(step: int):
        rng = np.random.default_rng([seed, step])
        batch, picks = draw_train_batch(train, rng, cfg.batch_size, render_cfg.num_frames)
        video, mask = render_with_masks(batch, render_cfg)  # [B, 3, F, H, W], [B, 1, F, H, W]
        if cfg.crop_latent:
            if picks is None:  # fresh scenes: nothing to cache
                with torch.no_grad():
                    z = encode_mean(vae, video)  # [B, z, F', H', W']
            else:
                z = torch.stack([cache.get(int(i), v) for i, v in zip(picks, video)])
            z = noisy_latent(vae, z, cfg.latent_noise_max, rng)
            boxes = [crop_box(rng, z.shape[-2:], cfg.crop_latent, cfg.crop_margin, vae.config.scale_factor_spatial)
                     for _ in batch]
            masks = torch.cat([mask, dilate(mask, cfg.ring_px)], dim=1)  # [B, 2, F, H, W]: objects, objects + ring
            parts = decode_crops(lambda zz: decode_unclamped(vae, zz), z, video, masks, boxes)
            loss = sum(reconstruction_loss(r, v, m[:, 1:], cfg.fg_weight, cfg.l2_weight, cfg.edge_weight,
                                           cfg.l1_weight) for r, v, m in parts) / len(parts)
            with torch.no_grad():  # pooled over the scored regions, flattened (their sizes differ at frame sides)
                recon01 = torch.cat([(r.clamp(-1, 1) * 0.5 + 0.5).flatten() for r, _, _ in parts])
                target01 = torch.cat([(v * 0.5 + 0.5).flatten() for _, v, _ in parts])
                objects = torch.cat([m[:, :1].expand_as(v).flatten() for _, v, m in parts])
                fg = psnr(recon01, target01, objects)
            return loss, {"fg_psnr": fg}
        with torch.no_grad():
            z = noisy_latent(vae, encode_mean(vae, video), cfg.latent_noise_max, rng)  # [B, z, F', H', W']
        recon = decode_unclamped(vae, z)  # [B, 3, F, H, W], unclamped
        loss = reconstruction_loss(recon, video, dilate(mask, cfg.ring_px), cfg.fg_weight, cfg.l2_weight,
                                   cfg.edge_weight, cfg.l1_weight)
        with torch.no_grad():
            fg = psnr(recon.clamp(-1, 1) * 0.5 + 0.5, video * 0.5 + 0.5, mask)
        return loss, {"fg_psnr": fg}

    history: list[dict] = []
    evaluate = heldout_evaluator("vae_decoder", vae, heldout, cfg, render_cfg, history)

    budget = StageBudget(cfg.lr, cfg.lr_final_frac, cfg.warmup_steps, cfg.max_steps, cfg.minutes,
                         cfg.checkpoint_every, cfg.eval_every)
    run = train_stage("vae_decoder", stage_dir, vae, loss_fn, budget, evaluate)
    assert_frozen_unchanged(vae, reference)
    after = heldout_metrics(vae, cfg, render_cfg, heldout)
    record = {**run, "before": before, "after": after, "history": history, "gate_passed": gate_passed(after, cfg),
              "improved_all": improved_all(before, after),
              "encoder_bit_exact": True, "config": dataclasses.asdict(cfg)}
    mark_done(stage_dir, record)
    return vae, record


def improved_all(before: dict, after: dict) -> bool:
    """True when foreground PSNR rose and no metric of :data:`IMPROVE_KEYS` fell (a 0 or 1 may stay put)."""
    return after["fg_psnr"] > before["fg_psnr"] and all(after[k] >= before[k] for k in IMPROVE_KEYS)


def run_decoder_stage(cfg: DecoderStageConfig, render_cfg: RenderConfig, generator_dir: str | Path,
                      work_dir: str | Path, train: list[WorldPrompt] | None, heldout: list[WorldPrompt], seed: int) -> dict:
    """Train, then export into ``generator_dir`` when the gate passes or every metric improved; returns the section.

    The section (also written to ``<generator_dir>/build_report.json`` when exported) has ``status``
    (``exported_gate_passed`` / ``exported_improved_gate_failed`` / ``kept_old_decoder``), config, minutes,
    steps, ``heldout_before`` / ``heldout_after`` and the evaluation history.
    """
    vae, record = train_vae_decoder(cfg, render_cfg, Path(generator_dir) / "vae", Path(work_dir) / "vae_decoder",
                                    train, heldout, seed)
    section = {"config": record["config"], "minutes": record["seconds"] / 60, "steps": record["steps"],
               "heldout_before": record["before"], "heldout_after": record["after"], "history": record["history"],
               "gate_passed": record["gate_passed"], "encoder_bit_exact": record["encoder_bit_exact"],
               "heldout_prompts": f"heldout[0:{cfg.eval_videos}]"}
    if record["gate_passed"] or record["improved_all"]:
        export_vae(vae, generator_dir)
        section["status"] = "exported_gate_passed" if record["gate_passed"] else "exported_improved_gate_failed"
        record_in_report(generator_dir, section)
    else:
        section["status"] = "kept_old_decoder"
    log.info("vae_decoder: %s (held-out before %s, after %s)", section["status"], record["before"], record["after"])
    return section
