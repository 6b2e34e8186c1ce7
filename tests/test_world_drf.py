"""The world DRF main job (configs/world/drf.yaml) on the SHIPPED generator and critic, and its presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vidreward.cli import main
from vidreward.config import load_config
from vidreward.world.build_generator import ASSET_DIR as GENERATOR_DIR
from vidreward.world.critic_build_config import ASSET_DIR as CRITIC_DIR
from vidreward.world.drf_data import label_reference, select_records

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "world"
DECOMPOSITION = {"Object(s)": "A small triangle.", "Environment": "A plain black background."}


def _query(dimension: str, key: str) -> dict:
    return {"dimension": dimension, "key": key, "question": "q?", "needs_reference": dimension != "ta",
            "reference_answer": None}


def test_construction_labels_are_the_favourable_answers_of_a_clean_render():
    ta = label_reference(_query("ta", "Object(s)"), DECOMPOSITION)
    assert ta["reference_answer"] == '{"answer": "Yes", "explanation": "The video shows this: A small triangle"}'
    phy = label_reference(_query("phy", "phy"), DECOMPOSITION)["reference"]
    assert [phy[k] for k in ("liquid flow irregularity", "abnormal deformation", "abnormal texture change",
                             "abnormal motion", "unnatural interpenetration")] == ["No"] * 5
    vq = label_reference(_query("vq", "vq"), DECOMPOSITION)["reference"]
    assert vq["has obvious defect"] == "No" and vq["dominant issue"] == "none"


def test_too_few_critic_records_fall_back_or_fail_by_config(tmp_path):
    questions = [{"id": f"train-{i}", "caption": "c", "video": str(tmp_path / f"videos/{i}.mp4"),
                  "decomposition": DECOMPOSITION, "queries": [_query("ta", "Object(s)"), _query("vq", "vq")]}
                 for i in range(3)]
    kept = [{**questions[1], "video": "videos/1.mp4"}]
    records, counts = select_records(kept, questions, tmp_path, min_records=1, fallback="labels")
    assert counts == {"prompts": 3, "critic_kept": 1, "label_filled": 0}
    assert [r["reference_source"] for r in records] == ["critic"]
    records, counts = select_records(kept, questions, tmp_path, min_records=2, fallback="labels")
    assert counts == {"prompts": 3, "critic_kept": 1, "label_filled": 2}
    assert [(r["id"], r["reference_source"]) for r in records] == [
        ("train-0", "world_labels"), ("train-1", "critic"), ("train-2", "world_labels")]
    assert records[0]["video"] == "videos/0.mp4"
    assert all(q["reference_answer"] for q in records[0]["queries"])
    with pytest.raises(ValueError, match="kept 1 of 3 world train prompts.*world_min_records=2"):
        select_records(kept, questions, tmp_path, min_records=2, fallback="error")


def test_presets_differ_from_the_main_job_only_where_they_say():
    _, main_cfg = load_config(CONFIGS / "drf.yaml")
    assert (main_cfg.data.source, main_cfg.reward.kind, main_cfg.sampling.grad_steps) == ("world", "rich", 4)
    assert main_cfg.reward.use_reference and main_cfg.report.enabled and main_cfg.report.oracle
    expected = {"drf_k1": ("sampling.grad_steps", 1), "drf_k2": ("sampling.grad_steps", 2),
                "drf_k3": ("sampling.grad_steps", 3), "drf_nf2": ("reward.num_frames", 2),
                "drf_nf4": ("reward.num_frames", 4), "drf_nf6": ("reward.num_frames", 6),
                "drf_nf8": ("reward.num_frames", 8), "drf_ta_only": ("reward.dimensions", ["ta"]),
                "vanilla_drf": ("reward.kind", "vanilla")}
    for name, (dotted, value) in expected.items():
        _, cfg = load_config(CONFIGS / f"{name}.yaml")
        section, field = dotted.split(".")
        assert getattr(getattr(cfg, section), field) == value, name
        assert cfg.output_dir == f"runs/world_{name}"
        assert (cfg.train.max_steps, cfg.report.num_prompts, cfg.data.world_train_prompts) == (
            main_cfg.train.max_steps, main_cfg.report.num_prompts, main_cfg.data.world_train_prompts)


@pytest.fixture
def keep_torch_threads():
    """The preset's ``threads`` sets torch's global thread count: restore it for the other tests."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_three_step_world_drf_run_on_the_shipped_models(tmp_path, keep_torch_threads):
    out = tmp_path / "run"
    code = main(["train", "drf", "--config", str(CONFIGS / "drf.yaml"), f"output_dir={out}",
                 f"generator.path={GENERATOR_DIR}", f"critic.path={CRITIC_DIR}",
                 "data.world_train_prompts=2", "data.world_min_records=2", "report.num_prompts=1",
                 "report.seeds=[0]", "report.heatmap_prompts=1", "sampling.num_steps=3", "sampling.grad_steps=2",
                 "reward.num_frames=3", "train.max_steps=3", "train.checkpoint_every=0", "optim.warmup_steps=0"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    for key in ("oracle_before", "oracle_after", "critic_before", "critic_after"):
        assert 0.0 <= report[key]["overall"] <= 1.0, key
    assert set(report["oracle_before"]) >= {"ta", "phy", "vq", "overall", "facets"}
    assert set(report["critic_before"]) >= {"ta", "phy", "vq", "overall"}
    assert report["oracle_before"]["count"] == 1
    # the world records: 2 train prompts, whatever the critic's quality, each from the critic or labelled
    world = report["train"]["world_data"]
    assert world["records"] == 2 and world["critic_kept"] + world["label_filled"] == 2
    train_records = [json.loads(line) for line in (out / "world_records" / "train_records.jsonl").open()]
    assert len(train_records) == 2 and all(q["reference_answer"] for r in train_records for q in r["queries"])
    md = (out / "report.md").read_text()
    assert md.startswith("# DRF run report") and "oracle overall" in md and "critic overall" in md
    for rel in (report["assets"]["curves"], report["assets"]["gif_before"], report["assets"]["gif_after"],
                *report["assets"]["heatmaps"]):
        assert (out / rel).is_file(), rel
    assert len(report["assets"]["heatmaps"]) == 2  # before + after for one prompt
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").open()]
    assert steps == [1, 2, 3]
    assert (out / "final").is_dir()
