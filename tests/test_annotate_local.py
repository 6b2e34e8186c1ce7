"""The local transformers backend end to end on tiny in-process models (garbage replies -> retry and reject)."""

import json
from pathlib import Path

import pytest
import torch

from tests.annotate_fixtures import annotate_config, good_video, write_jsonl
from tests.tiny_chat_models import save_tiny_text_model, save_tiny_vl_model
from vidreward.annotate import pipeline
from vidreward.annotate.jsonl import read_jsonl
from vidreward.annotate.stage import stage_paths
from vidreward.critics.queries import build_queries
from vidreward.llm import ChatBackendConfig, ChatError, make_chat_backend, vision_message
from vidreward.llm_cache import CachedChatBackend


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_models")
    return save_tiny_text_model(root / "text"), save_tiny_vl_model(root / "vl")


def _local(path: Path, **kw) -> dict:
    return {"kind": "local", "model": str(path), "max_tokens": 12, "cache_dir": "", **kw}


def test_local_backends_reply_with_the_chat_template(models, tmp_path):
    text_path, vl_path = models
    text = make_chat_backend(ChatBackendConfig(**_local(text_path, cache_dir=str(tmp_path / "cache"))))
    assert isinstance(text, CachedChatBackend)
    reply = text.chat([{"role": "user", "content": "hello"}])
    assert isinstance(reply, str) and text.chat([{"role": "user", "content": "hello"}]) == reply  # greedy + cache
    assert text.hits == 1
    with pytest.raises(ChatError, match="vision: true"):
        text.chat([vision_message([torch.zeros(3, 8, 8, dtype=torch.uint8)], "x")])
    vl = make_chat_backend(ChatBackendConfig(**_local(vl_path, vision=True)))
    frames = list((torch.rand(2, 3, 32, 32) * 255).to(torch.uint8).unbind(0))
    assert isinstance(vl.chat([vision_message(frames, "Is it?")]), str)


def test_decompose_and_references_on_tiny_local_models(models, tmp_path):
    text_path, vl_path = models
    good_video(tmp_path / "v.mp4")
    rows = [{"id": f"c{i}", "video": str(tmp_path / "v.mp4"), "caption": f"A red ball number {i}."} for i in range(2)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = annotate_config(tmp_path, "", src, llm=_local(text_path), vlm=_local(vl_path, vision=True), n_frames=2)
    summary = pipeline.run_one_stage(cfg, "decompose")
    assert summary["written"] == 0 and summary["rejected_by_category"] == {"unparseable_decomposition": 2}
    assert summary["counters"]["parse_retries"] == 2  # one retry with the parse error fed back, per caption
    out = Path(cfg.output_dir)
    assert {r["id"] for r in read_jsonl(stage_paths(out / "decomposed.jsonl")[0])} == {"c0", "c1"}

    # References on a hand-made questions file (the garbage decomposer produced none).
    queries = [q.to_dict() for q in build_queries({"Environment": "A table."}, rows[0]["caption"], n_frames=2)]
    questions = write_jsonl(out / "questions.jsonl", [{**rows[0], "queries": queries, "n_frames": 2}])
    summary = pipeline.run_one_stage(cfg, "references", input_path=questions)
    assert summary["rejected_by_category"] == {"unparseable_answer": 1}
    # the first of the 3 queries x 2 attempts: an unparseable answer drops the record, so the rest are not asked
    assert summary["counters"]["vlm_requests"] == 1 * 2
    reject = read_jsonl(stage_paths(out / "records.jsonl")[0])
    assert [r["id"] for r in reject] == ["c0"] and "no parsable answer" in reject[0]["reason"]
    assert json.loads(stage_paths(out / "records.jsonl")[1].read_text())["written"] == 0
