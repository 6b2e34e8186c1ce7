"""What a world video shows, per merged visual token of the critic: the concept sets its tokens should carry.

A video of a critic example is ``make_video(scene, source, seed)``; :func:`video_scene` gives the scene and the
trajectories it really draws (an edit's or a corruption's, not the caption's), so the concepts below describe the
pixels, by construction (the oracle is never asked). Token geometry is the critic's: N_f frames in temporal patches
of T frames (Qwen2.5-VL's 2 by default; ``temporal_patch``), each a 3 x 3 grid of merged tokens (84 x 84 px
frames, patch 14, merge 2 x 2), in the processor's (t, row, col) order. A token's concepts:

- every token: the background colour and the lighting word; ``noise`` / ``blur`` for those pixel corruptions;
  ``flicker`` on the tokens of a temporal patch that holds a brightness-shifted frame. With ``visible_defects`` a
  defect is named only where the token's pixels can show it, and the other tokens of the defective video carry
  :data:`UNSEEN_DEFECT` instead (the quality words are not scored there): ``blur`` on tokens whose region holds an
  object edge in any frame of the patch (a flat region is the same blurred or not), ``flicker`` on tokens of a
  patch whose frames differ in shift (a patch of only shifted frames looks like a clean patch of a brighter
  scene: the vision tower sees one patch at a time);
- an object covering >= ``COVER`` of the token's region in any frame of the patch adds its colour, its shape
  in those frames and its measured size: ``small`` / ``large`` by the side sqrt(w h) of its box against the
  world's sizes, ``tiny`` below ``TINY`` of the frame, and ``stretched`` when the box's aspect ratio leaves
  [1 / ``ASPECT``, ``ASPECT``] (the deformations of :mod:`corrupt`).

With ``occlude`` an object's tokens carry only the object's words (and the frame-wide defects): the background and
lighting words are dropped where an object covers the token, so an object token is a sparse, distinct code rather
than the object's words drowned in the scene's (scripts/experiments/critic_concept_lm.py ``--occlude``: Environment /
Lighting / Colour 1.0 / 1.0 / 0.92 from ideal occluding tokens, against 1.0 / 1.0 / 0.75 without).

Positions are not concepts: the language model reads them from the tokens' M-RoPE positions.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vidreward.video_io import uniform_indices
from vidreward.world.corrupt import corrupted_scene
from vidreward.world.critic_data import EDITS, CriticExample, edited_scene
from vidreward.world.motion import Track, scene_tracks
from vidreward.world.render import RenderConfig, render, shape_masks
from vidreward.world.scene import SIZES, SceneSpec

#: share of a token's region an object must cover (in any frame of the temporal patch) to be "in" it
COVER = 0.12
#: merged tokens per side of a frame (84 px / patch 14 / merge 2)
MERGED_GRID = 3

#: side (fraction of the frame) below which an object is ``tiny`` (a shrinking deformation)
TINY = 0.22
#: box aspect ratio beyond which an object is ``stretched``
ASPECT = 1.3
#: brightness change (mean over a frame, [0, 1] units) that marks a flicker-shifted frame
FLICKER_SHIFT = 0.05
#: concepts that are not words of the world's captions
EXTRA_CONCEPTS: tuple[str, ...] = ("tiny", "stretched", "noise", "blur", "flicker")
#: marker of a token of a defective video whose own pixels cannot show the defect (``visible_defects``)
UNSEEN_DEFECT = "unseen-defect"
#: an object covering more than this and less than 1 - this of a region draws an edge in it
EDGE_COVER = 0.01
#: prefix of the motion label an object's tokens carry with ``motions`` (``motion:left``)
MOTION_PREFIX = "motion:"
#: with ``motions``: marks a token an object covers in the first frame of its temporal patch (where it starts)
AT_PATCH_START = "at-patch-start"


def region_cover(masks: np.ndarray) -> np.ndarray:
    """Per-frame coverage of each merged-token region: ``[F, H, W]`` bool -> ``[F, 3, 3]`` float."""
    f, h, w = masks.shape
    rows = np.linspace(0, h, MERGED_GRID + 1).round().astype(int)
    cols = np.linspace(0, w, MERGED_GRID + 1).round().astype(int)
    out = np.zeros((f, MERGED_GRID, MERGED_GRID))
    for r in range(MERGED_GRID):
        for c in range(MERGED_GRID):
            out[:, r, c] = masks[:, rows[r]:rows[r + 1], cols[c]:cols[c + 1]].mean(axis=(1, 2))
    return out


def subsample_covers(tracks: list[Track], n_frames: int, cfg: RenderConfig) -> tuple[np.ndarray, list[np.ndarray]]:
    """The ``n_frames`` subsampled frame indices ``[N_f]`` and, per track, its region cover there ``[N_f, 3, 3]``."""
    idx = uniform_indices(cfg.num_frames, n_frames)
    return idx, [region_cover(shape_masks(t, cfg.height, cfg.width))[idx] for t in tracks]


def video_scene(spec: SceneSpec, source: str, seed: int, cfg: RenderConfig) -> tuple[SceneSpec, list[Track]]:
    """(scene, trajectories) that ``critic_data.make_video(spec, source, seed, cfg)`` draws."""
    if source in ("clean", *EDITS):
        scene = spec if source == "clean" else edited_scene(spec, source, seed)
        return scene, scene_tracks(scene, cfg.num_frames, cfg.height, cfg.width)
    return corrupted_scene(spec, source, seed, cfg)  # a pixel corruption draws the clean scene


def size_concepts(track: Track, frame: int, cfg: RenderConfig) -> set[str]:
    """Measured size words of ``track`` in ``frame`` (see module docstring)."""
    w, h = float(track.width[frame]), float(track.height[frame])
    side = math.sqrt(w * h) / min(cfg.height, cfg.width)
    out = set()
    if side < TINY:
        out.add("tiny")
    else:
        out.add(min(SIZES, key=lambda s: abs(SIZES[s] - side)))
    if not 1 / ASPECT <= w / h <= ASPECT:
        out.add("stretched")
    return out


def token_concepts(scene: SceneSpec, tracks: list[Track], source: str, n_frames: int, cfg: RenderConfig,
                   shifted_frames: set[int] = frozenset(), occlude: bool = False,
                   visible_defects: bool = False, temporal_patch: int = 2, motions: bool = False) -> list[set[str]]:
    """Concepts of every merged token of the ``n_frames``-frame subsample, in (t, row, col) order (``occlude``,
    ``visible_defects``: see the module doc). ``temporal_patch``: frames per temporal patch (the subsample is padded
    with its last frame to a multiple of it, as the processor pads). ``motions``: an object's tokens also carry
    ``MOTION_PREFIX + track_motion(track)``, and :data:`AT_PATCH_START` where the object covers the token in the
    patch's first frame (labels for the heads of :mod:`critic_heads`, not words)."""
    if n_frames % 2 and temporal_patch == 2:
        raise ValueError(f"n_frames={n_frames}: Qwen2.5-VL packs frames in temporal patches of 2; use an even count")
    idx, covers = subsample_covers(tracks, n_frames, cfg)  # [N_f], [N_f, 3, 3] each
    pad = -n_frames % temporal_patch  # the processor repeats the last frame up to a multiple of the patch
    idx = np.concatenate([idx, np.repeat(idx[-1:], pad)])
    covers = [np.concatenate([c, np.repeat(c[-1:], pad, axis=0)]) for c in covers]
    moves = [track_motion(t, cfg) for t in tracks] if motions else []
    shared = {scene.background, scene.lighting} | ({source} if source in ("noise", "blur") else set())
    if visible_defects and source == "blur":
        shared -= {"blur"}
    out = []
    tp = temporal_patch
    for t in range(len(idx) // tp):
        frames = tuple(int(f) for f in idx[tp * t:tp * (t + 1)])
        group = set(shared)
        hit = shifted_frames & set(frames)
        if visible_defects and source == "flicker":
            seen = 0 < len(hit) < len(set(frames))  # the patch holds a shifted and an unshifted frame
            group |= {"flicker"} if seen else ({UNSEEN_DEFECT} if hit else set())
        elif hit:
            group.add("flicker")
        for r in range(MERGED_GRID):
            for c in range(MERGED_GRID):
                objects: set[str] = set()
                edge = False
                for j, (track, cov) in enumerate(zip(tracks, covers)):
                    inside = False
                    for k, f in enumerate(frames):
                        if cov[tp * t + k, r, c] >= COVER:
                            inside = True
                            objects |= {track.color, track.shapes[f]} | size_concepts(track, f, cfg)
                        edge = edge or EDGE_COVER < cov[tp * t + k, r, c] < 1 - EDGE_COVER
                    if inside and moves:
                        objects.add(MOTION_PREFIX + moves[j])
                        if cov[tp * t, r, c] >= COVER:
                            objects.add(AT_PATCH_START)
                scene_words = group - {scene.background, scene.lighting} if occlude and objects else set(group)
                if visible_defects and source == "blur":
                    scene_words.add("blur" if edge else UNSEEN_DEFECT)
                out.append(scene_words | objects)
    return out


def track_motion(track: Track, cfg: RenderConfig, still_px: float = 1.0) -> str:
    """The motion (a key of :data:`scene.MOTIONS`) a trajectory draws, measured from its centres over the full clip:
    ``bounce`` when the centre sinks below both its start and its end by more than ``still_px``; ``static`` when it
    ends within ``still_px`` of its start on both axes; otherwise the direction of the larger displacement (image y
    points down). A teleport's jump counts as displacement."""
    dx, dy = float(track.cx[-1] - track.cx[0]), float(track.cy[-1] - track.cy[0])
    lowest = float(track.cy.max())
    if lowest - track.cy[0] > still_px and lowest - track.cy[-1] > still_px:
        return "bounce"
    if max(abs(dx), abs(dy)) <= still_px:
        return "static"
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def flicker_frames(video: torch.Tensor, scene: SceneSpec, cfg: RenderConfig) -> set[int]:
    """Frames of ``video [F, 3, H, W]`` whose mean brightness differs from the clean render of ``scene``."""
    diff = (video - render(scene, cfg)).mean(dim=(1, 2, 3)).abs()  # [F]
    return {int(f) for f in np.nonzero(diff.numpy() > FLICKER_SHIFT)[0]}


def example_concepts(ex: CriticExample, n_frames: int, cfg: RenderConfig, occlude: bool = False
                     ) -> list[list[set[str]]]:
    """Per video of ``ex`` (the video, then the reference if any): its tokens' concept sets (``occlude``: module doc)."""
    if ex.scene is None:
        raise ValueError("the example has no scene; build it with critic_data.make_example")
    scene, tracks = video_scene(ex.scene, ex.source, ex.seed, cfg)
    shifted = flicker_frames(ex.video, scene, cfg) if ex.source == "flicker" else set()
    out = [token_concepts(scene, tracks, ex.source, n_frames, cfg, shifted, occlude)]
    if ex.reference_scene is not None:
        ref_tracks = scene_tracks(ex.reference_scene, cfg.num_frames, cfg.height, cfg.width)
        out.append(token_concepts(ex.reference_scene, ref_tracks, "clean", n_frames, cfg, occlude=occlude))
    return out
