"""Stage 3, ``vidreward annotate references``: the VLM answers every query on the caption-matched real video.

For each record, N_f frames are sampled uniformly from the real video (only those frames are decoded, see
:func:`vidreward.video_io.read_video_frames`) and each query is asked with them:

- TA: ``[frames..., question]`` (the real video in the role of "this AI-generated video");
- Phy / VQ: their templates compare a test video (first N_f frames) with a real one (last N_f frames). For
  the *reference* answers the real video stands in both roles: ``[frames..., frames..., question]``. The
  answer then states what a defect-free, caption-faithful video looks like (the paper's reference answers,
  Fig. 4), and at training time the generated video takes the first slot.

Answers are parsed (:func:`~vidreward.annotate.parsing.parse_answer`; a failed parse is retried with the
error fed back) and stored as canonical JSON with explanations capped at 50 words (Sec. 6.4). Sec. 6.3 keeps
a record only when every reference answer is favourable ("Yes" for TA, "No" defect for Phy/VQ; see
:mod:`vidreward.critics.queries`); other records go to the rejects file with category ``unfavourable`` and
the first offending answer as reason, unless ``keep_unfavourable`` is set. Without ``keep_unfavourable`` a record's
queries are asked one after another and the first unfavourable answer ends the record (the rest would be thrown
away; on the world critic this is most of the stage's time); records still run concurrently. With it, all queries
of a record are asked at once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F

from vidreward.annotate.parsing import ParseError, parse_answer
from vidreward.annotate.records import RecordError, canonical_answer, query_record, require
from vidreward.annotate.retry import ask_until_parsed
from vidreward.annotate.stage import ItemRejected
from vidreward.critics.queries import DECISION_KEYS, FAVOURABLE, Query, is_favourable, queries_from_record
from vidreward.llm import ChatBackend, vision_message
from vidreward.video_io import VideoReadError, read_video_frames

RETRY_PROMPT = "Your answer could not be parsed: {error}\nReply again with only the JSON object."


def resize_frames(frames: torch.Tensor, max_side: int) -> torch.Tensor:
    """Downscale uint8 ``[N, 3, H, W]`` so the longer side is at most ``max_side`` (bilinear, antialiased)."""
    height, width = frames.shape[-2:]
    scale = max_side / max(height, width)
    if max_side <= 0 or scale >= 1:
        return frames
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    resized = F.interpolate(frames.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)  # [N, 3, h, w]


async def answer_query(
    backend: ChatBackend, frames: list[torch.Tensor], query: Query, attempts: int, counters: Counter
) -> dict[str, Any]:
    """Ask one query on ``frames`` (each uint8 ``[3, H, W]``); return the parsed answer or raise ItemRejected."""
    return await ask_until_parsed(
        backend, [vision_message(frames, query.question)], lambda reply: parse_answer(reply, query.dimension),
        ParseError, attempts, RETRY_PROMPT, counters, chat_error_category="vlm_error",
        unparseable_category="unparseable_answer", unparseable_reason=f"no parsable answer after {attempts} replies",
        request_counter="vlm_requests", reason_prefix=f"{query.dimension}:{query.key}: ",
    )


def unfavourable_answers(queries: list[Query], answers: list[dict[str, Any]]) -> list[str]:
    """``"dim:key: decision=value"`` for every answer that is not the favourable one."""
    bad = []
    for query, answer in zip(queries, answers):
        if not is_favourable(query.dimension, answer):
            wrong = [f"{k}={answer.get(k)}" for k in DECISION_KEYS[query.dimension] if answer.get(k) != FAVOURABLE[query.dimension]]
            bad.append(f"{query.dimension}:{query.key}: {', '.join(wrong)}")
    return bad


def make_references_processor(
    backend: ChatBackend, n_frames: int, frame_max_side: int, attempts: int, keep_unfavourable: bool
):
    """The per-item function of the references stage (fills ``reference_answer``/``reference`` per query)."""

    async def process(item: dict[str, Any], counters: Counter) -> dict[str, Any]:
        try:
            require(item, "caption", "video", "queries")
            queries = queries_from_record(item)
        except (RecordError, ValueError) as err:
            raise ItemRejected("missing_field", str(err)) from err
        try:
            frames = await asyncio.to_thread(read_video_frames, item["video"], n_frames)  # [N_f, 3, H, W]
        except VideoReadError as err:
            raise ItemRejected("video_unreadable", str(err)) from err
        frame_list = list(resize_frames(frames, frame_max_side).unbind(0))

        def ask(query: Query):
            return answer_query(backend, frame_list + frame_list if query.needs_reference else frame_list, query,
                                attempts, counters)

        if keep_unfavourable:  # every answer is kept: ask all queries at once
            results = await asyncio.gather(*(ask(q) for q in queries), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            answers: list[dict[str, Any]] = list(results)  # type: ignore[arg-type]
            counters["explanations_cut_to_50_words"] += sum(
                canonical_answer(q.dimension, a)[2] for q, a in zip(queries, answers)
            )
            counters["kept_unfavourable"] += bool(unfavourable_answers(queries, answers))
        else:  # the record is dropped at its first unfavourable answer, so the later queries are not asked
            answers = []
            for query in queries:
                answers.append(await ask(query))
                counters["explanations_cut_to_50_words"] += canonical_answer(query.dimension, answers[-1])[2]
                bad = unfavourable_answers([query], answers[-1:])
                if bad:
                    counters["dropped_unfavourable"] += 1
                    counters["queries_not_asked_after_unfavourable"] += len(queries) - len(answers)
                    raise ItemRejected("unfavourable", f"not every reference answer is favourable: {bad[0]} "
                                       f"(query {len(answers)} of {len(queries)}; the rest were not asked)")
        counters["kept"] += 1
        return {**item, "queries": [query_record(q, a) for q, a in zip(queries, answers)], "n_frames": n_frames}

    return process
