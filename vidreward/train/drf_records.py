"""The DRF trainer's data: annotation records (JSONL, :mod:`vidreward.annotate`) turned into reward samples.

A record gives the caption, the path of its caption-matched real video (reference frames for the Phy / VQ
queries) and its decomposed questions (:func:`vidreward.critics.queries.queries_from_record`). A bad record fails
before training with its id and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vidreward.annotate.jsonl import read_jsonl
from vidreward.critics.queries import queries_from_record
from vidreward.rewards.base import RewardSample
from vidreward.train.drf_config import DRFConfig
from vidreward.video_io import read_video_frames


def load_records(cfg: DRFConfig) -> list[dict[str, Any]]:
    """Read the training JSONL (a bad line is an error naming its line); every record needs a caption."""
    path = Path(cfg.data.path)
    if not path.is_file():
        raise FileNotFoundError(f"data.path {path} does not exist; point it at an annotation JSONL")
    records = read_jsonl(path)
    for record in records:
        if not record.get("caption"):
            raise ValueError(f"{path}: record {record.get('id')!r} has no caption")
    if not records:
        raise ValueError(f"{path} holds no records")
    return records


class ReferenceFrames:
    """Loads and caches each record's reference frames ``[N_f, 3, H, W]`` in [0, 1]."""

    def __init__(self, video_root: Path, num_frames: int) -> None:
        self.video_root = video_root
        self.num_frames = num_frames
        self._cache: dict[str, torch.Tensor] = {}

    def __call__(self, record: dict[str, Any]) -> torch.Tensor | None:
        video = record.get("video")
        if not video:
            return None
        path = Path(video) if Path(video).is_absolute() else self.video_root / video
        key = str(path)
        if key not in self._cache:
            self._cache[key] = read_video_frames(path, self.num_frames).float() / 255.0
        return self._cache[key]


def make_samples(cfg: DRFConfig, records: list[dict[str, Any]], references: ReferenceFrames) -> list[RewardSample]:
    """Reward context of each record: caption, reference frames (if used) and its query set (rich)."""
    out = []
    for record in records:
        reference = references(record) if cfg.reward.use_reference else None
        queries = queries_from_record(record) if cfg.reward.kind == "rich" else []
        out.append(RewardSample(record["caption"], reference, queries))
    return out
