"""Stage (iii) curriculum of the critic build: which units each phase draws, and the Yes/No pairing."""

import random
from collections import Counter

import pytest

from vidreward.rewards.vanilla_drf import vanilla_question
from vidreward.world import critic_data as cd
from vidreward.world.captions import facet_dict
from vidreward.world.critic_curriculum import (
    CURRICULUM,
    PHASES,
    curriculum_example,
    unit_dimension,
    vision_tuning_phase,
)
from vidreward.world.render import RenderConfig
from vidreward.world.scene import sample_scene

CFG = RenderConfig()


def _units(phase: int, count: int = 64, format_share: float = 0.0) -> Counter:
    drawn = [curriculum_example(random.Random(f"c{k // 2}"), k, phase, 0.0, CFG, format_share)[0]
             for k in range(count)]
    return Counter(e.facet for e in drawn if e.dimension != "caption"), drawn


def test_phases_cover_every_unit_once_and_vision_tuning_starts_at_vq():
    assert sorted(CURRICULUM) == sorted(set(CURRICULUM)) and len(CURRICULUM) == 9
    assert PHASES[0] == ("Environment", "Lighting", "Color Requirement")
    first = vision_tuning_phase(PHASES)
    assert "vq" in PHASES[first] and all("vq" not in p for p in PHASES[:first])


def test_first_phase_mixes_its_three_facets_only():
    units, drawn = _units(0)
    assert set(units) == set(PHASES[0])  # without format_share, nothing outside the phase
    assert min(units.values()) >= 8  # all three are drawn, none starved (64 draws, about 20 each)
    for a, b in zip(drawn[::2], drawn[1::2]):  # a pair shares its generator: same scene and unit
        assert a.dimension == b.dimension
        if a.dimension != "caption":
            assert (a.facet, a.scene, a.label, b.label) == (b.facet, b.scene, "Yes", "No")


def test_later_phase_draws_new_units_on_half_and_replays_earlier_phases():
    phase = PHASES.index(("Object(s)",))
    units, _ = _units(phase, count=128)
    new = units["Object(s)"]
    earlier = {u for units in PHASES[:phase] for u in units}
    replay = sum(units[u] for u in earlier)
    assert set(units) == {"Object(s)", *earlier} and "vq" in earlier
    assert 0.3 < new / (new + replay) < 0.7


def test_a_configured_curriculum_draws_its_own_phases_and_sets_vision_tuning():
    phases = (("vq", "Lighting"), ("phy",))
    assert vision_tuning_phase(phases) == 0 and vision_tuning_phase((("Lighting",), ("phy",))) == 1
    assert vision_tuning_phase((("Lighting",),)) == 1  # neither vq nor phy: never within the curriculum
    assert vision_tuning_phase(PHASES) == 1  # the shipped curriculum: VQ second
    first = [curriculum_example(random.Random(f"p{k // 2}"), k, 0, 0.0, CFG, phases=phases)[0] for k in range(64)]
    assert {e.facet for e in first if e.dimension != "caption"} == {"vq", "Lighting"}
    later = [curriculum_example(random.Random(f"q{k // 2}"), k, 1, 0.0, CFG, phases=phases)[0] for k in range(64)]
    assert {e.facet for e in later if e.dimension != "caption"} == {"vq", "Lighting", "phy"}


def test_replay_share_sets_the_later_phase_split_and_zero_replays_nothing():
    phase = PHASES.index(("Object(s)",))

    def new_share(replay_share: float) -> float:
        drawn = [curriculum_example(random.Random(f"r{k // 2}"), k, phase, 0.0, CFG, replay_share=replay_share)[0]
                 for k in range(256)]
        units = [e.facet for e in drawn if e.dimension != "caption"]
        return units.count("Object(s)") / len(units)

    assert new_share(0.0) == 1.0
    assert 0.65 < new_share(0.25) < 0.85  # 3/4 new: 240-odd units drawn, sd about 0.03
    assert 0.4 < new_share(0.5) < 0.6
    # the default is 0.5: the examples of both recipes are unchanged by the option
    default = [curriculum_example(random.Random(f"d{k // 2}"), k, phase, 0.0, CFG)[0] for k in range(16)]
    half = [curriculum_example(random.Random(f"d{k // 2}"), k, phase, 0.0, CFG, replay_share=0.5)[0] for k in range(16)]
    assert [(e.facet, e.scene, e.label) for e in default] == [(e.facet, e.scene, e.label) for e in half]


