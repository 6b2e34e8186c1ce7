"""Corrupted renders of a scene, for negatives: the caption stays the clean spec's, the video breaks one thing.

``corrupt(spec, kind, seed)`` renders ``spec`` with one corruption of :data:`CORRUPTIONS`:
- prompt-alignment errors (re-render an edited spec): ``wrong_color``, ``wrong_shape``, ``wrong_motion``,
  ``wrong_position`` (one object; edits that keep objects apart are preferred);
- physics errors (edit a trajectory): ``deformation`` (stretch, shrink or a shape morph mid-clip),
  ``teleport`` (a jump of 0.3 of the frame at a frame in the middle third), ``interpenetration`` (an object
  passes through another one, which is added when the scene has a single object);
- visual-quality errors (edit the pixels): ``noise`` (Gaussian, sigma 0.08), ``blur`` (Gaussian, sigma 1.5 px),
  ``flicker`` (a third of the frames shifted by +-0.2).
:data:`TARGETS` names the oracle score each corruption must lower.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import torch

from vidreward.world.motion import scene_has_overlap, scene_tracks
from vidreward.world.render import RenderConfig, render, render_tracks
from vidreward.world.scene import OBJECT_COLORS, SHAPES, SIZES, SceneSpec, valid_motions

#: corruption -> (score group, facet or check) it must lower
TARGETS: dict[str, tuple[str, str]] = {
    "wrong_color": ("ta", "Color Requirement"),
    "wrong_shape": ("ta", "Object(s)"),
    "wrong_motion": ("ta", "Objects' Motion"),
    "wrong_position": ("ta", "Object Location / Spatial Distribution"),
    "deformation": ("phy", "deformation"),
    "teleport": ("phy", "motion"),
    "interpenetration": ("phy", "interpenetration"),
    "noise": ("vq", "noise"),
    "blur": ("vq", "blur"),
    "flicker": ("vq", "flicker"),
}
CORRUPTIONS: tuple[str, ...] = tuple(TARGETS)
#: corruptions that edit the pixels of a clean render (the others re-render an edited scene)
PIXEL_CORRUPTIONS: tuple[str, ...] = ("noise", "blur", "flicker")


def _edit_object(spec: SceneSpec, i: int, **changes) -> SceneSpec:
    objects = list(spec.objects)
    objects[i] = dataclasses.replace(objects[i], **changes)
    return dataclasses.replace(spec, objects=tuple(objects))


def _pick_edit(spec: SceneSpec, i: int, options: list[dict], rng: random.Random, num_frames: int) -> SceneSpec:
    """A random edit of object ``i`` among ``options``, preferring edits that keep the objects apart."""
    rng.shuffle(options)
    edits = [_edit_object(spec, i, **o) for o in options]
    clean = [e for e in edits if not scene_has_overlap(e, num_frames)]
    return (clean or edits)[0]


def _edited_spec(spec: SceneSpec, kind: str, rng: random.Random, num_frames: int) -> SceneSpec:
    i = rng.randrange(len(spec.objects))
    obj = spec.objects[i]
    if kind == "wrong_color":
        used = {o.color for o in spec.objects}
        return _edit_object(spec, i, color=rng.choice([c for c in OBJECT_COLORS if c not in used]))
    if kind == "wrong_shape":
        return _edit_object(spec, i, shape=rng.choice([s for s in SHAPES if s != obj.shape]))
    if kind == "wrong_motion":
        options = [{"motion": m} for m in valid_motions(obj.row, obj.col) if m != obj.motion]
        return _pick_edit(spec, i, options, rng, num_frames)
    options = [{"row": r, "col": c} for r in range(3) for c in range(3)
               if (r, c) != (obj.row, obj.col) and obj.motion in valid_motions(r, c)]
    return _pick_edit(spec, i, options, rng, num_frames)


def _deform(track, rng: random.Random, num_frames: int) -> None:
    ramp_up = np.linspace(0.0, 1.0, num_frames)
    variant = rng.choice(("stretch", "shrink", "morph"))
    if variant == "stretch":
        track.width *= 1 + 0.7 * ramp_up
        track.height *= 1 - 0.35 * ramp_up
    elif variant == "shrink":
        track.width *= 1 - 0.45 * ramp_up
        track.height *= 1 - 0.45 * ramp_up
    else:
        new = rng.choice([s for s in SHAPES if s != track.shapes[0]])
        track.shapes[num_frames // 2:] = [new] * (num_frames - num_frames // 2)


def _teleport(track, rng: random.Random, cfg: RenderConfig, vertical_ok: bool) -> None:
    k = rng.randint(cfg.num_frames // 3, (2 * cfg.num_frames) // 3)
    jump = 0.3 * min(cfg.height, cfg.width)
    angles = [0, 180] + ([45, 90, 135, 225, 270, 315] if vertical_ok else [])
    rng.shuffle(angles)
    for angle in angles:
        dx, dy = jump * np.cos(np.radians(angle)), jump * np.sin(np.radians(angle))
        x, y = track.cx[k:] + dx, track.cy[k:] + dy
        half_w, half_h = track.width[k:] / 2, track.height[k:] / 2
        if (x - half_w >= 0).all() and (x + half_w <= cfg.width).all() and (y - half_h >= 0).all() \
                and (y + half_h <= cfg.height).all():
            track.cx[k:], track.cy[k:] = x, y
            return
    raise RuntimeError("no teleport target keeps the object inside the frame")


def _interpenetrate(spec: SceneSpec, rng: random.Random, cfg: RenderConfig):
    """Tracks where a moving object passes through another (drawn below it, so it is partly occluded)."""
    movers = [i for i, o in enumerate(spec.objects) if o.motion != "static"]
    if movers:
        a = rng.choice(movers)
    else:
        a = 0
        obj = spec.objects[0]
        spec = _edit_object(spec, 0, motion=rng.choice([m for m in valid_motions(obj.row, obj.col) if m != "static"]))
    if len(spec.objects) == 1:
        extra = dataclasses.replace(spec.objects[0], color=rng.choice([c for c in OBJECT_COLORS
                                                                       if c != spec.objects[0].color]),
                                    shape=rng.choice(SHAPES), size=rng.choice(tuple(SIZES)), motion="static")
        spec = dataclasses.replace(spec, objects=spec.objects + (extra,))
    tracks = scene_tracks(spec, cfg.num_frames, cfg.height, cfg.width)
    mover, other = tracks[a], tracks[1 - a]
    contact = (mover.width[0] + other.width[0]) / 2  # centre distance at which the boxes touch
    if spec.objects[a].motion == "bounce":  # it lands on the other object
        t, ux, uy = cfg.num_frames // 2, rng.choice((-1.0, 1.0)), 0.0
    else:  # it runs into the other object and ends deep inside it
        t = cfg.num_frames - 1
        dx, dy = mover.cx[-1] - mover.cx[0], mover.cy[-1] - mover.cy[0]
        ux, uy = dx / np.hypot(dx, dy), dy / np.hypot(dx, dy)
    other.cx[:] = mover.cx[t] + 0.4 * contact * ux
    other.cy[:] = mover.cy[t] + 0.4 * contact * uy
    return spec, [other, mover]


def _rng(kind: str, seed: int) -> random.Random:
    return random.Random(f"vidreward-world-corrupt-{kind}-{seed}")


def corrupted_scene(spec: SceneSpec, kind: str, seed: int = 0, config: RenderConfig | None = None):
    """(spec, tracks) drawn by ``corrupt(spec, kind, seed, config)``: the edited spec / trajectories of a
    prompt-alignment or physics corruption, the clean ones for a pixel corruption (noise, blur, flicker)."""
    if kind not in TARGETS:
        raise ValueError(f"unknown corruption {kind!r}; choose one of {', '.join(CORRUPTIONS)}")
    cfg = config or RenderConfig()
    rng = _rng(kind, seed)
    if kind.startswith("wrong_"):
        spec = _edited_spec(spec, kind, rng, cfg.num_frames)
    tracks = scene_tracks(spec, cfg.num_frames, cfg.height, cfg.width)
    if kind in ("deformation", "teleport", "interpenetration"):
        i = rng.randrange(len(tracks))
        if kind == "deformation":
            _deform(tracks[i], rng, cfg.num_frames)
        elif kind == "teleport":
            _teleport(tracks[i], rng, cfg, vertical_ok=spec.objects[i].motion != "bounce")
        else:
            spec, tracks = _interpenetrate(spec, rng, cfg)
    return spec, tracks


def corrupt(spec: SceneSpec, kind: str, seed: int = 0, config: RenderConfig | None = None) -> torch.Tensor:
    """Render ``spec`` with corruption ``kind`` -> float ``[F, 3, H, W]`` in [0, 1] (deterministic in seed)."""
    cfg = config or RenderConfig()
    edited, tracks = corrupted_scene(spec, kind, seed, cfg)  # validates kind
    if kind not in PIXEL_CORRUPTIONS:
        return render_tracks(tracks, edited.background, edited.lighting, cfg.height, cfg.width, cfg.num_frames)
    rng = _rng(kind, seed)
    video = render(spec, cfg)  # [F, 3, H, W]
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    if kind == "noise":
        return (video + 0.08 * torch.randn(video.shape, generator=gen)).clamp(0, 1)
    if kind == "blur":
        return gaussian_blur(video, sigma=1.5)
    chosen = rng.sample(range(cfg.num_frames), k=max(1, cfg.num_frames // 3))
    shift = torch.zeros(cfg.num_frames, 1, 1, 1)
    level = float(video.median())  # the background level
    for f in chosen:
        sign = rng.choice((-1.0, 1.0))
        if not 0.2 <= level + 0.2 * sign <= 1.0:
            sign = -sign  # shift away from the clipped end, so the flicker is really there
        shift[f] = 0.2 * sign
    return (video + shift).clamp(0, 1)


def gaussian_blur(video: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[F, 3, H, W]`` with reflect padding (radius ceil(3 sigma))."""
    radius = int(np.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=video.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = video.shape[1]
    out = torch.nn.functional.pad(video, (radius, radius, radius, radius), mode="reflect")
    out = torch.nn.functional.conv2d(out, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return torch.nn.functional.conv2d(out, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)

