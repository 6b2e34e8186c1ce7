"""`vidreward world build critic`: the staged, resumable build of the world's tiny Qwen2.5-VL critic.

Stages (as real VLMs are built; see ../shared/notes/world-probe.md for why a one-shot recipe stays at chance):

0. tokenizer + model: a BPE tokenizer trained on the world's text, a fresh `Qwen2_5_VLForConditionalGeneration`
   (:mod:`vidreward.world.critic_model`) whose chat template puts the question before the video(s), so every
   visual token sees the question.
1. align: the vision tower (and the attribute words' embeddings) alone, trained so that every merged visual token
   scores the words that describe its region through the language model's own word embeddings
   (:mod:`critic_align`; occluding: an object's tokens carry only the object's words), for ``align_steps``.
2. caption: the vision tower frozen; dense LM loss over captions and facet descriptions of the videos.
3. instruct: the Figs. 15-17 questions and the Vanilla question with JSON answers, a few units at a time: each
   curriculum phase adds its units (``CriticBuildConfig.phases``, by default :data:`critic_curriculum.PHASES`;
   the first mixes Environment, Lighting and Colour), half the batch from the new units, and moves on when their
   running decision accuracy reaches ``phase_target`` (or after ``phase_max_steps`` per unit); then a mixed phase.
   Examples come in Yes/No pairs on the same scene; TA questions are partly asked in a short warm-up form
   (``short_question_share``) and partly answered with a keyed auxiliary answer (``aux_share``, :mod:`critic_aux`:
   "Video Lighting: dim"); the decision tokens weigh ``decision_weight``; the vision tower is tuned too from the first
   phase holding VQ or Phy on (``instruct_vision_lr``).

Recipes (:mod:`critic_build_config`: ``checks_recipe``, ``joint_recipe``, ``prompts_recipe``, ``temporal_recipe``;
the session-10 one is ``CriticBuildConfig()``) differ in stage sizes and in the stage (iii) curriculum; one may grow
the text model by a decoder layer as a phase starts (``grow_text_phase``, :func:`critic_model.grow_text_model`) and
freeze the vision tower again from a phase on (``freeze_vision_phase``).

Every ``eval_every`` steps of stage 3 the held-out renders are scored per dimension, with and without the frames
shuffled across the batch; the best critic so far (highest mean per-dimension accuracy) is written to
``out_dir`` with ``save_pretrained``. Checkpoints (atomic, with RNG and optimizer state) go to
``work_dir/checkpoints``; re-running the command resumes from the last one. Data is a pure function of
(seed, stage, step), so a resumed build follows the same sequence. The checkpoints at the ends of stages 1 and 2
are also kept in ``work_dir/stage_ends``: copied into another work dir's ``checkpoints``, the end of stage 2 starts
a stage (iii) variant without re-running stages 1 and 2.
"""

from __future__ import annotations

import json
import random
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path

import torch

from vidreward.critics.vlm import VLMCritic
from vidreward.log import get_logger
from vidreward.train.checkpoint import (
    TrainState,
    load_checkpoint,
    resolve_resume,
    restore_rng_state,
    save_checkpoint,
)
from vidreward.world import critic_data as cd
from vidreward.world.build_loop import write_json
from vidreward.world.critic_align import (
    WordAlignment,
    align_accuracy,
    align_loss,
    align_sample,
    concept_token_ids,
    rescale_visual_tokens,
)
from vidreward.world.critic_batch import check_same_path, evaluate, grouped_loss
from vidreward.world.critic_build_config import CriticBuildConfig
from vidreward.world.critic_curriculum import (
    N_FRAMES_CHOICES,
    curriculum_example,
    train_scene,
)
from vidreward.world.critic_heads import AttributeHeads
from vidreward.world.critic_model import export_critic, grow_text_model, save_initial_critic
from vidreward.world.render import RenderConfig

logger = get_logger(__name__)


def _rng(cfg: CriticBuildConfig, *parts) -> random.Random:
    return random.Random("-".join(map(str, ("critic-build", cfg.seed, *parts))))


def _align_sample(cfg: CriticBuildConfig, seed: int, rcfg: RenderConfig, n_frames: int, split: str = "train"):
    return align_sample(seed, rcfg, n_frames, split, cfg.align_visible_defects, cfg.arch.temporal_patch_size,
                        cfg.align_physics)


