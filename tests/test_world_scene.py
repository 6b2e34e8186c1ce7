"""The world's scenes, renderer, caption grammar, decomposition, splits, corruptions and `world render`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vidreward.cli import main
from vidreward.critics.queries import FACET_KEYS
from vidreward.video_io import read_video_frames
from vidreward.world.captions import (
    NOT_STATED,
    CaptionParseError,
    decompose,
    facet_dict,
    make_caption,
    parse_caption,
)
from vidreward.world.corrupt import CORRUPTIONS, corrupt
from vidreward.world.motion import bounce_y, scene_has_overlap
from vidreward.world.render import RenderConfig, render
from vidreward.world.scene import SIZES, ObjectSpec, SceneSpec, sample_scene
from vidreward.world.splits import (
    FRESH_SEED_START,
    first_scene_of_split,
    fresh_train_prompts,
    split_of,
    world_prompts,
)


def test_sampling_is_deterministic_and_scenes_are_valid():
    assert sample_scene(7) == sample_scene(7)
    specs = [sample_scene(s) for s in range(200)]
    assert len({s.key() for s in specs}) > 190
    for spec in specs:
        assert spec.is_complete() and 1 <= len(spec.objects) <= 2
        assert len({o.color for o in spec.objects}) == len(spec.objects)
        assert not scene_has_overlap(spec, 9)
    assert {len(s.objects) for s in specs} == {1, 2}
    assert {o.motion for s in specs for o in s.objects} == {"left", "right", "up", "down", "static", "bounce"}
    assert min(SIZES.values()) >= 0.25  # objects at least a quarter of the frame


def test_render_hand_computed_square():
    # large square (side 0.4 * 64 = 25.6 px) centred at (32, 32): pixel centres 19.5..44.5 -> 26 x 26 pixels
    spec = SceneSpec(objects=(ObjectSpec("square", "red", "large", 1, 1, "static"),), background="black",
                     lighting="bright")
    video = render(spec)
    assert video.shape == (9, 3, 64, 64) and video.dtype == torch.float32
    red = torch.tensor([0.90, 0.12, 0.12])
    is_red = (video[0].permute(1, 2, 0) - red).abs().max(-1).values < 1e-6
    assert is_red.sum() == 26 * 26 and is_red[19:45, 19:45].all()
    assert torch.allclose(video[:, :, 0, 0], torch.tensor([0.05, 0.05, 0.05]).expand(9, 3))
    dim = render(SceneSpec(spec.objects, "black", "dim"))
    assert torch.allclose(dim, video * 0.5)


def test_render_rejects_bad_frame_counts_and_incomplete_specs():
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        RenderConfig(num_frames=8)
    with pytest.raises(ValueError, match="incomplete"):
        render(SceneSpec(objects=(ObjectSpec("circle", "red"),)))


def test_bounce_trajectory_hand_computed():
    # y0 = 10, floor 50, 9 frames: impact at k = 4, g = 2 * 40 / 16 = 5, rebound speed 0.7 * 5 * 4 = 14
    y = bounce_y(10.0, 50.0, 9)
    assert y[0] == 10 and y[2] == pytest.approx(10 + 0.5 * 5 * 4) and y[4] == pytest.approx(50)
    assert y[6] == pytest.approx(50 - 14 * 2 + 0.5 * 5 * 4)  # 32
    assert y[8] == pytest.approx(50 - 14 * 4 + 0.5 * 5 * 16)  # 34


def test_caption_round_trip_spec_caption_facets():
    for seed in range(300):
        spec = sample_scene(seed)
        for style in range(3):
            caption = make_caption(spec, style)
            assert parse_caption(caption) == spec.facets(), caption
            assert decompose(caption) == facet_dict(spec.facets())


def test_decomposition_of_a_hand_written_caption():
    caption = ("A small red circle starts in the top left and moves to the right, while a large blue triangle "
               "at the bottom right stays still. The background is white and the scene is dimly lit.")
    assert decompose(caption) == {
        "Environment": "A plain white background.",
        "Object(s)": "1). A small circle. 2). A large triangle.",
        "Objects' Motion": "1). The red circle moves to the right. 2). The blue triangle stays still.",
        "Object Location / Spatial Distribution":
            "1). The red circle starts in the top left. 2). The blue triangle starts in the bottom right.",
        "Color Requirement": "1). The circle is red. 2). The triangle is blue.",
        "Lighting": "Dim lighting.",
        "Letter/Text Presence": NOT_STATED,
        "Camera Motion": NOT_STATED,
    }
    assert tuple(decompose(caption)) == FACET_KEYS


def test_partial_caption_leaves_facets_unstated():
    facets = parse_caption("A green square falls and bounces on the floor.")
    assert facets == SceneSpec(objects=(ObjectSpec("square", "green", None, None, None, "bounce"),))
    d = decompose("A green square falls and bounces on the floor.")
    assert d["Environment"] == d["Lighting"] == d["Object Location / Spatial Distribution"] == NOT_STATED
    assert d["Objects' Motion"] == "The green square falls and bounces on the floor."
    with pytest.raises(CaptionParseError, match="names no world object"):
        parse_caption("A cat sleeps on a sofa.")


def test_splits_are_deterministic_and_disjoint():
    train = world_prompts("train", 60)
    heldout = world_prompts("heldout", 20)
    assert [p.caption for p in heldout] == [p.caption for p in world_prompts("heldout", 20)]
    assert {p.spec.facets().key() for p in train}.isdisjoint({p.spec.facets().key() for p in heldout})
    assert all(split_of(p.spec) == "heldout" for p in heldout)
    share = np.mean([split_of(sample_scene(s)) == "heldout" for s in range(1000)])
    assert 0.06 < share < 0.14


def test_first_scene_of_split_is_the_split_s_next_listed_prompt():
    heldout = world_prompts("heldout", 3)
    assert first_scene_of_split(0, "heldout") == (heldout[0].seed, heldout[0].spec)
    assert first_scene_of_split(heldout[0].seed + 1, "heldout") == (heldout[1].seed, heldout[1].spec)
    seed, spec = first_scene_of_split(heldout[1].seed, "train", num_frames=5)
    assert seed > heldout[1].seed and split_of(spec) == "train" and spec == sample_scene(seed, num_frames=5)


def test_fresh_train_prompts_are_train_scenes_of_the_generator_s_draws():
    fresh = fresh_train_prompts(np.random.default_rng([3, 7]), 150, num_frames=5)
    again = fresh_train_prompts(np.random.default_rng([3, 7]), 150, num_frames=5)
    assert [p.seed for p in fresh] == [p.seed for p in again] and len(fresh) == 150
    other = fresh_train_prompts(np.random.default_rng([3, 8]), 150, num_frames=5)
    assert {p.seed for p in fresh}.isdisjoint({p.seed for p in other})
    # the generator's raw draws, held-out scenes among them, are kept in order with the held-out ones rejected
    rng = np.random.default_rng([3, 7])
    draws = [int(rng.integers(FRESH_SEED_START, 2**31)) for _ in range(200)]
    kept = [s for s in draws if split_of(sample_scene(s, num_frames=5)) == "train"]
    assert len(kept) < len(draws) and [p.seed for p in fresh] == kept[:150]
    assert all(p.spec == sample_scene(p.seed, num_frames=5) and p.caption for p in fresh)
    heldout_keys = {p.spec.facets().key() for p in world_prompts("heldout", 200, num_frames=5)}
    assert heldout_keys.isdisjoint({p.spec.facets().key() for p in fresh})


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corruptions_change_the_video_deterministically(kind):
    spec = sample_scene(3)
    clean = render(spec)
    bad = corrupt(spec, kind, seed=5)
    assert bad.shape == clean.shape and bad.min() >= 0 and bad.max() <= 1
    assert (bad - clean).abs().max() > 0.05
    assert torch.equal(bad, corrupt(spec, kind, seed=5))


def test_world_render_command_writes_videos_captions_and_grid(tmp_path):
    code = main(["world", "render", "--out", str(tmp_path), "--count", "4", "--frames", "9", "--grid", "4"])
    assert code == 0
    records = [json.loads(line) for line in (tmp_path / "captions.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["oracle"]["overall"] == 1.0 for r in records)
    assert read_video_frames(tmp_path / "0000.gif").shape == (9, 3, 64, 64)
    grid = read_video_frames(tmp_path / "grid.gif")
    assert grid.shape[0] == 9 and grid.shape[2] == 2 * (64 * 2 + 2) + 2
