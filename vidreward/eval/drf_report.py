"""Before/after evaluation of a DRF run and its report (``report.json`` + ``report.md`` with PNG/GIF assets).

Held-out prompts come from a JSONL of annotation records (caption, decomposition, optional reference video).
For each prompt and seed the generator samples a video (no grad); then

- **oracle** (world prompts only): :func:`vidreward.world.eval.evaluate_videos` scores the pixels against the
  prompt — the ground truth that no reward sees;
- **critic**: the mean probability the frozen critic gives the favourable decision over the prompt's query set
  (TA "Yes", Phy/VQ "No" defect), each decision read after the favourable answer prefix. For Phy, whose answer
  has five decision keys, the five probabilities are averaged.

"before" is measured on the base model (LoRA adapters switched off, or before the first step for full
fine-tuning), "after" on the trained one, with the same prompts and seeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidreward.annotate.records import canonical_answer
from vidreward.critics.queries import DECISION_KEYS, FAVOURABLE, Query, build_queries, queries_from_record
from vidreward.critics.vlm import VLMCritic
from vidreward.log import get_logger
from vidreward.video_io import read_video_frames, subsample_frames, tile_videos, write_video

log = get_logger(__name__)


def favourable_answer(query: Query) -> str:
    """The canonical answer text with every decision key at its favourable value (explanation left empty)."""
    good = FAVOURABLE[query.dimension]
    parsed: dict[str, Any] = {key: good for key in DECISION_KEYS[query.dimension]}
    if query.dimension == "ta":
        parsed["explanation"] = ""
    text, _, _ = canonical_answer(query.dimension, parsed)
    return text


def favourable_probability(critic: VLMCritic, frames: torch.Tensor, query: Query,
                           reference: torch.Tensor | None) -> float:
    """Mean over the query's decision keys of p(favourable) / (p(Yes) + p(No)) after the favourable prefix."""
    answer = favourable_answer(query)
    good = FAVOURABLE[query.dimension]
    probs = []
    for key in DECISION_KEYS[query.dimension]:
        marker = json.dumps(key) + ": "
        start = answer.index(marker) + len(marker)
        prefix = answer[:start] + ('"' if answer[start] == '"' else "")
        decision = critic.decision_logprobs(frames, query.question, reference=reference if query.needs_reference
                                            else None, answer_prefix=prefix)
        pair = torch.stack([decision.logp_yes, decision.logp_no]).float().softmax(0)
        probs.append(float(pair[0] if good == "Yes" else pair[1]))
    return float(np.mean(probs))


def load_eval_records(path: str | Path, limit: int, num_frames: int) -> list[dict[str, Any]]:
    """The first ``limit`` held-out records, each with its query set (built from the decomposition if absent)."""
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()][:limit]
    if not records:
        raise ValueError(f"report.eval_records {path} holds no records")
    for record in records:
        if record.get("queries"):
            record["_queries"] = queries_from_record(record)
        else:
            record["_queries"] = build_queries(record["decomposition"], record["caption"], num_frames)
        video = record.get("video")
        if video:
            video_path = Path(video) if Path(video).is_absolute() else Path(path).parent / video
            record["_reference"] = read_video_frames(video_path, num_frames).float() / 255.0
    return records


@torch.no_grad()
def sample_eval_videos(gen, records: list[dict[str, Any]], seeds: list[int], sampling) -> list[torch.Tensor]:
    """One video ``[F, 3, H, W]`` per (record, seed), record-major, from fixed noise seeds."""
    from vidreward.sampling import sample

    videos = []
    for record in records:
        embeds = gen.encode_prompts([record["caption"]], [sampling.negative_prompt])
        for seed in seeds:
            z = gen.initial_latents(1, sampling.num_frames, sampling.height, sampling.width,
                                    torch.Generator("cpu").manual_seed(seed))
            z0 = sample(gen, embeds, z, sampling.num_steps, sampling.guidance_scale, shift=sampling.shift)
            videos.append(gen.decode(z0)[0].float().cpu())
    return videos