def align_step(cfg: CriticBuildConfig, step: int, critic: VLMCritic, align: WordAlignment, heads: AttributeHeads,
               optimizer: torch.optim.Optimizer, rcfg: RenderConfig) -> float:
    """One stage (i) step: ``cfg.align_batch_size`` train-split videos drawn from (seed, step), each at a drawn N_f,
    and an optimizer step on :func:`critic_align.align_loss` at ``cfg.align_lr_at(step)``; returns the loss."""
    rng = _rng(cfg, "align", step)
    nf = [rng.choice(N_FRAMES_CHOICES) for _ in range(cfg.align_batch_size)]
    samples = [_align_sample(cfg, rng.randrange(40_000_000), rcfg, n) for n in nf]
    loss, _ = align_loss(critic.model, align, critic.encoder, [s.video for s in samples],
                         [s.concepts for s in samples], nf, critic.fps, cfg.align_group_weight,
                         cfg.align_quality_weight, heads, [s.source for s in samples], cfg.align_heads_weight)
    for group in optimizer.param_groups:
        group["lr"] = cfg.align_lr_at(step)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def trainable_text_parameters(model) -> list[torch.nn.Parameter]:
    """Every parameter outside the vision tower (language model, word embeddings), set to require gradients."""
    params = [p for n, p in model.named_parameters() if not n.startswith("model.visual")]
    for p in params:
        p.requires_grad_(True)
    return params


def _trainable_state(model, align, heads) -> dict[str, torch.Tensor]:
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied to the embeddings
    state.update({f"align.{k}": v for k, v in align.state_dict().items()})
    state.update({f"heads.{k}": v for k, v in heads.state_dict().items()})
    return state


