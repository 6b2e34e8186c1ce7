"""The world's DRF data: train records and held-out items for ``train drf`` with ``data.source: world``.

:func:`prepare_world_data` builds (on first use, resumably) the world annotation records with
:func:`vidreward.world.records.build_world_records` — exact decompositions, the pipeline's ``questions`` stage,
caption-matched clean renders as reference videos, and reference answers from the configured critic through the
pipeline's ``references`` stage, keeping only all-favourable records as the paper does (Sec. 6.3) — and points
``data.path`` / ``report.eval_records`` at them.

Fallback for a weak critic. When the critic keeps fewer than ``data.world_min_records`` records:

- ``data.world_fallback: labels`` (default): every rejected train prompt gets the world's **construction labels**
  as reference answers. The reference video is a clean render of the caption, so the true answer of every query is
  the favourable one: TA "Yes" with the templated explanation "The video shows this: <facet>", Phy all "No", VQ
  "has obvious defect" "No" — exactly the answers the world critic is trained to give on a clean render
  (:mod:`vidreward.world.critic_data`). Each record carries ``reference_source`` ("critic" or "world_labels") and
  the counts are logged and written to ``world_data.json`` (the report's ``train.world_data``).
- ``data.world_fallback: error``: stop with an error naming the count and the fix.

Files, under the records directory (``data.world_records_dir`` or ``<output_dir>/world_records``): everything
:func:`build_world_records` writes, plus ``train_records.jsonl`` (the DRF input), ``heldout_records.jsonl``
(the report's held-out prompts with their query sets, labelled like the fallback) and ``world_data.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidreward.annotate.jsonl import read_jsonl, write_jsonl_atomic
from vidreward.log import get_logger

if TYPE_CHECKING:
    from vidreward.train.distributed import DistInfo
    from vidreward.train.drf_config import DRFConfig

log = get_logger(__name__)


def records_dir(cfg: DRFConfig) -> Path:
    """Where the world records of a DRF run live."""
    return Path(cfg.data.world_records_dir) if cfg.data.world_records_dir else Path(cfg.output_dir) / "world_records"


def label_reference(query: dict[str, Any], decomposition: dict[str, str]) -> dict[str, Any]:
    """A ``queries`` item with the construction-label (favourable) reference answer of a clean render."""
    from vidreward.world.critic_answers import phy_answer, ta_answer, vq_answer

    if query["dimension"] == "ta":
        text = ta_answer("Yes", decomposition[query["key"]].strip().rstrip("."))
    elif query["dimension"] == "phy":
        text = phy_answer("clean")
    else:
        text = vq_answer("clean")
    return {**query, "reference_answer": text, "reference": json.loads(text)}


def label_records(questions: list[dict[str, Any]], out_dir: Path) -> list[dict[str, Any]]:
    """Records of ``questions`` items (absolute video paths) answered with construction labels, paths relative."""
    out = []
    for item in questions:
        queries = [label_reference(q, item["decomposition"]) for q in item["queries"]]
        video = str(Path(item["video"]).resolve().relative_to(out_dir.resolve()))
        out.append({**item, "video": video, "queries": queries, "reference_source": "world_labels"})
    return out


def labelled_heldout(items: list[dict[str, Any]], n_frames: int) -> list[dict[str, Any]]:
    """Held-out items with their query sets (the ``questions`` stage's ``build_queries``) and construction labels.

    The report's critic score reads only the questions; the labels are the targets of its gradient heatmaps.
    """
    from vidreward.critics.queries import build_queries

    out = []
    for item in items:
        queries = [label_reference(q.to_dict(), item["decomposition"])
                   for q in build_queries(item["decomposition"], item["caption"], n_frames)]
        out.append({**item, "queries": queries, "n_frames": n_frames, "reference_source": "world_labels"})
    return out


def select_records(kept: list[dict[str, Any]], questions: list[dict[str, Any]], out_dir: Path, min_records: int,
                   fallback: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The train records: the critic's all-favourable ones, topped up with construction labels if too few."""
    kept = [{**r, "reference_source": "critic"} for r in kept]
    counts = {"prompts": len(questions), "critic_kept": len(kept), "label_filled": 0}
    if len(kept) >= min_records:
        return kept, counts
    message = (f"the critic's all-favourable filter kept {len(kept)} of {len(questions)} world train prompts, "
               f"fewer than data.world_min_records={min_records}")
    if fallback == "error":
        raise ValueError(f"{message}; use a stronger critic (critic.path), more prompts (data.world_train_prompts), "
                         "a lower data.world_min_records, or data.world_fallback=labels")
    kept_ids = {r["id"] for r in kept}
    filled = label_records([q for q in questions if q["id"] not in kept_ids], out_dir)
    counts["label_filled"] = len(filled)
    log.warning("%s: the other %d get the world's construction labels as reference answers "
                "(data.world_fallback=labels)", message, len(filled))
    order = {q["id"]: i for i, q in enumerate(questions)}
    return sorted(kept + filled, key=lambda r: order[r["id"]]), counts


def reject_categories(path: Path) -> dict[str, int]:
    """Counts of the references stage's rejects by category (over every resumed run)."""
    counts: dict[str, int] = {}
    for item in read_jsonl(path) if path.is_file() else []:
        counts[item["category"]] = counts.get(item["category"], 0) + 1
    return counts


def build_train_records(cfg: DRFConfig) -> dict[str, Any]:
    """Build the world records if missing and write ``train_records.jsonl``; return the counts."""
    from vidreward.world.records import build_world_records

    out_dir = records_dir(cfg)
    d = cfg.data
    build_world_records(out_dir, cfg.critic.path, num_train=d.world_train_prompts,
                        num_heldout=max(cfg.report.num_prompts, 1), n_frames=cfg.reward.num_frames)
    questions = read_jsonl(out_dir / "work" / "questions.jsonl")
    kept = read_jsonl(out_dir / "records.jsonl")
    records, counts = select_records(kept, questions, out_dir, d.world_min_records, d.world_fallback)
    write_jsonl_atomic(out_dir / "train_records.jsonl", records)
    write_jsonl_atomic(out_dir / "heldout_records.jsonl",
                       labelled_heldout(read_jsonl(out_dir / "heldout.jsonl"), cfg.reward.num_frames))
    counts["records"] = len(records)
    counts["critic_rejected_by_category"] = reject_categories(out_dir / "work" / "records.rejects.jsonl")
    (out_dir / "world_data.json").write_text(json.dumps(counts, indent=2))
    log.info("world data: %d train records (%d from the critic, %d construction-labelled) -> %s", len(records),
             counts["critic_kept"], counts["label_filled"], out_dir / "train_records.jsonl")
    return counts


def prepare_world_data(cfg: DRFConfig, info: DistInfo) -> dict[str, Any]:
    """Rank 0 builds the world data (the other ranks wait); every rank points ``cfg`` at it; returns the counts.

    Sets ``cfg.data.path``, ``cfg.data.video_root`` and (when empty) ``cfg.report.eval_records``.
    """
    out_dir = records_dir(cfg)
    if info.is_main:
        build_train_records(cfg)
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()
    cfg.data.path, cfg.data.video_root = str(out_dir / "train_records.jsonl"), str(out_dir)
    if not cfg.report.eval_records:
        cfg.report.eval_records = str(out_dir / "heldout_records.jsonl")
    return json.loads((out_dir / "world_data.json").read_text())
