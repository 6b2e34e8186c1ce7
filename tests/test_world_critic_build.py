"""`vidreward world build critic` end to end on a very small critic: every stage and curriculum phase runs, the best
critic is exported, and a re-run resumes from the finished checkpoint instead of training again."""

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from vidreward.critics.vlm import VLMCritic
from vidreward.train.checkpoint import load_checkpoint, resolve_resume
from vidreward.world.build_critic import run_build
from vidreward.world.critic_build_config import CriticBuildConfig
from vidreward.world.critic_curriculum import PHASES
from vidreward.world.critic_model import CriticArch

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("critic_build")
    arch = CriticArch(vision_depth=1, vision_hidden=32, vision_heads=2, text_layers=1, text_hidden=32, text_heads=2,
                      text_kv_heads=1)
    cfg = CriticBuildConfig(work_dir=str(root / "work"), out_dir=str(root / "out"), arch=arch, batch_size=4,
                            align_steps=2, align_batch_size=2, caption_steps=2, phase_min_steps=1, phase_max_steps=1,
                            mixed_steps=2, eval_every=4, held_out_per_dimension=2, deadline_minutes=0.0)
    return cfg, run_build(cfg)


def test_build_runs_every_phase_and_exports_the_best_critic(tiny_build):
    cfg, info = tiny_build
    written = json.loads((Path(cfg.out_dir) / "critic_build.json").read_text())
    assert written["best_eval"] == info["best_eval"]
    assert set(info["best_eval"]["acc"]) == {"ta", "phy", "vq", "vanilla"}
    assert set(info["minutes_per_stage"]) >= {"align", "caption", "instruct"}
    assert written["minutes_per_stage_at_end"] == info["minutes_per_stage"]  # the whole build, not the best export
    assert written["last_instruct_step"] == 11
    state = load_checkpoint(resolve_resume("auto", Path(cfg.work_dir) / "checkpoints")).state.extra
    # a phase ends after phase_max_steps (1) per unit: 3 steps for the first (3 units), 1 for each of the other 6,
    # then the 2 mixed steps
    assert len(PHASES) == 7 and (state["stage"], state["phase"], state["stage_step"]) == ("done", 7, 11)
    assert [h["step"] for h in state["history"]] == [4, 8, 11]
    critic = VLMCritic.from_pretrained(cfg.out_dir)
    assert critic.model.config.model_type == "qwen2_5_vl"


def test_stage_ends_are_kept_and_start_a_stage_three_variant(tiny_build, tmp_path, caplog):
    """The ends of stages 1 and 2 survive the pruning of ``checkpoints``; the end of stage 2, copied into a new work
    dir, starts stage (iii) at its first step with another curriculum (two phases, then the mixed one); a unit's
    ``unit_max_steps`` overrides ``phase_max_steps``."""
    cfg, _ = tiny_build
    ends = sorted(p.name for p in (Path(cfg.work_dir) / "stage_ends").iterdir())
    assert ends == ["step-000002", "step-000004"]  # align_steps = 2, then caption_steps = 2
    assert load_checkpoint(Path(cfg.work_dir) / "stage_ends" / ends[1]).state.extra["stage"] == "instruct"
    branch = dataclasses.replace(cfg, work_dir=str(tmp_path / "work"), out_dir=str(tmp_path / "out"),
                                 phases=(("Lighting",), ("vq",)), unit_max_steps={"vq": 2})
    shutil.copytree(Path(cfg.work_dir) / "init", Path(branch.work_dir) / "init")
    shutil.copytree(Path(cfg.work_dir) / "stage_ends" / ends[1], Path(branch.work_dir) / "checkpoints" / ends[1])
    with caplog.at_level(logging.INFO, logger="vidreward.world.build_critic"):
        run_build(branch)
    assert "(stage instruct, step 0)" in caplog.text and "stage 1 step" not in caplog.text
    state = load_checkpoint(resolve_resume("auto", Path(branch.work_dir) / "checkpoints")).state.extra
    # 1 Lighting step (phase_max_steps), 2 vq steps (its override), 2 mixed
    assert (state["stage"], state["phase"], state["stage_step"]) == ("done", 2, 5)
    assert "phase vq ends after 2 steps" in caplog.text


