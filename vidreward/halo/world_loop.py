"""The full HALO loop in the procedural world from one command (issue item 7)::

    vidreward train gran-dpo --config configs/world/gran_dpo.yaml

Stages, each skipped when its output already exists (so a rerun resumes where the last one stopped):

1. **prompts** -- world captions (train split) through the Eq. 10 filter (:mod:`vidreward.halo.world_data`);
2. **sample** -- N = 5 candidates per prompt from the base generator: latents, seeds, mp4
   (:func:`vidreward.halo.sample.run_sample`);
3. **reward models** -- when missing: the oracle labels the first ``label_videos`` candidates (video + every
   patch, 1-4) and ``vidreward train reward-model`` trains the video RM, then continues it into the patch RM
   (Sec. 3.2: the oracle plays GPT-4o);
4. **score** -- video and 3x3 patch rewards of every candidate (:func:`vidreward.halo.score.run_score`);
5. **pairs** -- the median-margin rules (:func:`vidreward.halo.pairs_stage.run_pairs`);
6. **before** -- held-out prompts sampled by the base model, scored by the oracle and by the reward models
   (cached in ``eval_before.json``);
7. **Gran-DPO** -- :func:`vidreward.train.gran_dpo.train` with LoRA in ``output_dir`` (resumes from its checkpoints);
8. **after** -- the same videos' seeds with the trained LoRA; ``report.json`` with ``oracle_before/after`` and the
   reward model's scores as ``critic_before/after``, plus ``analysis/`` (Fig. 5 before/after, Fig. 4a).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from vidreward.annotate.jsonl import write_json_atomic, write_jsonl_atomic
from vidreward.config import ConfigError
from vidreward.generators.config import GeneratorConfig, LoraConfig
from vidreward.halo.world_loop_config import WorldGranDPOConfig
from vidreward.log import get_logger

log = get_logger(__name__)

WORLD_JOB = "world_gran_dpo"


# ---- reward models -------------------------------------------------------------------------------------------
def default_backbone(rm_dir: Path, pixels: int) -> str:
    """The shipped world critic when present, else a tiny random Qwen2.5-VL built under ``rm_dir``."""
    from vidreward.world.critic_build_config import ASSET_DIR

    if (Path(ASSET_DIR) / "config.json").is_file():
        return str(ASSET_DIR)
    from vidreward.critics.tiny import build_tiny_qwen2_5_vl

    log.warning("no shipped world critic at %s: the reward models start from a tiny random Qwen2.5-VL", ASSET_DIR)
    return str(build_tiny_qwen2_5_vl(rm_dir / "backbone", min_pixels=pixels, max_pixels=pixels))


def ensure_reward_models(cfg: WorldGranDPOConfig, data: Path, rm_dir: Path) -> tuple[Path, Path, dict[str, Any]]:
    """(video RM dir, patch RM dir, their validation metrics), training the missing ones on oracle labels."""
    from vidreward.halo.world_data import oracle_labels
    from vidreward.train.reward_model import train_reward_model
    from vidreward.train.reward_model_config import RewardModelTrainConfig

    rc = cfg.reward_models
    video = Path(rc.video_model) if rc.video_model else rm_dir / "video" / "model"
    patch = Path(rc.patch_model) if rc.patch_model else rm_dir / "patch" / "model"
    metrics: dict[str, Any] = {}
    if (video / "reward_model.json").is_file() and (patch / "reward_model.json").is_file():
        for kind, path in (("video", video), ("patch", patch)):
            report = path.parent / "val_metrics.json"
            metrics[kind] = json.loads(report.read_text()) if report.is_file() else None
        return video, patch, metrics
    grid = (cfg.grid[0], cfg.grid[1])
    if not (rm_dir / "patch_labels.jsonl").is_file():
        metrics["labels"] = oracle_labels(data / "candidates.jsonl", rc.label_videos, grid, rm_dir)
    common = dict(val_fraction=rc.val_fraction, num_frames=rc.num_frames, min_pixels=rc.pixels,
                  max_pixels=rc.pixels, train=rc.train, lr=rc.lr, batch_size=rc.batch_size,
                  micro_batch_size=rc.micro_batch_size, eval_batch_size=rc.micro_batch_size, device="cpu",
                  seed=cfg.seed, checkpoint_every=0, resume="auto", grid=grid)
    if not (video / "reward_model.json").is_file():
        backbone = rc.backbone or default_backbone(rm_dir, rc.pixels)
        metrics["video"] = train_reward_model(RewardModelTrainConfig(
            kind="video", train_data=str(rm_dir / "video_labels.jsonl"), backbone=backbone, epochs=rc.video_epochs,
            output_dir=str(video.parent), **common))
    if not (patch / "reward_model.json").is_file():
        metrics["patch"] = train_reward_model(RewardModelTrainConfig(
            kind="patch", train_data=str(rm_dir / "patch_labels.jsonl"), backbone="", init_from=str(video),
            epochs=rc.patch_epochs, output_dir=str(patch.parent), **common))
    return video, patch, metrics


# ---- before / after evaluation ---------------------------------------------------------------------------------
def evaluate_run(cfg: WorldGranDPOConfig, gen_cfg: GeneratorConfig, video_rm: Path, patch_rm: Path, tag: str,
                 out: Path) -> dict[str, Any]:
    """Oracle and reward-model scores of held-out videos; writes ``eval_<tag>.json`` and ``eval_<tag>_scores.jsonl``."""
    from vidreward.generators.registry import load_generator
    from vidreward.rewards.reward_model import RewardModel
    from vidreward.video_io import subsample_frames
    from vidreward.world.eval import evaluate_generator, generate_videos
    from vidreward.world.splits import world_prompts

    rc = cfg.report
    prompts = [p.caption for p in world_prompts("heldout", rc.num_prompts, num_frames=cfg.sampling.num_frames)]
    rows = [(i, p, s) for i, p in enumerate(prompts) for s in rc.seeds]
    gen = load_generator(gen_cfg)
    with torch.no_grad():
        videos = generate_videos(gen, [r[1] for r in rows], [r[2] for r in rows], cfg.sampling, rc.batch_size)
    del gen
    oracle = evaluate_generator(None, [r[1] for r in rows], [r[2] for r in rows], cfg.sampling, videos=videos)
    video_model, patch_model = RewardModel.from_pretrained(video_rm).eval(), RewardModel.from_pretrained(patch_rm).eval()
    table, dims = [], []
    with torch.no_grad():
        for (i, prompt, seed), video in zip(rows, videos):
            frames = subsample_frames(video, cfg.reward_models.num_frames)  # [N, 3, H, W]
            v, p = video_model.score(frames, prompt), patch_model.score_patches(frames, prompt)  # [5], [h, w, 5]
            dims.append(v)
            table.append({"id": f"e{i}/s{seed}", "prompt_id": f"e{i}", "candidate_id": f"s{seed}", "prompt": prompt,
                          "video_reward": float(v.mean()), "patch_rewards": p.mean(-1).tolist(),
                          "oracle_overall": oracle["videos"][len(table)]["overall"]})
    mean_dims = torch.stack(dims).mean(0)  # [5]
    critic = {"overall": float(mean_dims.mean()), "video_reward": float(mean_dims.mean()),
              "patch_reward": float(torch.tensor([r["patch_rewards"] for r in table]).mean()),
              "dimensions": dict(zip(video_model.spec.dimensions, mean_dims.tolist())), "count": len(table)}
    write_jsonl_atomic(out / f"eval_{tag}_scores.jsonl", table)
    result = {"oracle": {k: v for k, v in oracle.items() if k != "videos"}, "critic": critic,
              "videos": oracle["videos"]}
    write_json_atomic(out / f"eval_{tag}.json", result)
    return result


# ---- the loop -------------------------------------------------------------------------------------------------
def run_world_gran_dpo(cfg: WorldGranDPOConfig) -> dict[str, Any]:
    """Run (or resume) every stage; return the report (also written to ``<output_dir>/report.json``)."""
    from vidreward.halo.analyze import run_analyze
    from vidreward.halo.job_configs import HaloSampleConfig, HaloScoreConfig
    from vidreward.halo.pairs_stage import run_pairs
    from vidreward.halo.sample import run_sample
    from vidreward.halo.score import run_score
    from vidreward.halo.world_data import world_training_prompts
    from vidreward.train.gran_dpo import train
    from vidreward.train.gran_dpo_config import GranDPOConfig, GranDPODataConfig
    from vidreward.world.splits import world_prompts

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if not cfg.generator.build_tiny_if_missing and not (Path(cfg.generator.path) / "model_index.json").is_file():
        raise ConfigError(f"generator.path: {cfg.generator.path} is not a diffusers Wan directory; build the world "
                          "generator with `vidreward world build generator` or point generator.path at one")
    out, timings = Path(cfg.output_dir), {}
    shared = Path(cfg.data_dir) if cfg.data_dir else out
    data, rm_dir = shared / "data", shared / "reward_models"
    data.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "world_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    base = dataclasses.replace(copy.deepcopy(cfg.generator), lora=LoraConfig())  # candidates: the base model

    def stage(name: str, fn):
        t0 = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - t0, 2)
        log.info("world HALO: stage %s done in %.1f s", name, timings[name])
        return result

    evaluation = [p.caption for p in world_prompts("heldout", cfg.report.num_prompts, num_frames=cfg.sampling.num_frames)]
    if (data / "prompts.summary.json").is_file():
        prompts = json.loads((data / "prompts.summary.json").read_text())
    else:
        prompts = stage("prompts", lambda: world_training_prompts(
            cfg.prompts.num_prompts, cfg.prompts.tau, evaluation, cfg.sampling.num_frames, data))
    sample_cfg = HaloSampleConfig(prompts=str(data / "prompts.jsonl"), output_dir=str(data),
                                  num_candidates=cfg.num_candidates, generator=base, sampling=cfg.sampling,
                                  seed=cfg.seed, batch_size=cfg.num_candidates)
    stage("sample", lambda: run_sample(sample_cfg))
    video_rm, patch_rm, rm_metrics = stage("reward_models", lambda: ensure_reward_models(cfg, data, rm_dir))
    score_cfg = HaloScoreConfig(candidates=str(data / "candidates.jsonl"), output=str(data / "scores.jsonl"),
                                scorer=cfg.scorer, video_model=str(video_rm), patch_model=str(patch_rm),
                                grid=list(cfg.grid), num_frames=cfg.reward_models.num_frames)
    stage("score", lambda: run_score(score_cfg))
    pairs = stage("pairs", lambda: run_pairs(data / "scores.jsonl", data / "pairs.jsonl", cfg.patch_median))
    if (out / "eval_before.json").is_file():
        before = json.loads((out / "eval_before.json").read_text())
    else:
        before = stage("eval_before", lambda: evaluate_run(cfg, base, video_rm, patch_rm, "before", out))
    dpo_cfg = GranDPOConfig(output_dir=str(out), seed=cfg.seed, generator=copy.deepcopy(cfg.generator),
                            data=GranDPODataConfig(pairs_path=str(data / "pairs.jsonl"),
                                                   latents_dir=str(data / "latents")),
                            loss=cfg.loss, optim=cfg.optim, train=cfg.train, logging=cfg.logging)
    summary = stage("gran_dpo", lambda: train(dpo_cfg))
    tuned = dataclasses.replace(copy.deepcopy(base), lora=LoraConfig(rank=cfg.generator.lora.rank,
                                                                     alpha=cfg.generator.lora.alpha,
                                                                     target_modules=cfg.generator.lora.target_modules,
                                                                     path=str(out / "final")))
    after = stage("eval_after", lambda: evaluate_run(cfg, tuned, video_rm, patch_rm, "after", out))
    analysis = run_analyze(out / "analysis", out / "eval_before_scores.jsonl", out / "eval_after_scores.jsonl")
    report = {
        "oracle_before": before["oracle"], "oracle_after": after["oracle"],
        "critic_before": before["critic"], "critic_after": after["critic"],
        "critic": "HALO video reward model (critic_*.overall = mean video reward, 1-4) and patch reward model",
        "prompts": prompts, "pairs": pairs, "reward_models": rm_metrics, "train": summary,
        "analysis": {"dir": str(out / "analysis"), "before": analysis.get("before"), "after": analysis.get("after")},
        "timings_s": timings, "generator": cfg.generator.path,
    }
    write_json_atomic(out / "report.json", report)
    log.info("world HALO: oracle overall %.3f -> %.3f, RM video reward %.3f -> %.3f; report %s",
             report["oracle_before"]["overall"], report["oracle_after"]["overall"],
             report["critic_before"]["overall"], report["critic_after"]["overall"], out / "report.json")
    return report


def world_loop_entry(args: argparse.Namespace) -> int | None:
    """For ``vidreward train gran-dpo``: run the world loop when the preset's job is ``world_gran_dpo``, else None."""
    from vidreward.config import load_config, read_yaml

    if not args.config or read_yaml(args.config).get("job") != WORLD_JOB:
        return None
    _, cfg = load_config(args.config, args.overrides, job=WORLD_JOB)
    run_world_gran_dpo(cfg)
    return 0
