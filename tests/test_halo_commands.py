"""The HALO CLI stages end to end on tiny models: prompts (fake chat), label-patches (fake vision teacher and the
loopback OpenAI server), sample (tiny Wan, read back by the Gran-DPO trainer), score (tiny reward models), pairs
(median rules checked independently) and analyze (hand-made table)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.annotate_fixtures import truncated_video, write_jsonl
from tests.loopback_openai import LoopbackOpenAI
from vidreward.annotate.jsonl import read_jsonl
from vidreward.cli import main
from vidreward.config import from_dict
from vidreward.halo.candidate_latents import candidate_latent_path, load_candidate_latents
from vidreward.halo.job_configs import (
    HaloLabelPatchesConfig,
    HaloPromptsConfig,
    HaloSampleConfig,
    HaloScoreConfig,
)
from vidreward.halo.label_patches import run_label_patches
from vidreward.halo.prompts_stage import prompt_id, run_prompts
from vidreward.halo.sample import candidate_seed, run_sample
from vidreward.halo.score import run_score
from vidreward.halo.teacher import DIMENSIONS
from vidreward.train.reward_model_data import read_items
from vidreward.video_io import read_video_frames, write_video


class FakeChat:
    """An async chat backend whose reply is ``answer(messages)``; records every request."""

    model_name = "fake"

    def __init__(self, answer) -> None:
        self.answer, self.calls = answer, []

    async def achat(self, messages, **params) -> str:
        self.calls.append(messages)
        return self.answer(messages)

    def chat(self, messages, **params) -> str:  # pragma: no cover - the stages use achat
        raise AssertionError("stages must use achat")


# ---- prompts -----------------------------------------------------------------------------------------------
REPLIES = {
    "multiple objects": ["a green frog and a yellow duck sitting on a log",
                         "a cat and a dog playing in a park",  # near-copy of an evaluation prompt
                         "two horses galloping across a wide open field"],
    "scene": ["a snowy mountain village under a starry night sky", "a busy city street market at noon"],
}


def _prompt_reply(messages) -> str:
    payload = json.loads(messages[1]["content"])
    dimension = payload["dimension"].split(":")[0]
    if dimension == "broken" or (dimension == "scene" and len(messages) == 2):
        return "[]"  # no candidate: unparsable (scene recovers after the error is fed back)
    return "```json\n" + json.dumps([{"prompt": p} for p in REPLIES[dimension]]) + "\n```"


def test_prompts_generate_filter_count_and_resume(tmp_path):
    demos = write_jsonl(tmp_path / "demos.jsonl", [
        {"dimension": "multiple objects", "examples": ["a cat and a dog", "a red car and a blue bike", "two birds"]},
        {"dimension": "scene", "examples": ["a beach at sunset"], "description": "the place shown"},
        {"dimension": "broken", "examples": ["x"]},
    ])
    (tmp_path / "eval.txt").write_text("a cat and a dog playing in the park\n\nan astronaut riding a horse\n")
    cfg = from_dict(HaloPromptsConfig, {"demonstrations": str(demos), "evaluation_prompts": str(tmp_path / "eval.txt"),
                                        "output_dir": str(tmp_path / "out"), "rounds_per_dimension": 2,
                                        "num_demonstrations": 2, "attempts": 2, "max_in_flight": 4})
    chat = FakeChat(_prompt_reply)
    summary = run_prompts(cfg, backend=chat)

    # every request: Fig. 8 system message + JSON input with the dimension and 2 sampled demonstrations
    first = chat.calls[0]
    assert first[0]["role"] == "system" and first[0]["content"].startswith("## Background\n\nYou are an expert")
    assert all(len(json.loads(c[1]["content"])["examples"]) in (1, 2) for c in chat.calls)
    assert any(json.loads(c[1]["content"])["dimension"] == "scene: the place shown" for c in chat.calls)
    # 2 x multiple objects (1 request each), 2 x scene (2 each: retry), 2 x broken (2 each, then rejected)
    assert len(chat.calls) == 2 + 4 + 4
    gen = summary["generation"]
    assert (gen["written"], gen["rejected"], gen["rejected_by_category"]) == (4, 2, {"unparseable_reply": 2})
    # 10 candidates: round 0 keeps frog, horses, village, market; the park one hits the evaluation set twice;
    # round 1 repeats round 0, so its 4 kept-before prompts are dropped as near-duplicates of kept ones
    assert (summary["candidates"], summary["kept"], summary["dropped"]) == (10, 4, 6)
    assert summary["dropped_by_reason"] == {"evaluation": 2, "generated": 4}
    assert summary["kept_by_dimension"] == {"multiple objects": 2, "scene": 2, "broken": 0}
    kept = read_jsonl(tmp_path / "out" / "prompts.jsonl")
    assert [k["prompt"] for k in kept] == [REPLIES["multiple objects"][0], REPLIES["multiple objects"][2],
                                           *REPLIES["scene"]]
    assert all(k["id"] == prompt_id(k["prompt"]) for k in kept)
    dropped = read_jsonl(tmp_path / "out" / "dropped.jsonl")
    park = [d for d in dropped if d["reason"] == "evaluation"]
    assert park[0]["nearest"] == "a cat and a dog playing in the park" and park[0]["max_similarity"] >= 0.85
    rejects = read_jsonl(tmp_path / "out" / "generations.rejects.jsonl")
    assert {r["id"] for r in rejects} == {"broken#0", "broken#1"} and "no candidate" in rejects[0]["reason"]

    # resume: nothing is asked again, the filter gives the same file
    before = (tmp_path / "out" / "prompts.jsonl").read_text()
    again = run_prompts(cfg, backend=chat)
    assert len(chat.calls) == 10 and again["generation"]["already_done"] == 6
    assert (tmp_path / "out" / "prompts.jsonl").read_text() == before


# ---- label-patches -----------------------------------------------------------------------------------------
def _teacher_reply(messages) -> str:
    text = messages[0]["content"][0]["text"]
    coord = text.split("Coordinate of the patch: (")[1].split(")")[0]
    row, col = (int(v) for v in coord.split(", "))
    if "[[broken]]" in text and (row, col) == (1, 1):
        return "The patch looks fine to me."
    return json.dumps({"visual quality": 3 * row + col, "temporal consistency": 10, "dynamic degree": 0,
                       "text-to-video alignment": "5", "factual consistency": 7.5})


def _videos(tmp_path: Path) -> Path:
    g = torch.Generator().manual_seed(0)
    for name in ("a", "b"):
        write_video(torch.rand(6, 3, 40, 50, generator=g), tmp_path / "videos" / f"{name}.mp4", fps=8)
    truncated_video(tmp_path / "videos" / "bad.mp4")
    return write_jsonl(tmp_path / "videos.jsonl", [
        {"id": "a", "video": "videos/a.mp4", "prompt": "a red ball"},
        {"id": "b", "video": "videos/b.mp4", "prompt": "a blue box [[broken]]"},
        {"id": "bad", "video": "videos/bad.mp4", "prompt": "whatever"},
    ])


def test_label_patches_grid_messages_normalisation_rejects_and_resume(tmp_path):
    inputs = _videos(tmp_path)
    cfg = from_dict(HaloLabelPatchesConfig, {"input": str(inputs), "output": str(tmp_path / "labels" / "l.jsonl"),
                                             "n_frames": 3, "attempts": 2, "max_in_flight": 4})
    chat = FakeChat(_teacher_reply)
    summary = run_label_patches(cfg, backend=chat)
    # 27 patches: 9 of a, 8 of b (+1 unparsable after 2 replies), 9 of an unreadable video
    assert (summary["items"], summary["written"], summary["rejected"]) == (27, 17, 10)
    assert summary["rejected_by_category"] == {"unparseable_scores": 1, "video_unreadable": 9}
    rejects = {r["id"]: r for r in read_jsonl(tmp_path / "labels" / "l.rejects.jsonl")}
    assert "visual quality" in rejects["b#r1c1"]["reason"]

    # message: Fig. 9 text with prompt and coordinate, 3 whole frames 40x50, then 3 patch frames;
    # 40 x 50 split 3 x 3 leaves the remainder to the last row/column: heights 13, 13, 14; widths 16, 16, 18
    sizes = {}
    for messages in chat.calls:
        parts = messages[0]["content"]
        text = parts[0]["text"]
        coord = text.split("Coordinate of the patch: (")[1].split(")")[0]
        images = [p["image"] for p in parts[1:]]
        assert len(images) == 6 and all(tuple(im.shape[1:]) == (40, 50) for im in images[:3])
        sizes[coord] = tuple(images[3].shape[1:])
        assert 'Text prompt: "a red ball"' in text or 'Text prompt: "a blue box [[broken]]"' in text
    assert sizes["0, 0"] == (13, 16) and sizes["2, 2"] == (14, 18) and sizes["1, 2"] == (13, 18)
    retry = [m for m in chat.calls if len(m) == 3]
    assert len(retry) == 1 and "could not be parsed" in retry[0][2]["content"]

    records = {r["id"]: r for r in read_jsonl(tmp_path / "labels" / "l.jsonl")}
    r = records["a#r2c1"]
    assert r["patch"] == [2, 1] and r["teacher_scores"]["visual quality"] == 7.0
    # 1 + 3 s / 10: 7 -> 3.1, 10 -> 4, 0 -> 1, 5 -> 2.5, 7.5 -> 3.25
    assert r["labels"] == pytest.approx({"visual quality": 3.1, "temporal consistency": 4.0, "dynamic degree": 1.0,
                                         "text-to-video alignment": 2.5, "factual consistency": 3.25})
    # the output is the patch reward-model trainer's input format (paths relative to the labels file)
    items = read_items(tmp_path / "labels" / "l.jsonl", "patch", (3, 3))
    assert len(items) == 17 and items[0].source.resolve() == (tmp_path / "videos" / "a.mp4").resolve()

    # resume: nothing asked again; retry_rejects asks only for the rejected patches (the bad video stays bad)
    run_label_patches(cfg, backend=chat)
    assert len(chat.calls) == 17 + 2  # 17 answered at once, the broken patch twice
    cfg.retry_rejects = True
    fixed_teacher = FakeChat(lambda m: json.dumps(dict.fromkeys(DIMENSIONS, 5)))
    fixed = run_label_patches(cfg, backend=fixed_teacher)
    assert len(fixed_teacher.calls) == 1
    assert fixed["written"] == 1 and fixed["rejected"] == 9
    assert len(read_jsonl(tmp_path / "labels" / "l.jsonl")) == 18


def test_label_patches_cli_over_http_sends_all_images_and_rejects_unparsable(tmp_path):
    inputs = write_jsonl(tmp_path / "v.jsonl", [{"id": "a", "video": "a.mp4", "prompt": "a red ball"}])
    write_video(torch.rand(4, 3, 36, 36, generator=torch.Generator().manual_seed(1)), tmp_path / "a.mp4")
    with LoopbackOpenAI() as server:  # answers "Yes." to an unknown prompt: not five scores
        code = main(["halo", "label-patches", "--config", str(Path(__file__).parents[1] / "configs/halo/label_patches.yaml"),
                     f"input={inputs}", f"output={tmp_path / 'l.jsonl'}", "n_frames=2", "attempts=1",
                     f"vlm.base_url={server.base_url}", "vlm.model=teacher", "vlm.cache_dir=", "vlm.max_retries=0"])
        requests = list(server.requests)
    assert code == 0
    assert len(requests) == 9 and all(r["images"] == 4 and r["model"] == "teacher" for r in requests)
    rejects = read_jsonl(tmp_path / "l.rejects.jsonl")
    assert len(rejects) == 9 and {r["category"] for r in rejects} == {"unparseable_scores"}
    assert json.loads((tmp_path / "l.summary.json").read_text())["written"] == 0


# ---- sample -> score -> pairs -> trainer ---------------------------------------------------------------------
PIXELS = 56 * 56


@pytest.fixture(scope="module")
def halo_data(tmp_path_factory):
    """Tiny Wan candidates (2 prompts x 3) scored by tiny video/patch reward models."""
    from vidreward.critics.tiny import build_tiny_qwen2_5_vl
    from vidreward.generators.tiny import build_tiny_wan
    from vidreward.rewards.reward_model import RewardModel

    root = tmp_path_factory.mktemp("halo")
    wan = build_tiny_wan(root / "wan")
    qwen = build_tiny_qwen2_5_vl(root / "qwen")
    for kind in ("video", "patch"):
        torch.manual_seed({"video": 1, "patch": 2}[kind])
        RewardModel.from_backbone(qwen, kind=kind, min_pixels=PIXELS, max_pixels=PIXELS).save_pretrained(
            root / f"rm_{kind}")
    write_jsonl(root / "prompts.jsonl", [{"id": "p0", "prompt": "a red ball moves left"},
                                         {"id": "p1", "prompt": "a blue square falls down"}])
    sample_cfg = from_dict(HaloSampleConfig, {
        "prompts": str(root / "prompts.jsonl"), "output_dir": str(root / "data"), "num_candidates": 3, "seed": 7, "batch_size": 2,
        "generator": {"family": "wan", "path": str(wan), "max_sequence_length": 16},
        "sampling": {"height": 32, "width": 32, "num_frames": 5, "num_steps": 2, "guidance_scale": 1.0}})
    sample_summary = run_sample(sample_cfg)
    score_cfg = from_dict(HaloScoreConfig, {
        "candidates": str(root / "data" / "candidates.jsonl"), "output": str(root / "data" / "scores.jsonl"),
        "video_model": str(root / "rm_video"), "patch_model": str(root / "rm_patch"), "num_frames": 2})
    score_summary = run_score(score_cfg)
    return {"root": root, "wan": wan, "sample_cfg": sample_cfg, "sample": sample_summary, "score": score_summary}


def test_sample_writes_latents_seeds_and_videos_reproducibly(halo_data):
    root, cfg = halo_data["root"], halo_data["sample_cfg"]
    assert halo_data["sample"]["written"] == 6 and halo_data["sample"]["rejected"] == 0
    records = read_jsonl(root / "data" / "candidates.jsonl")
    assert [r["id"] for r in records] == [f"p{p}/c{k}" for p in range(2) for k in range(3)]
    for r in records:
        assert r["seed"] == candidate_seed(7, r["prompt_id"], int(r["candidate_id"][1:]))
        latents, meta = load_candidate_latents(root / "data" / r["latents"])
        assert latents.shape == (16, 2, 4, 4)  # [C, T', H', W'] of 5 frames at 32 x 32
        assert meta["seed"] == str(r["seed"]) and meta["prompt"] == r["prompt"]
        assert read_video_frames(root / "data" / r["video"]).shape == (5, 3, 32, 32)
    assert len({r["seed"] for r in records}) == 6
    # candidates p1/c0 (sampled in a batch of 2) and p1/c2 (alone) again, alone, from their seeds: the same
    # latents (the seed alone reproduces a video; batching changes at most the last float bits)
    from vidreward.generators.registry import load_generator
    from vidreward.halo.sample import CandidateSampler

    sampler = CandidateSampler(load_generator(cfg.generator), cfg)
    for k in (0, 2):
        again, _ = sampler.sample("a blue square falls down", [records[3 + k]["seed"]])
        stored, _ = load_candidate_latents(candidate_latent_path(root / "data" / "latents", "p1", f"c{k}"))
        torch.testing.assert_close(again[0], stored, rtol=1e-4, atol=1e-5)
    # resume: all done, nothing sampled
    assert run_sample(cfg)["already_done"] == 6


def test_score_writes_video_and_patch_rewards_equal_to_the_models(halo_data):
    from vidreward.rewards.reward_model import RewardModel

    root = halo_data["root"]
    assert halo_data["score"]["written"] == 6
    rows = read_jsonl(root / "data" / "scores.jsonl")
    video_rm = RewardModel.from_pretrained(root / "rm_video")
    patch_rm = RewardModel.from_pretrained(root / "rm_patch")
    row = rows[4]
    frames = read_video_frames(root / "data" / "videos" / "p1" / "c1.mp4", 2).float() / 255
    with torch.no_grad():
        video = video_rm.score(frames, row["prompt"])  # [5]
        patches = patch_rm.score_patches(frames, row["prompt"])  # [3, 3, 5]
    assert list(row["video_scores"]) == list(DIMENSIONS)
    assert row["video_reward"] == pytest.approx(float(video.mean()), abs=1e-5)
    np.testing.assert_allclose(row["patch_scores"], patches.numpy(), atol=1e-5)
    np.testing.assert_allclose(row["patch_rewards"], patches.mean(-1).numpy(), atol=1e-5)


def test_pairs_cli_follows_the_median_rules_and_trainer_reads_the_latents(halo_data, tmp_path):
    root = halo_data["root"]
    pairs_path = root / "data" / "pairs.jsonl"
    rows = {(r["prompt_id"], r["candidate_id"]): r for r in read_jsonl(root / "data" / "scores.jsonl")}
    # independent recomputation of the rules over the 2 x C(3, 2) = 6 candidate pairs
    cand_pairs = [((p, f"c{a}"), (p, f"c{b}")) for p in ("p0", "p1") for a, b in ((0, 1), (0, 2), (1, 2))]
    v_margin = {cp: abs(rows[cp[0]]["video_reward"] - rows[cp[1]]["video_reward"]) for cp in cand_pairs}
    p_margin = {cp: np.abs(np.subtract(rows[cp[0]]["patch_rewards"], rows[cp[1]]["patch_rewards"]))
                for cp in cand_pairs}
    m_v = statistics.median(v_margin.values())
    patch_medians = {"per_pair_max": statistics.median(m.max() for m in p_margin.values()),
                     "all_patches": statistics.median(np.concatenate([m.ravel() for m in p_margin.values()]))}
    for rule in ("all_patches", "per_pair_max"):  # the default last: the trainer below reads its pairs
        option = [] if rule == "per_pair_max" else ["--patch-median", rule]
        assert main(["halo", "pairs", "--scores", str(root / "data" / "scores.jsonl"), "--output", str(pairs_path),
                     *option]) == 0
        m_p = patch_medians[rule]
        expect = {frozenset((a[1], b[1], a[0])) for (a, b) in cand_pairs
                  if v_margin[(a, b)] > m_v or (p_margin[(a, b)] > m_p).any()}
        pairs = read_jsonl(pairs_path)
        assert {frozenset((p["winner_id"], p["loser_id"], p["prompt_id"])) for p in pairs} == expect
        summary = json.loads((root / "data" / "pairs.summary.json").read_text())
        assert summary["median_video_margin"] == pytest.approx(m_v) and summary["kept"] == len(expect)
        assert summary["patch_median"] == rule and summary["median_patch_margin"] == pytest.approx(m_p)
        for p in pairs:
            w, lo = rows[(p["prompt_id"], p["winner_id"])], rows[(p["prompt_id"], p["loser_id"])]
            assert w["video_reward"] >= lo["video_reward"]
            margins = np.subtract(w["patch_rewards"], lo["patch_rewards"])
            np.testing.assert_allclose(p["patch_margins"], margins, atol=1e-9)
            np.testing.assert_array_equal(p["patch_signs"], np.sign(margins))
            np.testing.assert_allclose(p["patch_weights"], np.clip(np.abs(margins) / m_p, 0, 1), atol=1e-9)
            assert p["video_weight"] == pytest.approx(min(1.0, (w["video_reward"] - lo["video_reward"]) / m_v))

    # `vidreward train gran-dpo` reads these pairs and latents as written (latents_dir defaults to pairs/../latents)
    from vidreward.train.gran_dpo import train
    from vidreward.train.gran_dpo_config import GranDPOConfig

    cfg = from_dict(GranDPOConfig, {
        "output_dir": str(tmp_path / "run"), "data": {"pairs_path": str(pairs_path)},
        "generator": {"family": "wan", "path": str(halo_data["wan"]), "max_sequence_length": 16,
                      "lora": {"rank": 4, "alpha": 4.0, "init_seed": 0}},
        "train": {"max_steps": 1, "checkpoint_every": 0}, "logging": {"tensorboard": False}})
    result = train(cfg)
    assert result["step"] == 1 and np.isfinite(result["metrics"]["loss"])


# ---- analyze -----------------------------------------------------------------------------------------------
def _scores_row(pid: str, cid: str, video: float, patches: list[float]) -> dict:
    grid = [patches[0:3], patches[3:6], patches[6:9]]
    return {"id": f"{pid}/{cid}", "prompt_id": pid, "candidate_id": cid, "video_reward": video,
            "patch_rewards": grid}


def test_analyze_hand_made_table(tmp_path):
    # one prompt, 3 videos: video rewards 3 > 2 > 1; mean patch rewards 3, 1, 2
    before = write_jsonl(tmp_path / "before.jsonl", [
        _scores_row("p", "a", 3.0, [2, 4, 3, 3, 3, 3, 3, 3, 3]),  # variance 2/9
        _scores_row("p", "b", 2.0, [1] * 9),  # variance 0
        _scores_row("p", "c", 1.0, [1, 3, 2, 2, 2, 2, 2, 2, 2]),  # variance 2/9
    ])
    after = write_jsonl(tmp_path / "after.jsonl", [
        _scores_row("p", "a", 3.5, [3] * 9), _scores_row("p", "b", 3.5, [2] * 9), _scores_row("p", "c", 2.0, [4] * 9),
    ])
    # label sources keyed by (video id, row, col): the scores table, a monotone and a reversed patch labelling
    patches = {"p/a": [2, 4, 3, 3, 3, 3, 3, 3, 3], "p/c": [1, 3, 2, 2, 2, 2, 2, 2, 2]}

    def labels(sign: float) -> list[dict]:
        return [{"id": f"{vid}#{k}", "video_id": vid, "patch": [k // 3, k % 3],
                 "labels": dict.fromkeys(DIMENSIONS, 2.5 + sign * 0.1 * v)} for vid, vals in patches.items()
                for k, v in enumerate(vals)]

    write_jsonl(tmp_path / "teacher.jsonl", labels(1.0))
    write_jsonl(tmp_path / "reversed.jsonl", labels(-1.0))
    out = tmp_path / "analysis"
    assert main(["halo", "analyze", "--scores", str(before), "--scores-after", str(after), "--output-dir", str(out),
                 "--labels", f"rm={before}", "--labels", f"teacher={tmp_path / 'teacher.jsonl'}",
                 "--labels", f"rev={tmp_path / 'reversed.jsonl'}"]) == 0
    result = json.loads((out / "analysis.json").read_text())
    # (a, b): video and patch prefer a; (a, c): both a; (b, c): video prefers b, patch prefers c -> inverse
    pc = result["before"]["preference_consistency"]
    assert (pc["consistent"], pc["inverse"], pc["none"]) == (2, 1, 0)
    # after: a, b tie on video -> none; (a, c): video a, patch c -> inverse; (b, c) inverse
    pc = result["after"]["preference_consistency"]
    assert (pc["consistent"], pc["inverse"], pc["none"]) == (0, 2, 1)
    assert result["before"]["inner_video_variance"]["mean"] == pytest.approx((2 / 9 + 0 + 2 / 9) / 3)
    assert result["before"]["sorted_levels"]["L0"]["mean"] == pytest.approx((2 + 1 + 1) / 3)
    assert result["before"]["sorted_levels"]["L8"]["mean"] == pytest.approx((4 + 1 + 3) / 3)
    assert result["after"]["sorted_levels"]["L4"]["median"] == 3.0
    rho = {(r["a"], r["b"]): r for r in result["spearman"]}
    assert rho[("rm", "teacher")]["patches"] == 18 and rho[("rm", "teacher")]["reward"] == pytest.approx(1.0)
    assert rho[("rm", "rev")]["reward"] == pytest.approx(-1.0)
    assert rho[("teacher", "rev")]["dimensions"]["dynamic degree"] == pytest.approx(-1.0)
    for name in ("preference_consistency", "inner_video_variance", "sorted_levels"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_analyze_needs_inputs(tmp_path):
    assert main(["halo", "analyze", "--output-dir", str(tmp_path)]) == 1


def test_embedding_similarity_is_padding_invariant_and_used_by_the_filter(tmp_path):
    from transformers import BertConfig, BertModel

    from vidreward.generators.tiny import build_word_tokenizer
    from vidreward.halo.prompts_stage import filter_generations, load_embedder

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=200, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(tmp_path / "enc")
    build_word_tokenizer().save_pretrained(tmp_path / "enc")
    embed = load_embedder(str(tmp_path / "enc"))
    alone = embed(["a red ball"])  # [1, 16]
    batched = embed(["a red ball", "a small blue square slides across the sky at night"])  # padded batch
    assert alone.shape == (1, 16)
    np.testing.assert_allclose(batched[0], alone[0], atol=1e-5)  # padding does not change the mean pool
    cfg = from_dict(HaloPromptsConfig, {"output_dir": str(tmp_path / "out"), "tau": 0.999})
    dims = [{"dimension": "d", "examples": ["x"], "description": None}]
    generations = [{"dimension": "d", "round": 0, "candidates": ["a red ball", "A  red ball", "a green tree"]}]
    summary = filter_generations(cfg, dims, generations, ["a green tree"], embed=embed)
    assert summary["similarity"] == "embedding"
    assert summary["dropped_by_reason"] == {"evaluation": 1, "generated": 1}


# ---- HALO in the world (item 7), on a tiny random Wan: the glue, not the numbers -------------------------------
def test_world_loop_runs_every_stage_and_resumes(halo_data, tmp_path):
    import argparse

    from vidreward.config import load_config
    from vidreward.halo.world_loop import run_world_gran_dpo, world_loop_entry

    repo = Path(__file__).parents[1]
    # the trainer hook ignores ordinary Gran-DPO presets
    assert world_loop_entry(argparse.Namespace(config=str(repo / "configs/halo/gran_dpo.yaml"), overrides=[])) is None
    out = tmp_path / "run"
    overrides = [
        f"output_dir={out}", f"generator.path={halo_data['wan']}", "generator.max_sequence_length=16",
        "generator.lora.rank=4", "generator.lora.alpha=4.0", "threads=0",
        "prompts.num_prompts=2", "num_candidates=2",
        "sampling.height=32", "sampling.width=32", "sampling.num_frames=5", "sampling.num_steps=2",
        "sampling.guidance_scale=1.0", "reward_models.label_videos=4", "reward_models.video_epochs=1", "reward_models.patch_epochs=1",
        "reward_models.batch_size=4", "reward_models.micro_batch_size=4", "reward_models.num_frames=2",
        "reward_models.val_fraction=0.25", "train.max_steps=2", "train.batch_size=1", "train.checkpoint_every=0",
        "report.num_prompts=2"]
    preset = str(repo / "configs/world/gran_dpo.yaml")
    # what `vidreward train gran-dpo --config configs/world/gran_dpo.yaml ...` runs through the trainer's hook
    assert world_loop_entry(argparse.Namespace(config=preset, overrides=overrides)) == 0
    report = json.loads((out / "report.json").read_text())
    for key in ("oracle_before", "oracle_after", "critic_before", "critic_after"):
        assert np.isfinite(report[key]["overall"]), key
    assert 1.0 <= report["critic_before"]["video_reward"] <= 4.0 and report["oracle_before"]["count"] == 2
    assert report["prompts"]["kept"] == 2 and report["train"]["step"] == 2 and report["pairs"]["kept"] >= 1
    labels = read_jsonl(out / "reward_models" / "patch_labels.jsonl")
    assert len(labels) == 4 * 9 and all(1.0 <= v <= 4.0 for r in labels for v in r["labels"].values())
    assert len(read_jsonl(out / "data" / "scores.jsonl")) == 4
    assert (out / "final").exists() and (out / "analysis" / "sorted_levels.png").is_file()
    # a rerun builds nothing again: data, reward models, the finished trainer run and the before-eval are reused
    _, cfg = load_config(preset, overrides, job="world_gran_dpo")
    again = run_world_gran_dpo(cfg)
    assert set(again["timings_s"]) == {"sample", "reward_models", "score", "pairs", "gran_dpo", "eval_after"}
    assert again["oracle_before"] == report["oracle_before"] and again["train"]["step"] == 2