def test_rerun_resumes_the_finished_build(tiny_build, caplog):
    cfg, info = tiny_build
    with caplog.at_level("INFO"):
        again = run_build(cfg)
    assert "resumed from" in caplog.text and "stage done" in caplog.text
    assert again["best_eval"] == info["best_eval"] and again["minutes_per_stage"] == info["minutes_per_stage"]


def test_the_cosine_stage_one_schedule_halves_midway_and_ends_at_zero():
    cosine = CriticBuildConfig(align_steps=4, align_lr=2e-3, align_lr_schedule="cosine")
    # (1 + cos(pi s / 4)) / 2 for s = 0..4: 1, (1 + 1/sqrt 2) / 2, 1/2, (1 - 1/sqrt 2) / 2, 0
    expected = [2e-3, 1.70710678e-3, 1e-3, 0.29289322e-3, 0.0]
    assert [cosine.align_lr_at(s) for s in range(5)] == pytest.approx(expected, rel=1e-8, abs=1e-15)
    assert [CriticBuildConfig(align_lr=2e-3).align_lr_at(s) for s in (0, 2, 4)] == [2e-3] * 3
    with pytest.raises(ValueError, match="align_lr_schedule 'linear' is not one of"):
        CriticBuildConfig(align_lr_schedule="linear")


def test_a_ten_frame_patch_build_with_heads_checkpoints_them_and_exports(tmp_path, monkeypatch):
    lrs = []  # learning rate of every optimizer step, in order; the build's first 2 are stage (i)'s
    adamw_step = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step",
                        lambda self, *a, **k: (lrs.append(self.param_groups[0]["lr"]), adamw_step(self, *a, **k))[1])
    arch = CriticArch(vision_depth=1, vision_hidden=32, vision_heads=2, text_layers=1, text_hidden=32, text_heads=2,
                      text_kv_heads=1, temporal_patch_size=10)
    cfg = CriticBuildConfig(work_dir=str(tmp_path / "work"), out_dir=str(tmp_path / "out"), arch=arch, batch_size=4,
                            align_steps=2, align_batch_size=2, caption_steps=1, phases=(("vq",),),
                            phase_min_steps=1, phase_max_steps=1, mixed_steps=1, eval_every=4,
                            held_out_per_dimension=2, deadline_minutes=0.0, align_physics=True,
                            align_heads_weight=1.0, align_lr_schedule="cosine")
    info = run_build(cfg)
    assert lrs[:2] == pytest.approx([2e-3, 1e-3])  # cosine over 2 steps: align_lr, then align_lr / 2
    assert {"head_motion", "head_start", "head_physics", "head_quality"} <= set(info["vision_acc"])
    trained = load_checkpoint(resolve_resume("auto", Path(cfg.work_dir) / "checkpoints")).trainable
    heads = {k: v for k, v in trained.items() if k.startswith("heads.")}
    names = ("motion", "start", "physics", "quality")
    assert set(heads) == {f"heads.{h}.{p}" for h in names for p in ("weight", "bias")}
    critic = VLMCritic.from_pretrained(cfg.out_dir)
    assert critic.model.config.vision_config.temporal_patch_size == 10
    assert run_build(cfg)["vision_acc"] == info["vision_acc"]  # resumes the finished build


def test_the_temporal_recipe_differs_from_the_session10_one_only_where_it_says():
    from dataclasses import asdict

    from vidreward.world.critic_build_config import temporal_recipe

    shipped, temporal = asdict(CriticBuildConfig()), asdict(temporal_recipe(seed=3))
    changed = {k for k in shipped if shipped[k] != temporal[k]}
    assert changed == {"arch", "align_steps", "align_physics", "align_heads_weight", "scored_decision_only", "phases",
                       "phase_max_steps", "seed"}
    assert temporal["arch"]["temporal_patch_size"] == 10 and sorted(map(tuple, temporal["phases"])) == sorted(PHASES)


