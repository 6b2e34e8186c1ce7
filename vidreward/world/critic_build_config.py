"""Settings of `vidreward world build critic` (:mod:`.build_critic`): sizes, stage budgets and learning rates."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from vidreward.world.critic_curriculum import PHASES, vision_tuning_phase
from vidreward.world.critic_model import CriticArch

#: where the shipped critic lives (a ``save_pretrained`` directory inside the package)
ASSET_DIR = Path(__file__).parent / "assets" / "critic"
#: values of ``CriticBuildConfig.align_lr_schedule``
ALIGN_LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")


@dataclass
class CriticBuildConfig:
    """Settings of the critic build."""

    work_dir: str = "runs/world_critic_build"
    """checkpoints, the initial model and the best model so far"""
    out_dir: str = str(ASSET_DIR)
    """where the best critic is written (save_pretrained dir)"""
    seed: int = 0
    """seed of the tokenizer corpus, the initial weights and every training example"""
    threads: int = 1
    """torch CPU threads"""
    arch: CriticArch = field(default_factory=CriticArch)
    """model sizes"""
    batch_size: int = 32
    """examples per step"""
    align_steps: int = 2500
    """stage (i) steps"""
    align_batch_size: int = 16
    """stage (i) videos per step"""
    align_lr: float = 2e-3
    """stage (i) learning rate (vision tower, attribute-word embeddings, word-score biases)"""
    align_lr_schedule: str = "constant"
    """stage (i) learning-rate schedule over ``align_steps``: ``constant`` (every recipe up to session 16), or
    ``cosine``, lr_s = align_lr * (1 + cos(pi * s / align_steps)) / 2, which ends the stage at lr 0 so the tower that
    stage (ii) receives is a converged one, not a point of the noisy constant-rate trajectory (session 16's build ended
    stage (i) with held-out quality-word accuracy 0.53, after 0.86 at step 4500)"""
    align_group_weight: float = 1.0
    """stage (i) weight of the per-group (colour / shape / size) cross-entropy on object tokens"""
    align_quality_weight: float = 0.0
    """stage (i) weight of the softmax cross-entropy over the image-quality words (noise / blur / flicker) on tokens
    of a defective video (0: every recipe; the session-10 one, whose per-token quality accuracy stayed at 0.49)"""
    align_visible_defects: bool = True
    """stage (i): name a blur / flicker defect only on the tokens whose pixels show it (object edges; a patch whose
    two frames differ in shift), leaving the quality words unscored on the defective video's other tokens
    (:mod:`critic_concepts`; every recipe since session 10); False: every token of a blurred video and
    every token of a patch holding a shifted frame (the session-8 critic)"""
    align_physics: bool = False
    """stage (i): draw physics corruptions too (deformation, teleport, interpenetration) and give the object tokens
    motion labels (:func:`critic_concepts.track_motion`); needed by the heads' physics and motion targets"""
    align_heads_weight: float = 0.0
    """stage (i) weight of the classification heads' loss (:mod:`critic_heads`: motion per object token, physics
    and quality per video; 0: no heads, the session-10 recipe)"""
    align_rescale_tokens: bool = False
    """at the end of stage (i), scale the merged visual tokens to the word embeddings' mean norm
    (:func:`critic_align.rescale_visual_tokens`; the word scores are cosines, so stage (i)'s result is unchanged;
    off in every recipe: in session 14's build with it phase 0 was learnt sooner but Phy stayed at chance; session
    15's branch with it learnt Phy but not Environment; see docs/world_critic.md)"""
    caption_steps: int = 150
    """stage (ii) steps"""
    caption_lr: float = 1e-3
    """stage (ii) learning rate of the language model"""
    text_lr: float = 1e-3
    """stage (iii) learning rate of the language model (3e-3 stalled the language-model experiments at 0.50-0.55)"""
    aux_share: float = 0.5
    """stage (iii): share of TA examples answered with a keyed auxiliary answer (``Video Lighting: dim``,
    :mod:`critic_aux`) instead of the Yes/No JSON"""
    aux_check_share: float = 0.0
    """stage (iii): share of the auxiliary TA examples answered with a check answer (``Check Lighting: bright`` /
    ``match``, :func:`critic_aux.check_example`: linear in the two sides, unlike the Yes/No decision) instead of
    naming one side (0 in the session-10 and temporal recipes, 1 in the checks recipe)"""
    vanilla_check_share: float = 0.0
    """stage (iii): share of Vanilla examples asked for the first part of the prompt the video does not show and
    answered ``Check: blue`` / ``Check: match`` (:func:`critic_aux.vanilla_check_example`) instead of Yes/No (0 in
    every recipe: 0.4 in an 800-step Vanilla phase added to the shipped build left Vanilla where the same phase
    without it did, docs/world_critic.md)"""
    replay_share: float = 0.5
    """stage (iii): share of a later curriculum phase's examples that replay the units of earlier phases (the rest
    train the phase's own units)"""
    short_question_share: float = 0.5
    """stage (iii): share of TA examples asked with the short warm-up question during the curriculum phases
    (a quarter of it in the mixed phase); held-out evaluation always uses the Fig. 15 template"""
    format_share: float = 0.1
    """stage (iii): share of curriculum-phase examples drawn from any unit (every answer format from the start)"""
    decision_weight: float = 20.0
    """stage (ii)/(iii) loss weight of each Yes/No decision token (other answer tokens weigh 1)"""
    scored_decision_only: bool = False
    """stage (iii): only the scored decision of an answer weighs ``decision_weight``, its other decisions 1
    (``critic_batch`` module doc: balances the Phy answers' Yes and No targets, 1 : 9 otherwise)"""
    instruct_vision_lr: float = 3e-4
    """stage (iii) learning rate of the vision tower (0: keep it frozen after stage (i))"""
    phases: tuple[tuple[str, ...], ...] = PHASES
    """stage (iii) curriculum phases, each a tuple of units (TA facet keys, "vq", "phy", "vanilla",
    "vanilla:<TA facet>" or "vanilla-part:<facets>", :func:`critic_curriculum.unit_dimension`); the vision tower
    is tuned from the first phase holding "vq" or "phy" on (:func:`critic_curriculum.vision_tuning_phase`)"""
    grow_text_phase: int = -1
    """stage (iii): the curriculum phase at whose start the text model grows by ``grow_text_layers`` decoder layers
    (:func:`critic_model.grow_text_model`: copies of the last layer that add nothing at first) and the optimizer
    starts afresh; -1: never (every recipe up to session 17). Session 17: the 2-layer text model did not learn to
    decide at the reply's first token, which Vanilla's answer is, and one more layer did (docs/world_critic.md)"""
    grow_text_layers: int = 1
    """decoder layers added at ``grow_text_phase``"""
    freeze_vision_phase: int = -1
    """stage (iii): the curriculum phase from which the vision tower is frozen again (the mixed phase counts as phase
    ``len(phases)``); -1: tuned to the end (every recipe up to session 18). A step that tunes the tower costs ~2-3x a
    frozen-tower one, so phases that only teach the language model (the Vanilla prompt curriculum) get more steps"""
    phase_min_steps: int = 20
    """stage (iii): steps before a phase may end"""
    phase_max_steps: int = 400
    """stage (iii): steps per unit of a phase after which the phase ends anyway (a 3-unit phase: 1200)"""
    unit_max_steps: dict[str, int] = field(default_factory=dict)
    """stage (iii): per-unit overrides of ``phase_max_steps`` (e.g. ``{"vq": 600}``: a unit whose steps tune the vision
    tower costs ~3x a frozen-tower step)"""
    phase_target: float = 0.9
    """stage (iii): running decision accuracy of the phase's new units that ends the phase"""
    mixed_steps: int = 3000
    """stage (iii): steps of the final mixed phase"""
    eval_every: int = 100
    """stage (iii): steps between held-out evaluations (and checkpoints)"""
    held_out_per_dimension: int = 48
    """held-out examples per dimension (balanced Yes/No)"""
    deadline_minutes: float = 88.0
    """stop stage (iii) once the build's wall-clock minutes (all stages, summed over resumed runs) reach this
    (0: no limit)"""

    def __post_init__(self):
        if self.align_lr_schedule not in ALIGN_LR_SCHEDULES:
            raise ValueError(f"align_lr_schedule {self.align_lr_schedule!r} is not one of {ALIGN_LR_SCHEDULES}")

    def tunes_vision_at(self, phase: int) -> bool:
        """Whether stage (iii) tunes the vision tower in curriculum phase ``phase`` (``len(phases)``: the mixed phase):
        from :func:`critic_curriculum.vision_tuning_phase` on, and before ``freeze_vision_phase`` when that is set."""
        frozen_again = 0 <= self.freeze_vision_phase <= phase
        return self.instruct_vision_lr > 0 and vision_tuning_phase(self.phases) <= phase and not frozen_again

    def align_lr_at(self, step: int) -> float:
        """Stage (i) learning rate of step ``step`` (0-based) under ``align_lr_schedule``."""
        if self.align_lr_schedule == "cosine":
            return self.align_lr * (1 + math.cos(math.pi * min(step, self.align_steps) / self.align_steps)) / 2
        return self.align_lr


