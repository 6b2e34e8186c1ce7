"""The HALO teacher for patch labels (Sec. 3.2, Appendix C Fig. 9): instruction text, score parser, normalisation.

The teacher (GPT-4o in the paper) sees the Fig. 9 instruction, the text prompt, frames of the whole video, the
frames of one patch and the patch's ``(row, col)``, and answers five scores from 0 to 10 as JSON. The scores
are mapped linearly to VideoScore's 1-4 range: ``s' = 1 + 3 * s / 10`` (the paper only says "normalized to a
scale of 1 to 4"; the linear map sends 0 -> 1 and 10 -> 4 and keeps the order and spacing).

The instruction is verbatim from Fig. 9, including its typos (the unterminated quotes in the output example),
so that labels are produced by the paper's prompt. For a grid other than 3x3 only the grid sentence changes.
"""

from __future__ import annotations

import re

from vidreward.annotate.parsing import parse_mapping

DIMENSIONS: tuple[str, ...] = (
    "visual quality",
    "temporal consistency",
    "dynamic degree",
    "text-to-video alignment",
    "factual consistency",
)
"""VideoScore's five evaluation dimensions, in the order of the reward heads (Eq. 5 averages them)."""

TEACHER_SCORE_RANGE = (0.0, 10.0)
"""The Fig. 9 answer range."""
VIDEOSCORE_RANGE = (1.0, 4.0)
"""VideoScore's label range, the target of :func:`normalize_teacher_score`."""

_FIG9_TEMPLATE = """## Background

Suppose you are an expert in judging and evaluating the quality of AI-generated videos. For a generated video, we divide {num_patches} video patches along the height and width of the video according to a {rows}*{cols} grid. I will provide you with the text prompt, the generated video, one of its video patches, and the coordinate of the video patch (the coordinate of the left-upper patch is (0,0), the first number means the index of rows, and the second number means the index of columns). Please watch the following frames of a given video and one of its split patches, and see the text prompt for generating the video. Then, you should give patch-level fine-grained scores for this video patch to represent the generation quality of this video patch. The evaluation of the video patch's quality should cover the following dimensions:

```
{{
  "visual quality": "the quality of the video in terms of clearness, resolution, brightness, and color.",
  "temporal consistency": "the consistency of objects or humans in video.",
  "dynamic degree": "the degree of dynamic changes.",
  "text-to-video alignment": "the alignment between the text prompt and the video content.",
  "factual consistency": "the consistency of the video content with the common-sense and factual knowledge."
}}
```

## Evaluation Requirements

1. You should do **fine-grained and patch-level** evaluation for **assessing the quality of the video patch**, instead of the whole video. The role of the entire video is to provide the context of the video patch to understand it better.
2. You should detail view the patch of the input video to give a reliable and rigorous evaluation score of this patch, both considering the patch's local quality and its correlation with the whole video.
3. You should carefully evaluate the reality of the generated video patch to provide reliable evaluation results.

## Output Requirements

1. For each dimension, output a number ranging from 0 to 10, in which '0' means the worst and '10' means the best.
2. The output should be in JSON format.
3. Only output the JSON-format result without any other words.
4. Here is an output example:

```
{{
  "visual quality": "An int value ranging from 0 to 10, representing the visual quality score of the evaluated video,
  "temporal consistency": "An int value ranging from 0 to 10, representing the temporal consistency score of the evaluated video,
  "dynamic degree": "An int value ranging from 0 to 10, representing the dynamic degree score of the evaluated video,
  "text-to-video alignment": "An int value ranging from 0 to 10, representing the text-to-video alignment score of the evaluated video,
  "factual consistency": "An int value ranging from 0 to 10, representing the factual consistency score of the evaluated video"
}}
```

## Input information

- Text prompt: "{text_prompt}".
- Coordinate of the patch: ({row}, {col}).
- All the frames of the video and its evaluated patch are as follows:"""


