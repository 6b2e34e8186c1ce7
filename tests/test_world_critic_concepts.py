"""Per-token concepts of critic examples: the scene a video really draws, and what each token shows."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vidreward.world import critic_data as cd
from vidreward.world.corrupt import corrupt
from vidreward.world.critic_concepts import (
    AT_PATCH_START,
    MOTION_PREFIX,
    UNSEEN_DEFECT,
    example_concepts,
    flicker_frames,
    size_concepts,
    token_concepts,
    track_motion,
    video_scene,
)
from vidreward.world.motion import scene_tracks
from vidreward.world.render import RenderConfig, render_tracks
from vidreward.world.scene import ObjectSpec, SceneSpec, sample_scene

CFG = RenderConfig()
SOURCES = ("clean", "background", "lighting", "size", "wrong_color", "wrong_shape", "wrong_motion", "wrong_position",
           "deformation", "teleport", "interpenetration")


@pytest.mark.parametrize("source", SOURCES)
def test_video_scene_draws_exactly_the_example_video(source):
    for seed in range(12):
        spec = sample_scene(seed)
        scene, tracks = video_scene(spec, source, seed, CFG)
        drawn = render_tracks(tracks, scene.background, scene.lighting, CFG.height, CFG.width, CFG.num_frames)
        assert torch.equal(drawn, cd.make_video(spec, source, seed, CFG)), (seed, source)


def _one_object_scene(**changes) -> SceneSpec:
    obj = ObjectSpec(shape="square", color="red", size="large", row=0, col=0, motion="static", jitter=(0.0, 0.0))
    return SceneSpec(background="black", lighting="bright", objects=(dataclasses.replace(obj, **changes),))


def test_static_square_in_the_top_left_cell_by_hand():
    spec = _one_object_scene()
    concepts = token_concepts(spec, scene_tracks(spec, 9, 64, 64), "clean", 4, CFG)
    assert len(concepts) == 2 * 9  # 2 temporal patches x 3 x 3 tokens
    scene_words = {"black", "bright"}
    obj = scene_words | {"red", "square", "large"}
    # the 0.40 * 64 = 25.6 px square centred at (16, 16) spans [3.2, 28.8]^2; token regions are [0, 21), [21, 43),
    # [43, 64) px. Cover of token (0, 0): 17.8^2 / 21^2 = 0.72; (0, 1) and (1, 0): 7.8 * 17.8 / (22 * 21) = 0.30;
    # (1, 1): 7.8^2 / 22^2 = 0.126 -- all >= COVER = 0.12; the other five tokens see background only
    for t in range(2):
        assert concepts[9 * t:9 * (t + 1)] == [obj, obj, scene_words, obj, obj, scene_words, scene_words,
                                               scene_words, scene_words]


def test_measured_size_words():
    track = scene_tracks(_one_object_scene(size="small"), 9, 64, 64)[0]
    assert size_concepts(track, 0, CFG) == {"small"}
    track.width[:] = 0.40 * 64 * 1.5
    track.height[:] = 0.40 * 64 / 1.5
    assert size_concepts(track, 0, CFG) == {"large", "stretched"}  # area kept, aspect 2.25
    track.width[:] = track.height[:] = 0.15 * 64
    assert size_concepts(track, 0, CFG) == {"tiny"}


def test_pixel_defects_mark_their_tokens():
    spec = sample_scene(7)
    noisy = token_concepts(spec, scene_tracks(spec, 9, 64, 64), "noise", 10, CFG)
    assert all("noise" in tok for tok in noisy)
    video = corrupt(spec, "flicker", seed=3, config=CFG)
    shifted = flicker_frames(video, spec, CFG)
    assert 1 <= len(shifted) <= 3
    flick = token_concepts(spec, scene_tracks(spec, 9, 64, 64), "flicker", 10, CFG, shifted)
    marked = {i // 9 for i, tok in enumerate(flick) if "flicker" in tok}
    assert marked and all(all("flicker" in flick[9 * t + k] for k in range(9)) for t in marked)


def test_example_concepts_cover_video_and_reference():
    ex = cd.make_example(sample_scene(11), "phy", "Yes", 11, CFG, 10)
    video, reference = example_concepts(ex, 10, CFG)
    assert len(video) == len(reference) == 5 * 9
    assert all({ex.scene.background, ex.scene.lighting} <= tok for tok in reference)
    with pytest.raises(ValueError, match="even"):
        example_concepts(ex, 9, CFG)



def test_visible_flicker_only_on_patches_whose_two_frames_differ_in_shift():
    spec = sample_scene(7)
    tracks = scene_tracks(spec, 9, 64, 64)  # 4 of 9 frames are [0, 3, 5, 8]: patches (0, 3) and (5, 8)
    cases = {frozenset({3, 5}): ("flicker", "flicker"),  # one shifted frame in each patch
             frozenset({5, 8}): (None, UNSEEN_DEFECT),  # patch 2 is two shifted frames: a brighter clean patch
             frozenset({0, 3, 8}): (UNSEEN_DEFECT, "flicker")}
    for shifted, marks in cases.items():
        tokens = token_concepts(spec, tracks, "flicker", 4, CFG, set(shifted), visible_defects=True)
        shipped = token_concepts(spec, tracks, "flicker", 4, CFG, set(shifted))
        for t, mark in enumerate(marks):
            for tok, old in zip(tokens[9 * t:9 * t + 9], shipped[9 * t:9 * t + 9]):
                assert tok & {"flicker", UNSEEN_DEFECT} == ({mark} if mark else set()), (shifted, t)
                assert ("flicker" in old) == (mark is not None), (shifted, t)  # shipped: any shifted frame
                assert tok - {"flicker", UNSEEN_DEFECT} == old - {"flicker"}


@pytest.mark.parametrize("n_frames", [10, 4])
def test_a_ten_frame_patch_carries_the_union_of_its_two_frame_patches(n_frames):
    """With 10 frames per temporal patch the whole subsample (padded with its last frame) is one patch, so each token
    carries what the same region shows in any of the frames: the union of its 2-frame patches' concepts."""
    for seed in range(8):
        for source in ("clean", "deformation", "teleport", "noise"):
            scene, tracks = video_scene(sample_scene(seed), source, seed, CFG)
            pairs = token_concepts(scene, tracks, source, n_frames, CFG)
            whole = token_concepts(scene, tracks, source, n_frames, CFG, temporal_patch=10)
            assert len(whole) == 9
            for k in range(9):
                assert whole[k] == set().union(*pairs[k::9]), (seed, source, k)