def test_the_checks_recipe_differs_from_the_temporal_one_only_in_stage_three():
    from dataclasses import asdict

    from vidreward.world.critic_build_config import CHECKS_PHASES, checks_recipe, temporal_recipe

    temporal, checks = asdict(temporal_recipe()), asdict(checks_recipe())
    changed = {k for k in temporal if temporal[k] != checks[k]}
    assert changed == {"phases", "aux_share", "aux_check_share", "replay_share", "phase_max_steps", "unit_max_steps"}
    assert checks["aux_share"] < 0.5  # the JSON answers outnumber the check answers to the same question
    assert sorted(map(tuple, checks["phases"])) == sorted((u,) for units in PHASES for u in units)  # each unit once
    assert CHECKS_PHASES[:3] == (("Color Requirement",), ("Lighting",), ("Environment",))
    assert (checks["aux_check_share"], checks["replay_share"], checks["unit_max_steps"]) == (1.0, 0.25,
                                                                                            {"vq": 600, "phy": 600})


def test_the_prompts_recipe_is_the_checks_one_with_a_grown_text_model_and_the_vanilla_prompt_curriculum():
    from dataclasses import asdict

    from vidreward.world.critic_build_config import (
        CHECKS_PHASES,
        PROMPT_PHASES,
        checks_recipe,
        prompts_recipe,
    )
    from vidreward.world.critic_curriculum import unit_dimension

    checks, prompts = asdict(checks_recipe()), asdict(prompts_recipe())
    assert {k for k in checks if checks[k] != prompts[k]} == {"phases", "grow_text_phase", "unit_max_steps"}
    # the checks phases up to Object(s) (Location left out), then Vanilla units only, plain Vanilla last
    assert PROMPT_PHASES[:7] == CHECKS_PHASES[:7] and CHECKS_PHASES[6] == ("Object(s)",)
    assert all(unit_dimension(units[0])[0] == "vanilla" for units in PROMPT_PHASES[7:])
    assert PROMPT_PHASES[-1] == ("vanilla",) and ("Object Location / Spatial Distribution",) not in PROMPT_PHASES
    # the text model grows as the first Vanilla unit (Colour's description alone) starts
    assert PROMPT_PHASES[prompts["grow_text_phase"]] == ("vanilla-part:Color Requirement",)
    assert prompts["unit_max_steps"]["vanilla-part:Color Requirement"] == 500
    assert prompts["unit_max_steps"]["vanilla"] == 400 and prompts["unit_max_steps"]["vanilla:Object(s)"] == 300
    assert asdict(CriticBuildConfig())["grow_text_phase"] == -1  # no other recipe grows


def test_the_shipped_critic_was_built_by_the_commands_default_recipe():
    """`vidreward world build critic --threads 2` (the default recipe) has exactly the config that the shipped critic's
    critic_build.json records, so the command rebuilds the shipped critic's recipe."""
    from dataclasses import asdict

    from vidreward.cli import build_parser
    from vidreward.world.critic_build_config import ASSET_DIR, checks_recipe

    args = build_parser().parse_args(["world", "build", "critic", "--threads", "2"])
    assert args.critic_recipe == "checks"
    recorded = json.loads((Path(ASSET_DIR) / "critic_build.json").read_text())["config"]
    expected = json.loads(json.dumps(asdict(checks_recipe(threads=2)) | {"out_dir": None, "work_dir": None}))
    defaults = json.loads(json.dumps(asdict(CriticBuildConfig())))
    newer = {k for k in expected if k not in recorded}  # options added after the build: at their (off) default
    assert all(expected[k] == defaults[k] for k in newer), newer
    assert recorded == {k: v for k, v in expected.items() if k not in newer}


