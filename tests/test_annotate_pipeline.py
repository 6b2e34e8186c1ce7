"""The annotation pipeline against a loopback OpenAI-compatible server (real sockets, the real openai client)."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.annotate_fixtures import (
    annotate_config,
    good_video,
    truncated_video,
    write_jsonl,
    zero_frame_video,
)
from tests.loopback_openai import LoopbackOpenAI
from vidreward.annotate import pipeline
from vidreward.annotate.jsonl import in_shard, read_jsonl
from vidreward.annotate.stage import stage_paths
from vidreward.critics.queries import FAVOURABLE
from vidreward.llm import ChatBackendConfig
from vidreward.llm_cache import CachedChatBackend
from vidreward.llm_openai import OpenAIChatBackend

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for prefix in ("VIDREWARD_LLM", "VIDREWARD_VLM"):
        for name in ("MODEL", "BASE_URL", "API_KEY"):
            monkeypatch.delenv(f"{prefix}_{name}", raising=False)


def _inputs(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """CSV of 13 captioned videos; returns (csv, {id: expected fate})."""
    vids = tmp_path / "videos"
    vids.mkdir()
    for i in range(4):
        good_video(vids / f"good{i}.mp4", seed=i)
    truncated_video(vids / "truncated.mp4")
    zero_frame_video(vids / "zero.mp4")
    rows = [  # (video, caption, expected category or "kept")
        ("good0.mp4", "A red ball rolls on a table.", "kept"),
        ("good1.mp4", "A dog runs, on a beach. \"Quoted\"", "kept"),
        ("good2.mp4", "A car [[429once]] drives at night.", "kept"),
        ("good3.mp4", "A cat [[bad_json]] sleeps.", "unparseable_decomposition"),
        ("good0.mp4?500", "A bird [[500]] flies.", "llm_error"),
        ("good0.mp4?stall", "A fish [[stall]] swims.", "llm_error"),
        ("good0.mp4?body", "A tree [[bad_body]] sways.", "llm_error"),
        ("good1.mp4?unfav", "A boat [[unfavourable]] floats.", "unfavourable"),
        ("missing.mp4", "A plane lands.", "video_missing"),
        ("truncated.mp4", "A horse jumps.", "video_unreadable"),
        ("zero.mp4", "A kite flies.", "video_unreadable"),
        ("good2.mp4?empty", "   ", "input"),
    ]
    lines = ["id,video,caption,aesthetic"]
    fates = {}
    for video, caption, fate in rows:
        item_id = video
        real = video.split("?")[0]
        lines.append(f'{item_id},{real},"{caption.replace(chr(34), chr(34) * 2)}",5.0')
        fates[item_id] = fate
    lines.append('good0.mp4,good0.mp4,"A duplicate row of good0.",1.0')  # repeated id: first row wins
    csv_path = tmp_path / "videos.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    return csv_path, fates


def test_run_good_and_failing_items_all_accounted_for(tmp_path):
    csv_path, fates = _inputs(tmp_path)
    with LoopbackOpenAI(stall_s=1.0) as server:
        cfg = annotate_config(tmp_path, server.base_url, csv_path, video_dir=str(tmp_path / "videos"))
        summary = pipeline.run_all(cfg)
        statuses = Counter(server.status_counts)
        requests = list(server.requests)
    out = Path(cfg.output_dir)
    records = read_jsonl(out / "records.jsonl")
    rejects = [r for name in ("decomposed", "questions", "records")
               for r in read_jsonl(stage_paths(out / f"{name}.jsonl")[0])]
    kept_ids = [r["id"] for r in records]
    assert sorted(kept_ids) == sorted(i for i, f in fates.items() if f == "kept")
    assert {r["id"]: r["category"] for r in rejects} == {i: f for i, f in fates.items() if f != "kept"}
    assert len(rejects) == len({r["id"] for r in rejects}) and not set(kept_ids) & {r["id"] for r in rejects}
    assert all(r["reason"] for r in rejects)
    reasons = {r["id"]: r["reason"] for r in rejects}
    assert "HTTP 500" in reasons["good0.mp4?500"] and "Timeout" in reasons["good0.mp4?stall"]
    assert "does not exist" in reasons["missing.mp4"] and "truncated.mp4" in reasons["truncated.mp4"]
    assert "zero.mp4" in reasons["zero.mp4"] and reasons["good2.mp4?empty"] == "empty caption"
    assert "ta:Environment: answer=No" in reasons["good1.mp4?unfav"]
    assert statuses[429] >= 1 and statuses[500] == 2  # 500 retried once (max_retries=1), then rejected
    assert summary["records_total"] == 3 and summary["rejected"] == 9

    rec = {r["id"]: r for r in records}["good0.mp4"]
    assert rec["caption"] == "A red ball rolls on a table." and rec["video"].endswith("good0.mp4")
    assert rec["decomposition"]["Object(s)"] == "1). A red ball."
    assert [(q["dimension"], q["key"]) for q in rec["queries"]] == [
        ("ta", "Environment"), ("ta", "Object(s)"), ("phy", "phy"), ("vq", "vq")]
    for q in rec["queries"]:
        answer = json.loads(q["reference_answer"])
        assert answer == q["reference"]
        decision = {"ta": "answer", "phy": "abnormal motion", "vq": "has obvious defect"}[q["dimension"]]
        assert answer[decision] == FAVOURABLE[q["dimension"]]
    ta = json.loads(rec["queries"][0]["reference_answer"])
    assert len(ta["explanation"].split()) == 50  # the server's 150-word explanation, capped (Sec. 6.4)
    # TA sees the N_f = 4 real frames; Phy/VQ see them twice (real video in both roles).
    vision = Counter(r["images"] for r in requests if r["model"] == "test-model" and r["images"])
    assert set(vision) == {4, 8}
    ref_summary = json.loads(stage_paths(out / "records.jsonl")[1].read_text())
    assert ref_summary["counters"]["kept"] == 3 and ref_summary["counters"]["dropped_unfavourable"] == 1
    # 3 kept records x 2 TA answers, + the dropped one's first TA answer (its first query, unfavourable, ends it)
    assert ref_summary["counters"]["explanations_cut_to_50_words"] == 3 * 2 + 1
    assert ref_summary["counters"]["queries_not_asked_after_unfavourable"] == 3

    # Rerun: everything is already done, nothing is duplicated, and no request is sent.
    with LoopbackOpenAI() as server:
        cfg = annotate_config(tmp_path, server.base_url, csv_path, video_dir=str(tmp_path / "videos"))
        again = pipeline.run_all(cfg)
        assert server.requests == []
    assert again["stages"]["decompose"]["processed"] == 0 and len(read_jsonl(out / "records.jsonl")) == 3


def test_shards_split_ids_deterministically(tmp_path):
    rows = [{"id": f"v{i}", "video": "x.mp4", "caption": f"Caption {i}."} for i in range(20)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    with LoopbackOpenAI() as server:
        cfg = annotate_config(tmp_path, server.base_url, src, check_videos=False)
        for index in range(3):
            pipeline.run_one_stage(cfg, "decompose", shard=(index, 3))
    shards = [{r["id"] for r in read_jsonl(Path(cfg.output_dir) / f"decomposed.shard{i}of3.jsonl")} for i in range(3)]
    assert set().union(*shards) == {r["id"] for r in rows} and sum(map(len, shards)) == 20
    assert all(shards)  # 20 ids over 3 shards: none empty
    assert shards[1] == {r["id"] for r in rows if in_shard(r["id"], 1, 3)}


def test_response_cache_makes_reruns_free(tmp_path):
    with LoopbackOpenAI() as server:
        cfg = ChatBackendConfig(model="m", base_url=server.base_url, cache_dir="", max_retries=0)
        backend = CachedChatBackend(OpenAIChatBackend(cfg), tmp_path / "cache")
        msgs = [{"role": "user", "content": "Hello?"}]
        first = backend.chat(msgs)
        assert backend.chat(msgs) == first and backend.chat(msgs, temperature=0.5) == first
        assert len(server.requests) == 2  # the third call differs in params: a new key
        fresh = CachedChatBackend(OpenAIChatBackend(cfg), tmp_path / "cache")
        assert fresh.chat(msgs) == first and len(server.requests) == 2 and fresh.hits == 1


def test_kill_and_resume_loses_and_duplicates_nothing(tmp_path):
    good_video(tmp_path / "v.mp4")
    rows = [{"id": f"item{i:02d}", "video": str(tmp_path / "v.mp4"),
             "caption": f"Scene {i}." + (" [[500]]" if i % 10 == 3 else "")} for i in range(30)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    with LoopbackOpenAI(latency=0.05) as server:
        cfg_path = tmp_path / "annotate.yaml"
        cfg_path.write_text(
            "job: annotate\n"
            f"input: {src}\noutput_dir: {tmp_path / 'out'}\nn_frames: 2\nframe_max_side: 32\nmax_in_flight: 2\n"
            f"llm: {{model: m, base_url: '{server.base_url}', concurrency: 2, max_retries: 0, cache_dir: ''}}\n"
            f"vlm: {{model: m, base_url: '{server.base_url}', concurrency: 2, max_retries: 0, cache_dir: '', vision: true}}\n"
        )
        driver = ("import argparse, sys\nfrom vidreward.annotate import commands\nfrom vidreward.log import setup_logging\n"
                  "setup_logging('WARNING')\np = argparse.ArgumentParser()\n"
                  "commands.register(p.add_subparsers(dest='annotate_command'))\n"
                  "a = p.parse_args(sys.argv[1:])\nsys.exit(a.func(a))\n")
        cmd = [sys.executable, "-c", driver, "run", "--config", str(cfg_path)]
        env = {**os.environ, "PYTHONPATH": str(REPO), "VIDREWARD_NO_PROGRESS": "1"}
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE)
        decomposed = tmp_path / "out" / "decomposed.jsonl"
        deadline = time.time() + 60
        while time.time() < deadline and (not decomposed.exists() or len(decomposed.read_text().splitlines()) < 6):
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        partial = len(read_jsonl(decomposed))
        assert 6 <= partial < 27  # really killed midway
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "out"
    for name in ("decomposed", "questions", "records"):
        ids = [r["id"] for r in read_jsonl(out / f"{name}.jsonl")]
        assert len(ids) == len(set(ids)), f"duplicates in {name}.jsonl"
    reject_ids = [r["id"] for r in read_jsonl(out / "decomposed.rejects.jsonl")]
    assert sorted(reject_ids) == [f"item{i:02d}" for i in (3, 13, 23)]
    assert {r["id"] for r in read_jsonl(out / "records.jsonl")} == {r["id"] for r in rows} - set(reject_ids)