class TeacherParseError(ValueError):
    """The teacher's reply does not hold five valid 0-10 scores; the message says what is wrong."""


def teacher_instruction(text_prompt: str, row: int, col: int, grid: tuple[int, int] = (3, 3)) -> str:
    """The Fig. 9 instruction for patch ``(row, col)`` of a ``grid`` split; images follow it in the message."""
    rows, cols = grid
    if not (0 <= row < rows and 0 <= col < cols):
        raise ValueError(f"patch ({row}, {col}) is outside a {rows}x{cols} grid")
    return _FIG9_TEMPLATE.format(
        num_patches=rows * cols, rows=rows, cols=cols, text_prompt=text_prompt, row=row, col=col
    )


def _key(name: str) -> str:
    """Canonical dimension key: lower case, letters only (``Text_to_Video Alignment`` -> ``texttovideoalignment``)."""
    return re.sub(r"[^a-z]", "", name.lower())


_CANONICAL = {_key(d): d for d in DIMENSIONS}
_NUMBER = r"(-?\d+(?:\.\d+)?)"


def _to_score(value: object, dimension: str) -> float:
    if isinstance(value, bool):
        raise TeacherParseError(f"{dimension!r}: expected a number 0-10, got {value!r}")
    if isinstance(value, int | float):
        score = float(value)
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*" + _NUMBER + r"\s*(?:/\s*10)?\s*", value)
        if match is None:
            raise TeacherParseError(f"{dimension!r}: expected a number 0-10, got {value!r}")
        score = float(match.group(1))
    else:
        raise TeacherParseError(f"{dimension!r}: expected a number 0-10, got {value!r}")
    low, high = TEACHER_SCORE_RANGE
    if not low <= score <= high:
        raise TeacherParseError(f"{dimension!r}: score {score} is outside {low:g}-{high:g}")
    return score


def parse_teacher_scores(reply: str) -> dict[str, float]:
    """The five 0-10 scores of a teacher reply, keyed by :data:`DIMENSIONS` (in that order).

    Tolerates code fences and surrounding text, key spelling variants (case, ``_``/``-``/spaces), numbers given
    as strings or as ``"7/10"``, and falls back to ``"name": 7`` / ``name = 7`` patterns when the JSON is broken.
    Raises :class:`TeacherParseError` naming the missing or invalid dimension.
    """
    found: dict[str, object] = {}
    data = parse_mapping(reply)
    if data is not None:
        for name, value in data.items():
            canonical = _CANONICAL.get(_key(str(name)))
            if canonical is not None:
                found[canonical] = value
    for dimension in DIMENSIONS:
        if dimension in found:
            continue
        words = r"[\s_\-]*".join(re.escape(w) for w in re.split(r"[\s\-]+", dimension))
        match = re.search(r"[\"']?" + words + r"[\"']?\s*[:=]\s*[\"']?" + _NUMBER, reply, re.IGNORECASE)
        if match is not None:
            found[dimension] = match.group(1)
    missing = [d for d in DIMENSIONS if d not in found]
    if missing:
        snippet = reply.strip().replace("\n", " ")[:200]
        raise TeacherParseError(f"teacher reply lacks scores for {missing}: {snippet!r}")
    return {d: _to_score(found[d], d) for d in DIMENSIONS}


def normalize_teacher_score(score: float) -> float:
    """Map a 0-10 teacher score to VideoScore's 1-4 range: ``1 + 3 * score / 10``."""
    low, high = TEACHER_SCORE_RANGE
    if not low <= score <= high:
        raise ValueError(f"teacher score {score} is outside {low:g}-{high:g}")
    out_low, out_high = VIDEOSCORE_RANGE
    return out_low + (out_high - out_low) * (score - low) / (high - low)


def normalize_teacher_scores(scores: dict[str, float]) -> dict[str, float]:
    """:func:`normalize_teacher_score` applied to every dimension."""
    return {name: normalize_teacher_score(value) for name, value in scores.items()}
