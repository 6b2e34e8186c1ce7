"""``vidreward world build generator``: the reproducible recipe of the world's tiny Wan2.1-architecture generator.

Stages (each resumable from ``<work_dir>/<stage>/``, each with a ``--minutes`` cap; seeds fixed):

1. ``vae`` (:mod:`.build_vae`): a tiny ``AutoencoderKLWan`` trained on train-split renders with a
   foreground-weighted loss. **Gate**: held-out foreground PSNR >= 25 dB and the oracle confirming >= 90% of
   reconstructions; the build stops here when the gate fails (never lowered to fit a budget).
2. ``text`` (:mod:`.build_dit`): a word-level tokenizer over the world's caption vocabulary and a tiny
   **randomly initialised, frozen** ``UMT5EncoderModel``. Random is enough: its token embeddings and attention
   mix give each caption a distinct, position-aware code, and the DiT's cross-attention learns to read it.
3. ``dit`` (:mod:`.build_dit`): a tiny ``WanTransformer3DModel`` trained by flow matching on cached VAE latents
   (posterior mean, normalised with the VAE config's per-channel ``latents_mean`` / ``latents_std``). Snapshots
   of the DiT are scored with the oracle bench on held-out prompts, and the shipped one is the first whose TA
   lies in the target band (30-75%: it draws objects but leaves room to improve).

The result is written as a diffusers ``WanPipeline`` directory (``model_index.json``, ``vae/``,
``transformer/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``; safetensors) to ``--out`` (default: the
package's ``vidreward/world/assets/generator``), plus ``build_report.json`` with every measured number.

Follow-up stage ``vae_decoder`` (:mod:`.build_vae_decoder`; ``--vae-decoder-only``, i.e. ``stages=("vae_decoder",)``):
fine-tunes only the decoder of the VAE already in ``--out`` (encoder frozen, so the DiT's latents stay valid; optionally
widened first) and replaces only ``<out>/vae`` when its gate passes or every held-out metric improved; it runs alone
and skips the stages above.

Follow-up stage ``vae_joint`` (:mod:`.build_vae_joint`; ``--vae-joint``, i.e. ``stages=("vae_joint", "text", "dit",
"export")``): fine-tunes the whole VAE in ``--out`` (encoder too, optionally with more latent channels) in place of
stage 1, with stage 1's gate; the latents change, so the text, DiT and export stages follow it as in a full build.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch

from vidreward.log import get_logger
from vidreward.world.build_dit import DitStageConfig
from vidreward.world.build_loop import write_json
from vidreward.world.build_vae import VaeStageConfig, train_vae
from vidreward.world.build_vae_decoder import DecoderStageConfig, run_decoder_stage
from vidreward.world.build_vae_joint import JointStageConfig, train_vae_joint
from vidreward.world.render import RenderConfig
from vidreward.world.splits import world_prompts

log = get_logger(__name__)

#: where the shipped generator lives inside the package
ASSET_DIR = Path(__file__).resolve().parent / "assets" / "generator"


@dataclasses.dataclass
class BuildConfig:
    """The whole build (the CLI sets the budget fields; the defaults are the shipped recipe)."""

    work_dir: str = "runs/world_generator_build"
    """stage checkpoints, caches and reports (resumable)"""
    out_dir: str = str(ASSET_DIR)
    """where the finished diffusers directory is written"""
    seed: int = 0
    """seed of every random choice of the build"""
    threads: int = 1
    """torch CPU threads (other jobs share the cores)"""
    num_frames: int = 9
    """frames per world video (1 + 4k)"""
    size: int = 64
    """frame height and width"""
    vae: VaeStageConfig = dataclasses.field(default_factory=VaeStageConfig)
    """the VAE stage"""
    dit: DitStageConfig = dataclasses.field(default_factory=DitStageConfig)
    """the text and DiT stages"""
    vae_decoder: DecoderStageConfig = dataclasses.field(default_factory=DecoderStageConfig)
    """the decoder-only fine-tuning stage (runs only when ``stages`` names ``vae_decoder``)"""
    vae_joint: JointStageConfig = dataclasses.field(default_factory=JointStageConfig)
    """the whole-VAE fine-tuning stage (replaces stage 1 when ``stages`` names ``vae_joint``)"""
    bench_prompts: int = 64
    """held-out prompts of the final oracle bench of the shipped generator"""
    ignore_vae_gate: bool = False
    """go on to the DiT although the VAE gate failed (only to meet a deadline; recorded in the report)"""
    stages: tuple[str, ...] = ("vae", "text", "dit", "export")
    """stages to run (finished ones are skipped anyway); ``("vae_decoder",)`` runs the decoder fine-tuning alone;
    ``"vae_joint"`` in place of ``"vae"`` fine-tunes the VAE in ``out_dir`` instead of training one"""


def build_generator(cfg: BuildConfig) -> dict:
    """Run (or resume) the build; returns the build report (also written to ``work_dir/build_report.json``)."""
    torch.set_num_threads(cfg.threads)
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    render_cfg = RenderConfig(num_frames=cfg.num_frames, height=cfg.size, width=cfg.size)
    vae_stage = next((s for s in ("vae_decoder", "vae_joint") if s in cfg.stages), "vae")
    gate = getattr(cfg, vae_stage)  # the VAE stage that runs: its train pool, held-out renders and gate
    train = world_prompts("train", gate.train_prompts, num_frames=cfg.num_frames) if gate.train_prompts else None
    heldout = world_prompts("heldout", gate.eval_videos, num_frames=cfg.num_frames)
    report: dict = {"config": dataclasses.asdict(cfg)}
    if vae_stage == "vae_decoder":
        report["vae_decoder"] = run_decoder_stage(cfg.vae_decoder, render_cfg, cfg.out_dir, work, train, heldout,
                                                  cfg.seed)
        report["status"] = report["vae_decoder"]["status"]
        _write_report(work, report)
        return report
    t0 = time.monotonic()
    if vae_stage == "vae_joint":
        vae, vae_record = train_vae_joint(cfg.vae_joint, render_cfg, Path(cfg.out_dir) / "vae", work / "vae_joint",
                                          train, heldout, cfg.seed)
        vae_record = {**vae_record, "heldout": vae_record["after"]}
        report["vae_joint"] = vae_record
    else:
        vae, vae_record = train_vae(cfg.vae, render_cfg, work / "vae", train, heldout, cfg.seed)
        report["vae"] = {k: v for k, v in vae_record.items() if k != "history"}
        report["vae"]["wall_seconds_this_run"] = time.monotonic() - t0
    _write_report(work, report)
    report["vae_gate_ignored"] = not vae_record["gate_passed"] and cfg.ignore_vae_gate
    if not vae_record["gate_passed"] and not cfg.ignore_vae_gate:
        flag = "--" + vae_stage.replace("_", "-")
        log.error("VAE gate failed (held-out %s; need fg_psnr >= %.1f, oracle_confirm >= %.2f): not training the "
                  "DiT. Re-run with more %s-minutes / %s-steps to continue from the checkpoint.",
                  vae_record["heldout"], gate.min_fg_psnr, gate.min_oracle_confirm, flag, flag)
        report["status"] = "vae_gate_failed"
        _write_report(work, report)
        return report
    if "dit" not in cfg.stages:
        report["status"] = "vae_only"
        _write_report(work, report)
        return report
    report.update(build_dit_stages(cfg, vae, render_cfg, work))
    _write_report(work, report)
    if report.get("status") == "done":  # the export replaced the directory: it gets the report of what it holds
        write_json(Path(cfg.out_dir) / "build_report.json", report)
    return report


def _write_report(work: Path, report: dict) -> None:
    write_json(work / "build_report.json", report)


#: the base generator's held-out oracle TA must land in this band (draws objects, leaves room to improve)
TA_BAND: tuple[float, float] = (0.30, 0.75)
#: held-out prompts used to pick the DiT snapshot (disjoint from the bench's first 64)
SELECT_PROMPTS: slice = slice(64, 96)


def build_dit_stages(cfg: BuildConfig, vae, render_cfg: RenderConfig, work: Path) -> dict:
    """Text encoder, latent cache, DiT training, snapshot selection by the oracle bench, export, final bench."""
    from vidreward.generators.wan import WanGenerator
    from vidreward.video_io import tile_videos, write_video
    from vidreward.world.build_dit import (
        MAX_SEQUENCE_LENGTH,
        cache_latents,
        export_pipeline,
        make_text_encoder,
        make_transformer,
        scheduler_config,
        snapshot_dirs,
        train_dit,
    )
    from vidreward.world.build_loop import mark_done, stage_done
    from vidreward.world.eval import BENCH_SAMPLING, bench_prompts, evaluate_generator, generate_videos

    dit_cfg = cfg.dit
    out: dict = {}
    t0 = time.monotonic()
    tokenizer, text_encoder = make_text_encoder(dit_cfg, cfg.seed)
    transformer = make_transformer(dit_cfg, vae.config.z_dim, cfg.seed)
    gen = WanGenerator(transformer, vae, text_encoder, tokenizer, scheduler_config(), MAX_SEQUENCE_LENGTH)
    cache = cache_latents(gen, dit_cfg, render_cfg, work / "latents.pt", cfg.seed)
    z = cache["latents"].double()  # [N, z, F', H', W']
    mean = z.mean(dim=(0, 2, 3, 4))
    std = z.std(dim=(0, 2, 3, 4))
    vae.register_to_config(latents_mean=[float(v) for v in mean], latents_std=[float(v) for v in std])
    out["text_and_cache_seconds"] = time.monotonic() - t0
    out["text"] = {"vocab_size": len(tokenizer), "params": sum(p.numel() for p in text_encoder.parameters()),
                   "frozen_random_init": True}

    stage_dir = work / "dit"
    stage_dir.mkdir(parents=True, exist_ok=True)
    done = stage_done(stage_dir)
    if done is None:
        done = train_dit(gen, cache, dit_cfg, stage_dir, cfg.seed)
        mark_done(stage_dir, done)
    out["dit"] = {**done, "params": sum(p.numel() for p in transformer.parameters())}

    # pick the snapshot: the latest whose held-out TA is in the band (search backwards from the end)
    select_prompts = [p.caption for p in world_prompts("heldout", SELECT_PROMPTS.stop)][SELECT_PROMPTS]
    select_seeds = list(range(1000, 1000 + len(select_prompts)))
    from vidreward.train.checkpoint import load_checkpoint

    scores_path = stage_dir / "snapshot_scores.json"
    scores: dict[str, dict] = json.loads(scores_path.read_text()) if scores_path.is_file() else {}
    chosen, best = None, None
    for snap in reversed(snapshot_dirs(stage_dir)):
        if snap.name not in scores:
            transformer.load_state_dict(load_checkpoint(snap).trainable)
            r = evaluate_generator(gen, select_prompts, select_seeds, BENCH_SAMPLING)
            scores[snap.name] = {k: r[k] for k in ("ta", "phy", "vq", "overall")}
            write_json(scores_path, scores)
            log.info("snapshot %s: %s", snap.name, scores[snap.name])
        ta = scores[snap.name]["ta"]
        if best is None or ta > scores[best.name]["ta"]:
            best = snap
        if TA_BAND[0] <= ta <= TA_BAND[1]:
            chosen = snap
            break
        if ta < TA_BAND[0] and best is not None and scores[best.name]["ta"] < TA_BAND[0] and snap != best:
            break  # going further back only gets worse
    if chosen is None:
        chosen = best
        log.error("no DiT snapshot has held-out TA in %s; shipping the best (%s: %s)", TA_BAND, chosen.name,
                  scores[chosen.name])
    transformer.load_state_dict(load_checkpoint(chosen).trainable)
    out["snapshot"] = {"chosen": chosen.name, "scores": scores, "ta_in_band": TA_BAND[0] <= scores[chosen.name]["ta"]
                       <= TA_BAND[1], "selection_prompts": f"heldout[{SELECT_PROMPTS.start}:{SELECT_PROMPTS.stop}]"}

    export_pipeline(gen, Path(cfg.out_dir))
    shipped = WanGenerator.from_pretrained(cfg.out_dir)
    prompts = bench_prompts(cfg.bench_prompts, cfg.num_frames)
    seeds = list(range(len(prompts)))
    with torch.no_grad():
        videos = generate_videos(shipped, prompts, seeds, BENCH_SAMPLING)
    bench = evaluate_generator(shipped, prompts, seeds, BENCH_SAMPLING, videos=videos)
    write_json(work / "bench_base.json", bench)
    write_video(tile_videos(list(videos[:16]), columns=4), work / "samples_grid.gif")
    out["bench"] = {k: bench[k] for k in ("ta", "phy", "vq", "overall", "facets", "count")}
    out["grid"] = str(work / "samples_grid.gif")
    out["size_mb"] = sum(f.stat().st_size for f in Path(cfg.out_dir).rglob("*") if f.is_file()) / 2**20
    out["status"] = "done"
    log.info("shipped generator at %s (%.1f MB); bench %s", cfg.out_dir, out["size_mb"], out["bench"])
    return out