def temporal_recipe(**overrides) -> CriticBuildConfig:
    """The session-13 recipe (shipped in sessions 13-15; ``vidreward world build critic --critic-recipe temporal``; the
    dataclass defaults are the session-10 recipe, ``--critic-recipe session10``): a whole clip of up to 10
    frames in one temporal patch, stage (i) with physics corruptions and the classification heads for 5000 steps,
    balanced Phy decisions, Phy right after VQ and longer phases (its steps are ~3x faster than the session-10
    recipe's)."""
    phases = (PHASES[0], ("vq",), ("phy",), ("Object(s)",), ("vanilla",), *PHASES[5:])
    settings = dict(arch=CriticArch(temporal_patch_size=10), align_steps=5000, align_physics=True,
                    align_heads_weight=1.0, scored_decision_only=True, phases=phases, phase_max_steps=600)
    return CriticBuildConfig(**(settings | overrides))


#: stage (iii) curriculum of :func:`checks_recipe`: one unit per phase, the facets that session 15's branches learnt
#: first (Colour, Lighting, Environment), then VQ and Phy, then Motion and Object(s) (session 16: before Vanilla, whose
#: "No" is any broken facet, so it comes after the facets it needs), and Location last (no build has learnt it)
CHECKS_PHASES: tuple[tuple[str, ...], ...] = (("Color Requirement",), ("Lighting",), ("Environment",), ("vq",),
                                              ("phy",), ("Objects' Motion",), ("Object(s)",), ("vanilla",),
                                              ("Object Location / Spatial Distribution",))