def run_build(cfg: CriticBuildConfig) -> dict:
    """Run (or resume) the build; return the build info written next to the exported critic."""
    torch.set_num_threads(cfg.threads)
    work, rcfg = Path(cfg.work_dir), RenderConfig()
    init_dir, ckpt_dir = work / "init", work / "checkpoints"
    if not (init_dir / "model.safetensors").is_file():
        t0 = time.time()
        vocab = save_initial_critic(init_dir, cd.text_corpus(2000), cfg.arch, cfg.seed)
        logger.info("stage 0: tokenizer (%d tokens) + model built in %.1fs", vocab, time.time() - t0)
    critic = VLMCritic.from_pretrained(init_dir)
    model = critic.model
    align = WordAlignment(concept_token_ids(critic.tokenizer))
    heads = AttributeHeads(cfg.arch.text_hidden)
    held = cd.held_out_examples(cfg.held_out_per_dimension, rcfg)
    state = TrainState(extra={"stage": "align", "stage_step": 0, "phase": 0, "recent": [], "minutes": {},
                              "best": -1.0, "history": []})
    opt_state = None
    found = resolve_resume("auto", ckpt_dir)
    if found is not None:
        ck = load_checkpoint(found)
        if ck.state.extra.get("text_layers_added"):  # the checkpoint holds the grown text model
            grow_text_model(model, ck.state.extra["text_layers_added"])
        unexpected = model.load_state_dict(
            {k: v for k, v in ck.trainable.items() if not k.startswith(("align.", "heads."))}, strict=False).unexpected_keys
        if unexpected:
            raise ValueError(f"checkpoint {found} holds weights the critic does not have ({unexpected[:3]}...): it was "
                             f"written by another architecture; use another work_dir")
        align.load_state_dict({k[6:]: v for k, v in ck.trainable.items() if k.startswith("align.")})
        if any(k.startswith("heads.") for k in ck.trainable):
            heads.load_state_dict({k[6:]: v for k, v in ck.trainable.items() if k.startswith("heads.")})
        model.tie_weights()
        state, opt_state = ck.state, ck.optimizer
        restore_rng_state(ck.rng)
        logger.info("resumed from %s (stage %s, step %d)", found, state.extra["stage"], state.extra["stage_step"])
    ex = state.extra

    def checkpoint(optimizer, stage_end: bool = False):
        ex["minutes"][ex["stage"]] = ex["minutes"].get(ex["stage"], 0.0) + (time.time() - mark[0]) / 60
        mark[0] = time.time()
        trainable = _trainable_state(model, align, heads)
        save_checkpoint(ckpt_dir, state, trainable, optimizer, keep_last=2)
        if stage_end:
            save_checkpoint(work / "stage_ends", state, trainable, optimizer, keep_last=0)

    mark = [time.time()]
    # ---- stage (i): word-aligned visual tokens ------------------------------------------------------------------
    if ex["stage"] == "align":
        embeddings = model.get_input_embeddings().weight
        params = list(model.model.visual.parameters()) + [embeddings] + list(align.parameters())
        if cfg.align_heads_weight:
            params += list(heads.parameters())
        for p in params:
            p.requires_grad_(True)
        optimizer = torch.optim.AdamW(params, lr=cfg.align_lr, weight_decay=0.0)
        if opt_state is not None:
            optimizer.load_state_dict(opt_state)
        val = [_align_sample(cfg, 90_000_000 + 1000 * i, rcfg, 10, "heldout") for i in range(64)]
        val_heads = heads if cfg.align_heads_weight else None
        while ex["stage_step"] < cfg.align_steps:
            loss = align_step(cfg, ex["stage_step"], critic, align, heads, optimizer, rcfg)
            ex["stage_step"] += 1
            state.step += 1
            if ex["stage_step"] % 250 == 0 or ex["stage_step"] == cfg.align_steps:
                ex["vision_acc"] = align_accuracy(model, align, critic.encoder, val, critic.fps, val_heads)
                logger.info("stage 1 step %d loss %.3f held-out %s", ex["stage_step"], loss, ex["vision_acc"])
                checkpoint(optimizer)
        if cfg.align_rescale_tokens:
            factor = rescale_visual_tokens(model, align, critic.encoder, val, critic.fps)
            logger.info("stage 1: visual tokens scaled by %.4f to the attribute words' embedding norm", factor)
        ex.update(stage="caption", stage_step=0)
        opt_state = None
        checkpoint(None, stage_end=True)
    text_params = trainable_text_parameters(model)
    vision_params = list(model.model.visual.parameters())

    def make_optimizer(stage: str, saved):
        """Text model; in stage (iii) also the vision tower (``instruct_vision_lr``, see :func:`tunes_vision`)."""
        groups = [{"params": text_params, "lr": cfg.caption_lr if stage == "caption" else cfg.text_lr}]
        if stage == "instruct" and cfg.instruct_vision_lr > 0:
            groups.append({"params": vision_params, "lr": cfg.instruct_vision_lr})
        opt = torch.optim.AdamW(groups, weight_decay=0.0)
        if saved is not None:
            opt.load_state_dict(saved)
            for group, wanted in zip(opt.param_groups, groups):
                group["lr"] = wanted["lr"]
        return opt

    phases = cfg.phases

    def tunes_vision() -> bool:
        return ex["stage"] == "instruct" and cfg.tunes_vision_at(ex["phase"])

    optimizer = make_optimizer(ex["stage"], opt_state) if ex["stage"] != "done" else None  # a finished build

    def text_step(examples, nf):
        tune_vision = tunes_vision()
        model.model.visual.requires_grad_(tune_vision)
        loss, preds = grouped_loss(critic, examples, nf, cfg.decision_weight, tune_vision, cfg.scored_decision_only)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(text_params + (vision_params if tune_vision else []), 1.0)
        optimizer.step()
        state.step += 1
        ex["stage_step"] += 1
        return loss.item(), preds

    # ---- stage (ii): captioning alignment ---------------------------------------------------------------------
    if ex["stage"] == "caption":
        diff = check_same_path(critic, held[:2] + held[-2:], 10)
        logger.info("training path == VLMCritic.answer_logprobs (max |diff| %.1e)", diff)
        while ex["stage_step"] < cfg.caption_steps:
            rng = _rng(cfg, "caption", ex["stage_step"])
            exs, nf = [], []
            for _ in range(cfg.batch_size):
                seed, spec = train_scene(rng, rcfg.num_frames)
                nf.append(rng.choice(N_FRAMES_CHOICES))
                exs.append(cd.make_example(spec, "caption", None, seed, rcfg, nf[-1]))
            loss, _ = text_step(exs, nf)
            if ex["stage_step"] % 50 == 0:
                logger.info("stage 2 step %d caption loss %.3f", ex["stage_step"], loss)
                checkpoint(optimizer)
        ex.update(stage="instruct", stage_step=0, phase=0, phase_step=0, recent=[])
        checkpoint(None, stage_end=True)
        optimizer = make_optimizer("instruct", None)
    # ---- stage (iii): instruction tuning with a facet-by-facet curriculum ------------------------------------
    total = len(phases) + 1
    while ex["stage"] == "instruct":
        step, phase = ex["stage_step"], ex["phase"]
        if phase == cfg.grow_text_phase and not ex.get("text_layers_added"):
            grow_text_model(model, cfg.grow_text_layers)
            ex["text_layers_added"] = cfg.grow_text_layers
            text_params = trainable_text_parameters(model)  # now with the new layers'
            optimizer = make_optimizer("instruct", None)
        pairs = [curriculum_example(_rng(cfg, "instruct", step, i // 2), i, phase, cfg.short_question_share, rcfg,
                                    cfg.format_share, cfg.aux_share, phases, cfg.aux_check_share,
                                    cfg.replay_share, cfg.vanilla_check_share)
                 for i in range(cfg.batch_size)]
        loss, preds = text_step([p[0] for p in pairs], [p[1] for p in pairs])
        ex["phase_step"] += 1
        units = phases[phase] if phase < len(phases) else None
        recent = deque(ex["recent"], maxlen=160 * len(units or ("mixed",)))
        for (e, _), p in zip(pairs, preds):
            if e.label is not None and (units is None or e.facet in units):
                recent.append(int(p == e.label))
        ex["recent"] = list(recent)
        run_acc = sum(recent) / max(len(recent), 1)
        if step % 20 == 0:
            logger.info("stage 3 step %d phase %d/%d (%s) loss %.3f running acc %.3f", step, phase, total,
                        "+".join(units or ("mixed",)), loss, run_acc)
        done_phase = ex["phase_step"] >= cfg.phase_min_steps and len(recent) >= 60 and run_acc >= cfg.phase_target
        out_of_steps = units is not None and ex["phase_step"] >= sum(
            cfg.unit_max_steps.get(u, cfg.phase_max_steps) for u in units)
        if units is not None and (done_phase or out_of_steps):
            logger.info("phase %s ends after %d steps (running acc %.3f)", "+".join(units), ex["phase_step"], run_acc)
            ex.update(phase=phase + 1, phase_step=0, recent=[])
        build_minutes = sum(ex["minutes"].values()) + (time.time() - mark[0]) / 60  # over every (resumed) run
        out_of_time = cfg.deadline_minutes and build_minutes >= cfg.deadline_minutes
        finished = units is None and ex["phase_step"] >= cfg.mixed_steps
        if ex["stage_step"] % cfg.eval_every == 0 or finished or out_of_time:
            acc = evaluate(critic, held)
            shuffled = evaluate(critic, held, shuffle=True)
            score = sum(acc.values()) / len(acc)
            ex["history"].append({"step": ex["stage_step"], "phase": ex["phase"], "acc": acc, "shuffled": shuffled})
            logger.info("stage 3 step %d held-out acc %s | shuffled frames %s", ex["stage_step"], acc, shuffled)
            if score > ex["best"]:
                ex["best"] = score
                ex["best_eval"] = {"step": ex["stage_step"], "acc": acc, "shuffled": shuffled}
                export_critic(critic, Path(cfg.out_dir), _info(cfg, ex))
            checkpoint(optimizer)
            if finished or out_of_time:
                ex["stage"] = "done"
                save_checkpoint(ckpt_dir, state, _trainable_state(model, align, heads), optimizer, keep_last=2)
    info = _info(cfg, ex)
    record_build_end(Path(cfg.out_dir), ex)
    logger.info("critic build done: %s", json.dumps(info))
    return info


def record_build_end(out_dir: Path, ex: dict) -> None:
    """Add the whole build's minutes per stage and its last stage (iii) step to the exported ``critic_build.json``
    (whose ``minutes_per_stage`` is the record at the best export); nothing else of the export changes."""
    path = out_dir / "critic_build.json"
    if not path.is_file():
        return
    info = json.loads(path.read_text())
    info["minutes_per_stage_at_end"] = ex["minutes"]
    info["last_instruct_step"] = ex["stage_step"]
    write_json(path, info)
    path.chmod(0o644)  # as export_critic leaves its files


def _info(cfg: CriticBuildConfig, ex: dict) -> dict:
    return {"config": asdict(cfg) | {"out_dir": None, "work_dir": None}, "vision_acc": ex.get("vision_acc"),
            "best_eval": ex.get("best_eval"), "minutes_per_stage": ex["minutes"]}

