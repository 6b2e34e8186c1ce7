"""``vidreward halo pairs``: the scored candidate table -> Gran-DPO preference pairs (HALO Sec. 3.3).

Reads the JSONL of ``vidreward halo score`` (one :class:`vidreward.halo.pairs.CandidateScores` record per video),
applies the median-margin rules of :func:`vidreward.halo.pairs.build_pairs` (keep a pair when its video margin
> m_V or any patch margin > m_P, with m_P per ``patch_median``; winner by video reward) and writes one :class:`PreferencePair` record per kept
pair (both margins, the per-patch signs F and the weights omega) to the output JSONL, plus
``<output stem>.summary.json`` with m_V, m_P and the kept/dropped counts. The output is rewritten atomically
(pairs depend on global medians, so there is no partial resume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vidreward.annotate.jsonl import read_jsonl, write_json_atomic, write_jsonl_atomic
from vidreward.halo.pairs import CandidateScores, PatchMedian, build_pairs
from vidreward.log import get_logger

log = get_logger(__name__)


def read_scores(path: str | Path) -> list[CandidateScores]:
    """The candidates of a scores JSONL; a bad record raises naming the file and line."""
    out = []
    for number, record in enumerate(read_jsonl(path), 1):
        try:
            out.append(CandidateScores.from_dict(record))
        except ValueError as err:
            raise ValueError(f"{path}:{number}: {err}") from err
    return out


def run_pairs(scores_path: str | Path, output: str | Path, patch_median: PatchMedian = "per_pair_max") -> dict[str, Any]:
    """Build and write the pairs; return (and write) the summary. ``patch_median``: see :mod:`vidreward.halo.pairs`."""
    output = Path(output)
    pair_set = build_pairs(read_scores(scores_path), patch_median=patch_median)
    write_jsonl_atomic(output, [p.to_dict() for p in pair_set.pairs])
    summary = {
        "scores": str(scores_path), "output": str(output),
        "median_video_margin": pair_set.median_video_margin, "median_patch_margin": pair_set.median_patch_margin,
        "patch_median": pair_set.patch_median,
        "candidate_pairs": pair_set.num_candidate_pairs, "kept": len(pair_set.pairs),
        "dropped": pair_set.num_dropped, "kept_by_video": pair_set.num_kept_by_video,
        "kept_by_patch_only": pair_set.num_kept_by_patch_only,
        "prompts_without_pairs": pair_set.num_prompts_without_pairs,
    }
    write_json_atomic(output.with_name(output.name.removesuffix(".jsonl") + ".summary.json"), summary)
    log.info("halo pairs: %d of %d candidate pairs kept (m_V=%.4g, m_P=%.4g) -> %s", summary["kept"],
             summary["candidate_pairs"], summary["median_video_margin"], summary["median_patch_margin"], output)
    return summary