def checks_recipe(**overrides) -> CriticBuildConfig:
    """The recipe of the critic shipped since session 16 (``vidreward world build critic``, the default; session 15
    introduced it, ``--critic-recipe checks``): :func:`temporal_recipe` with every auxiliary TA answer a
    check answer (``aux_check_share`` 1, :func:`critic_aux.check_example`) on 40% of the TA examples (``aux_share``),
    one unit per curriculum phase (:data:`CHECKS_PHASES`) trained on three quarters of the batch (``replay_share``
    0.25), up to 1200 steps per facet and 600 for VQ and Phy (whose steps tune the vision tower).

    ``aux_share`` is 0.4, not 0.5: the auxiliary answers share the Fig. 15 question with the JSON ones, and at 0.5 the
    first session-15 build's greedy TA replies all opened with ``Check <facet>:`` instead of the JSON, so the world
    records' reference answers (:mod:`vidreward.world.drf_data`) parsed for none of 32 prompts (docs/world_critic.md)."""
    settings = dict(phases=CHECKS_PHASES, aux_share=0.4, aux_check_share=1.0, replay_share=0.25,
                    phase_max_steps=1200, unit_max_steps={"vq": 600, "phy": 600})
    return temporal_recipe(**(settings | overrides))


#: stage (iii) curriculum of :func:`prompts_recipe`: :data:`CHECKS_PHASES` up to Object(s), then Vanilla by a prompt
#: curriculum on the grown text model: per facet, the Vanilla question about that facet's description alone
#: (``vanilla-part:``), then about the whole caption with that facet broken (``vanilla:``); Colour goes through a
#: two-facet prompt (Environment + Colour) in between; plain Vanilla last. Location is left out (no build learnt it).
PROMPT_PHASES: tuple[tuple[str, ...], ...] = CHECKS_PHASES[:7] + (
    ("vanilla-part:Color Requirement",), ("vanilla-part:Environment+Color Requirement",), ("vanilla:Color Requirement",),
    ("vanilla-part:Object(s)",), ("vanilla:Object(s)",), ("vanilla-part:Objects' Motion",),
    ("vanilla:Objects' Motion",), ("vanilla",))