def test_visible_flicker_in_a_ten_frame_patch_needs_shifted_and_unshifted_frames():
    spec = sample_scene(7)
    tracks = scene_tracks(spec, 9, 64, 64)
    for shifted, mark in ((set(), None), ({4}, "flicker"), (set(range(9)), UNSEEN_DEFECT)):
        tokens = token_concepts(spec, tracks, "flicker", 10, CFG, shifted, visible_defects=True, temporal_patch=10)
        assert all(tok & {"flicker", UNSEEN_DEFECT} == ({mark} if mark else set()) for tok in tokens), shifted


def test_measured_motion_is_the_scene_motion_and_labels_the_object_tokens():
    for seed in range(200):
        spec = sample_scene(seed)
        for obj, track in zip(spec.objects, scene_tracks(spec, CFG.num_frames, CFG.height, CFG.width)):
            assert track_motion(track, CFG) == obj.motion, (seed, obj)
    spec = _one_object_scene(motion="down")  # top-left cell, moving down: tokens (0,0), (0,1), (1,0), (1,1)
    tokens = token_concepts(spec, scene_tracks(spec, 9, 64, 64), "clean", 10, CFG, temporal_patch=10, motions=True)
    marked = [k for k, tok in enumerate(tokens) if MOTION_PREFIX + "down" in tok]
    assert marked == [k for k, tok in enumerate(tokens) if "square" in tok] and {0, 1, 3, 4} <= set(marked)
    assert [k for k, tok in enumerate(tokens) if AT_PATCH_START in tok] == [0, 1, 3, 4]  # it starts there
    spec = _one_object_scene(motion="bounce")  # falls from the top-left cell to the floor: the start is the top
    tokens = token_concepts(spec, scene_tracks(spec, 9, 64, 64), "clean", 10, CFG, temporal_patch=10, motions=True)
    assert [k for k, tok in enumerate(tokens) if AT_PATCH_START in tok] == [0, 1, 3, 4]
    assert [k for k, tok in enumerate(tokens) if MOTION_PREFIX + "bounce" in tok] == [0, 1, 3, 4, 6, 7]
    assert not any(w.startswith(MOTION_PREFIX) for tok in token_concepts(spec, scene_tracks(spec, 9, 64, 64),
                                                                         "clean", 10, CFG) for w in tok)
    jumped = scene_tracks(_one_object_scene(), 9, 64, 64)[0]  # a static object that jumps 0.3 of the frame right
    jumped.cx[5:] += 0.3 * 64
    assert track_motion(jumped, CFG) == "right"