def test_a_vanilla_facet_unit_breaks_only_that_facet_and_counts_as_its_own_unit():
    phases = (("Color Requirement",), ("vanilla:Object(s)",))
    drawn = [curriculum_example(random.Random(f"v{k // 2}"), k, 1, 0.0, CFG, phases=phases, replay_share=0.0)[0]
             for k in range(48)]
    vanilla = [e for e in drawn if e.dimension != "caption"]
    assert vanilla and {e.dimension for e in vanilla} == {"vanilla"}
    assert {e.facet for e in vanilla} == {"vanilla:Object(s)"}  # what the phase's running accuracy counts
    assert {e.source for e in vanilla if e.label == "No"} == {"wrong_shape", "size"}  # BREAKS["Object(s)"]
    assert {e.source for e in vanilla if e.label == "Yes"} <= {"clean", "noise", "blur"}
    assert all(e.question.endswith("Does this video match the prompt? Answer Yes or No.") for e in vanilla)
    # the plain Vanilla unit still draws every semantic edit
    plain = [cd.make_example(sample_scene(s, CFG.num_frames), "vanilla", "No", s, CFG, 10) for s in range(60)]
    assert {e.source for e in plain} == set(cd.SEMANTIC_EDITS)


def test_unit_dimension_names_the_dimension_and_rejects_unknown_units():
    assert unit_dimension("Lighting") == ("ta", "Lighting")
    assert unit_dimension("vanilla:Objects' Motion") == ("vanilla", "Objects' Motion")
    assert unit_dimension("vq") == ("vq", None) and unit_dimension("vanilla") == ("vanilla", None)
    with pytest.raises(ValueError, match="'vanilla:Style'.*'Style' is not a TA facet the world breaks"):
        unit_dimension("vanilla:Style")
    with pytest.raises(ValueError, match="unknown curriculum unit 'colour'"):
        unit_dimension("colour")


def test_a_vanilla_part_unit_asks_about_its_facets_descriptions_alone():
    """``vanilla-part:Environment+Color Requirement``: the prompt is the two descriptions joined by a space; a No
    video breaks one of the two (background / wrong colour), a Yes video is clean, noisy, blurred, or edited where
    both hold (the edits both facets' KEEPS list: motion, position, lighting, size)."""
    unit = "vanilla-part:Environment+Color Requirement"
    phases = (("Color Requirement",), (unit,))
    drawn = [curriculum_example(random.Random(f"vp{k // 2}"), k, 1, 0.0, CFG, phases=phases, replay_share=0.0)[0]
             for k in range(96)]
    part = [e for e in drawn if e.dimension != "caption"]
    assert part and {(e.dimension, e.facet) for e in part} == {("vanilla", unit)}
    assert {e.source for e in part if e.label == "No"} == {"background", "wrong_color"}
    assert {e.source for e in part if e.label == "Yes"} <= {"clean", "noise", "blur", "wrong_motion", "wrong_position",
                                                           "lighting", "size"}
    for e in part:
        facets = facet_dict(e.scene.facets())
        prompt = f"{facets['Environment'].strip()} {facets['Color Requirement'].strip()}"
        assert e.question == vanilla_question(prompt)
        assert e.answer.startswith(f"{e.label}.") and e.decision_chars == [0] and e.eval_char == 0
    one = cd.make_example(sample_scene(5, CFG.num_frames), "vanilla", "Yes", 5, CFG, 10,
                          facet="vanilla-part:Lighting")
    assert one.question == vanilla_question(facet_dict(one.scene.facets())["Lighting"].strip())


def test_vanilla_part_units_name_world_facets():
    assert cd.vanilla_part_facets("vanilla-part:Object(s)+Lighting") == ("Object(s)", "Lighting")
    assert unit_dimension("vanilla-part:Object(s)") == ("vanilla", "vanilla-part:Object(s)")
    with pytest.raises(ValueError, match="'vanilla-part:Lighting\\+Style': expected vanilla-part:<facet>"):
        unit_dimension("vanilla-part:Lighting+Style")