def prompts_recipe(**overrides) -> CriticBuildConfig:
    """Session 18 (``vidreward world build critic --critic-recipe prompts``): :func:`checks_recipe` whose text model
    grows by one decoder layer after the Object(s) phase (``grow_text_phase``), followed by the Vanilla prompt
    curriculum of :data:`PROMPT_PHASES`. Session 17 measured its steps as continuations of the shipped build: on the
    grown model, one-facet Colour 269 steps, two facets 28, the whole caption 63, then plain Vanilla 0.77 held-out
    (the 2-layer critic: 0.65; docs/world_critic.md). Each prompt unit may take 300 steps (the first 500), plain
    Vanilla 400."""
    first = PROMPT_PHASES.index(("vanilla-part:Color Requirement",))
    caps = {units[0]: 300 for units in PROMPT_PHASES[first:]} | {PROMPT_PHASES[first][0]: 500, "vanilla": 400}
    settings = dict(phases=PROMPT_PHASES, grow_text_phase=first, unit_max_steps={"vq": 600, "phy": 600} | caps)
    return checks_recipe(**(settings | overrides))


#: stage (iii) curriculum of :func:`joint_recipe`: :data:`PROMPT_PHASES` in which each whole-caption Vanilla phase
#: also holds the whole-caption units learnt before it (session 18: with one unit per phase, what one Vanilla phase
#: taught, the next erased; a phase ends only when all its units are at ``phase_target``)
JOINT_PHASES: tuple[tuple[str, ...], ...] = CHECKS_PHASES[:7] + (
    ("vanilla-part:Color Requirement",), ("vanilla-part:Environment+Color Requirement",), ("vanilla:Color Requirement",),
    ("vanilla-part:Object(s)",), ("vanilla:Object(s)", "vanilla:Color Requirement"),
    ("vanilla-part:Objects' Motion",), ("vanilla:Objects' Motion", "vanilla:Object(s)", "vanilla:Color Requirement"),
    ("vanilla",))


def joint_recipe(**overrides) -> CriticBuildConfig:
    """Session 19 (``vidreward world build critic --critic-recipe joint``): :func:`prompts_recipe` with
    (a) the curriculum of :data:`JOINT_PHASES` (earlier whole-caption Vanilla units stay in each later Vanilla phase);
    (b) the vision tower frozen from the growth on (``freeze_vision_phase``), so the Vanilla phases, which teach the
    language model, take cheaper steps; (c) lower caps for the phases that ran out their caps in session 18's build
    (VQ 500, Phy 600, Motion 800, Object(s) 800: there 600, 600, 1200, 1200 took 51 of the 74 stage (iii) minutes);
    the Vanilla units' caps are per unit and phase (a two-unit phase may take twice one unit's), plain Vanilla 600.
    Session 19's build of it learnt the Vanilla curriculum's Colour chain in 168 steps but not Object(s) or Motion, and
    scored 0.750 on the test batch (the shipped checks critic: 0.771), so it is not the default (docs/world_critic.md)."""
    first = JOINT_PHASES.index(("vanilla-part:Color Requirement",))
    caps = {"vq": 500, "phy": 600, "Objects' Motion": 800, "Object(s)": 800,
            "vanilla-part:Color Requirement": 400, "vanilla-part:Environment+Color Requirement": 200,
            "vanilla:Color Requirement": 200, "vanilla-part:Object(s)": 300, "vanilla:Object(s)": 200,
            "vanilla-part:Objects' Motion": 300, "vanilla:Objects' Motion": 200, "vanilla": 600}
    settings = dict(phases=JOINT_PHASES, grow_text_phase=first, freeze_vision_phase=first, unit_max_steps=caps)
    return checks_recipe(**(settings | overrides))