def evaluate(gen, critic: VLMCritic, records: list[dict[str, Any]], seeds: list[int], sampling, num_frames: int,
             oracle: bool) -> tuple[dict[str, Any], list[torch.Tensor]]:
    """Oracle (optional) and critic scores of freshly sampled held-out videos; returns (scores, videos)."""
    videos = sample_eval_videos(gen, records, seeds, sampling)
    scores: dict[str, Any] = {}
    if oracle:
        from vidreward.world.oracle import aggregate, score_video

        captions = [r["caption"] for r in records for _ in seeds]
        scores["oracle"] = aggregate([score_video(v, c) for v, c in zip(videos, captions)])
    per_dim: dict[str, list[float]] = {"ta": [], "phy": [], "vq": []}
    for i, video in enumerate(videos):
        record = records[i // len(seeds)]
        frames = subsample_frames(video, num_frames)
        for query in record["_queries"]:
            reference = record.get("_reference")
            if query.needs_reference and reference is None:
                continue
            per_dim[query.dimension].append(favourable_probability(critic, frames, query, reference))
    critic_scores = {d: float(np.mean(v)) for d, v in per_dim.items() if v}
    critic_scores["overall"] = float(np.mean([x for v in per_dim.values() for x in v]))
    scores["critic"] = critic_scores
    return scores, videos


def plot_curves(metrics: list[dict[str, Any]], path: Path) -> Path:
    """Loss curves (total and per dimension) and reward over steps, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [m["step"] for m in metrics]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for key in sorted({k for m in metrics for k in m if k.startswith("loss")}):
        axes[0].plot(steps, [m.get(key, np.nan) for m in metrics], label=key)
    axes[0].set_xlabel("step")
    axes[0].set_title("DRF loss")
    axes[0].legend()
    axes[1].plot(steps, [m.get("grad_norm", np.nan) for m in metrics])
    axes[1].set_xlabel("step")
    axes[1].set_title("gradient norm")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(out_dir: Path, before: dict[str, Any], after: dict[str, Any], assets: dict[str, str],
                 summary: dict[str, Any]) -> dict[str, Any]:
    """``report.json`` (keys oracle_before/after, critic_before/after, ...) and a readable ``report.md``."""
    report = {
        "oracle_before": before.get("oracle"), "oracle_after": after.get("oracle"),
        "critic_before": before["critic"], "critic_after": after["critic"],
        "assets": assets, "train": dict(summary),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    lines = ["# DRF run report", "", f"Steps: {summary.get('step')}, skipped (non-finite): "
             f"{summary.get('skipped_nonfinite')}", "", "| score | before | after |", "|---|---|---|"]
    for name in ("oracle", "critic"):
        b, a = before.get(name) or {}, after.get(name) or {}
        for key in [k for k in b if isinstance(b[k], float)]:
            lines.append(f"| {name} {key} | {b[key]:.3f} | {a.get(key, float('nan')):.3f} |")
        for facet, value in (b.get("facets") or {}).items():
            if value is not None:
                lines.append(f"| {name} TA {facet} | {value:.3f} | {a['facets'][facet]:.3f} |")
    if before.get("oracle"):
        lines += ["", f"Oracle: {before['oracle']['count']} held-out videos (same prompts and seeds before and after)."]
    if summary.get("world_data"):
        lines += ["", "World records: " + ", ".join(f"{k} {v}" for k, v in summary["world_data"].items())]
    lines += ["", f"![loss curves]({assets['curves']})", "",
              f"Before: ![before]({assets['gif_before']})  After: ![after]({assets['gif_after']})", ""]
    lines += [f"![heatmap]({p})" for p in assets.get("heatmaps", [])]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    return report


def make_assets(out_dir: Path, videos_before: list[torch.Tensor], videos_after: list[torch.Tensor],
                metrics: list[dict[str, Any]], heatmaps: list[Path]) -> dict[str, Any]:
    """Write the curve PNG and before/after GIF grids; return their paths relative to ``out_dir``."""
    assets_dir = out_dir / "report_assets"
    assets_dir.mkdir(parents=True, exist_ok=True)
    plot_curves(metrics, assets_dir / "curves.png")
    write_video(tile_videos(videos_before, columns=4), assets_dir / "before.gif", fps=4)
    write_video(tile_videos(videos_after, columns=4), assets_dir / "after.gif", fps=4)
    return {"curves": "report_assets/curves.png", "gif_before": "report_assets/before.gif",
            "gif_after": "report_assets/after.gif",
            "heatmaps": [str(p.relative_to(out_dir)) for p in heatmaps]}


def report_before(cfg, gen, critic: VLMCritic, out_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Evaluate the model before training (cached in ``eval_before.json`` + videos, so a resume reuses it)."""
    from safetensors.torch import load_file, save_file

    rc = cfg.report
    records = load_eval_records(rc.eval_records, rc.num_prompts, cfg.reward.num_frames)
    scores_path, videos_path = out_dir / "eval_before.json", out_dir / "eval_before_videos.safetensors"
    if scores_path.is_file() and videos_path.is_file():
        tensors = load_file(str(videos_path))
        return records, {"scores": json.loads(scores_path.read_text()),
                         "videos": [tensors[f"v{i}"] for i in range(len(tensors))]}
    log.info("report: evaluating the base model on %d held-out prompts x %d seeds", len(records), len(rc.seeds))
    scores, videos = evaluate(gen, critic, records, rc.seeds, cfg.sampling, cfg.reward.num_frames, rc.oracle)
    save_file({f"v{i}": v.contiguous() for i, v in enumerate(videos)}, str(videos_path))
    scores_path.write_text(json.dumps(scores, indent=2))
    return records, {"scores": scores, "videos": videos}


def report_after(cfg, gen, critic: VLMCritic, reward, records: list[dict[str, Any]], before: dict[str, Any],
                 out_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the trained model, draw heatmaps before/after, and write ``report.json`` / ``report.md``."""
    from vidreward.eval.heatmap import reward_saliency, write_heatmaps
    from vidreward.rewards.base import RewardSample
    from vidreward.train.metrics import read_metrics

    rc = cfg.report
    after_scores, after_videos = evaluate(gen, critic, records, rc.seeds, cfg.sampling, cfg.reward.num_frames,
                                          rc.oracle)
    heatmaps: list[Path] = []
    for i, record in enumerate(records[: rc.heatmap_prompts]):
        queries = record["_queries"] if cfg.reward.kind == "rich" else []
        sample = RewardSample(record["caption"], record.get("_reference"), queries)
        for tag, videos in (("before", before["videos"]), ("after", after_videos)):
            frames = subsample_frames(videos[i * len(rc.seeds)], cfg.reward.num_frames)
            with torch.enable_grad():
                saliency = reward_saliency(frames, reward, sample)
            paths = write_heatmaps(frames, saliency, out_dir / "report_assets", stem=f"heatmap{i}_{tag}", scale=4)
            heatmaps.append(paths["grid"])
    assets = make_assets(out_dir, before["videos"], after_videos, read_metrics(out_dir), heatmaps)
    report = write_report(out_dir, before["scores"], after_scores, assets, summary)
    log.info("report: %s (critic overall %.3f -> %.3f)", out_dir / "report.md",
             report["critic_before"]["overall"], report["critic_after"]["overall"])
    return report