def test_the_build_command_passes_its_flags_to_the_recipe(monkeypatch):
    from vidreward.cli import build_parser
    from vidreward.world import build_commands, build_critic
    from vidreward.world.critic_build_config import checks_recipe, joint_recipe, temporal_recipe

    seen = []
    monkeypatch.setattr(build_critic, "run_build", lambda cfg: seen.append(cfg) or {"best_eval": {"step": 1}})
    args = build_parser().parse_args(["world", "build", "critic", "--threads", "2", "--critic-minutes", "5",
                                      "--work-dir", "w", "--out", "o", "--seed", "3"])
    assert build_commands.BUILD_TARGETS[args.target](args) == 0
    assert seen[-1] == checks_recipe(threads=2, seed=3, deadline_minutes=5.0, work_dir="w", out_dir="o")
    args = build_parser().parse_args(["world", "build", "critic", "--critic-recipe", "temporal"])
    monkeypatch.setattr(build_critic, "run_build", lambda cfg: seen.append(cfg) or {})
    assert build_commands.BUILD_TARGETS[args.target](args) == 1  # no evaluation: the command fails
    assert seen[-1] == temporal_recipe(threads=args.threads)
    args = build_parser().parse_args(["world", "build", "critic", "--critic-recipe", "joint"])
    build_commands.BUILD_TARGETS[args.target](args)
    assert seen[-1] == joint_recipe(threads=args.threads)


def test_the_text_model_grows_at_its_phase_and_a_resumed_build_keeps_the_grown_layer(tiny_build, tmp_path,
                                                                                     monkeypatch):
    """``grow_text_phase`` 1: the 1-layer text model of the tiny build gets a second decoder layer when phase 1 starts.
    A build stopped after that resumes with 2 layers (a checkpoint's weights that the model lacks are an error, not
    silently dropped), and the grown layer trains: its zero-initialised output projection moves off zero."""
    from vidreward.world import build_critic

    cfg, _ = tiny_build
    stage2_end = sorted((Path(cfg.work_dir) / "stage_ends").iterdir())[1]
    branch = dataclasses.replace(cfg, work_dir=str(tmp_path / "work"), out_dir=str(tmp_path / "out"),
                                 phases=(("Lighting",), ("vanilla-part:Color Requirement",)), grow_text_phase=1,
                                 eval_every=1)
    shutil.copytree(Path(cfg.work_dir) / "init", Path(branch.work_dir) / "init")
    shutil.copytree(stage2_end, Path(branch.work_dir) / "checkpoints" / stage2_end.name)
    real_loss, calls = build_critic.grouped_loss, []

    def loss_then_crash(*args, **kwargs):  # stage (iii) steps 0 (Lighting) and 1 (grown), then a crash
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        calls.append(1)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(build_critic, "grouped_loss", loss_then_crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_build(branch)
    ck = load_checkpoint(resolve_resume("auto", Path(branch.work_dir) / "checkpoints"))
    assert (ck.state.extra["stage_step"], ck.state.extra["text_layers_added"]) == (2, 1)
    grown_out = ck.trainable["model.language_model.layers.1.self_attn.o_proj.weight"]
    assert grown_out.abs().max() > 0  # zero when grown, then one optimizer step
    monkeypatch.setattr(build_critic, "grouped_loss", real_loss)
    run_build(branch)  # resumes at step 2 with the grown model
    state = load_checkpoint(resolve_resume("auto", Path(branch.work_dir) / "checkpoints")).state.extra
    assert (state["stage"], state["stage_step"]) == ("done", 4)  # 1 Lighting + 1 grown step, then 2 mixed
    init_layers = json.loads((Path(branch.work_dir) / "init" / "config.json").read_text())
    assert init_layers["text_config"]["num_hidden_layers"] == 1
    wrong = dataclasses.replace(branch, grow_text_phase=-1, work_dir=str(tmp_path / "work2"))
    shutil.copytree(Path(branch.work_dir), Path(wrong.work_dir))
    state_path = resolve_resume("auto", Path(wrong.work_dir) / "checkpoints") / "state.json"
    saved = json.loads(state_path.read_text())
    saved["extra"].pop("text_layers_added")
    state_path.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="written by another architecture"):
        run_build(wrong)


def test_the_joint_recipe_keeps_earlier_vanilla_units_in_later_vanilla_phases_and_freezes_vision_after_growth():
    from dataclasses import asdict

    from vidreward.world.critic_build_config import JOINT_PHASES, PROMPT_PHASES, joint_recipe, prompts_recipe

    joint, prompts = joint_recipe(), prompts_recipe()
    assert {k for k, v in asdict(joint).items() if asdict(prompts)[k] != v} == {
        "phases", "freeze_vision_phase", "unit_max_steps"}
    assert JOINT_PHASES[:10] == PROMPT_PHASES[:10]  # up to the first whole-caption Vanilla unit
    assert JOINT_PHASES[11] == ("vanilla:Object(s)", "vanilla:Color Requirement")
    assert JOINT_PHASES[13] == ("vanilla:Objects' Motion", "vanilla:Object(s)", "vanilla:Color Requirement")
    seen: set[str] = set()  # every whole-caption unit of a phase stays in the later whole-caption phases
    for units in JOINT_PHASES[7:-1]:
        if units[0].startswith("vanilla:"):
            assert seen <= set(units)
            seen |= set(units)
    assert joint.grow_text_phase == joint.freeze_vision_phase == 7 == JOINT_PHASES.index(
        ("vanilla-part:Color Requirement",))
    caps = joint.unit_max_steps
    assert (caps["vq"], caps["phy"], caps["Objects' Motion"], caps["Object(s)"], caps["vanilla"]) == (
        500, 600, 800, 800, 600)


def test_vision_tuning_starts_at_the_first_vq_or_phy_phase_and_stops_at_freeze_vision_phase():
    from vidreward.world.critic_build_config import checks_recipe, joint_recipe

    checks = checks_recipe()  # Colour, Lighting, Environment, VQ (phase 3), ... 9 phases, then mixed (9)
    assert [checks.tunes_vision_at(k) for k in (0, 2, 3, 8, 9)] == [False, False, True, True, True]
    joint = joint_recipe()  # VQ at 3, frozen again from 7 on, mixed phase (15) too
    assert [joint.tunes_vision_at(k) for k in (2, 3, 6, 7, 14, 15)] == [False, True, True, False, False, False]
    assert not any(joint_recipe(instruct_vision_lr=0.0).tunes_vision_at(k) for k in range(16))


def test_a_build_freezes_the_vision_tower_again_at_freeze_vision_phase(tiny_build, tmp_path):
    """A branch from the tiny build's stage-2 end: one VQ step tunes the tower; from phase 1 (Lighting) on, including
    the mixed phase, the tower's weights no longer move."""
    cfg, _ = tiny_build
    stage2_end = sorted((Path(cfg.work_dir) / "stage_ends").iterdir())[1]
    branch = dataclasses.replace(cfg, work_dir=str(tmp_path / "work"), out_dir=str(tmp_path / "out"),
                                 phases=(("vq",), ("Lighting",)), freeze_vision_phase=1, eval_every=1)
    shutil.copytree(Path(cfg.work_dir) / "init", Path(branch.work_dir) / "init")
    shutil.copytree(stage2_end, Path(branch.work_dir) / "checkpoints" / stage2_end.name)
    run_build(branch)

    def vision(ck_dir: Path) -> dict[str, torch.Tensor]:
        return {k: v for k, v in load_checkpoint(ck_dir).trainable.items() if k.startswith("model.visual")}

    kept = sorted((Path(branch.work_dir) / "checkpoints").iterdir())  # the last two: steps 3 and 4 (mixed)
    assert [load_checkpoint(d).state.extra["stage_step"] for d in kept] == [3, 4]
    start, before_last, last = vision(stage2_end), vision(kept[0]), vision(kept[1])
    assert any(not torch.equal(start[k], last[k]) for k in start)  # the VQ step moved the tower
    assert all(torch.equal(before_last[k], last[k]) for k in last)  # the mixed step did not
