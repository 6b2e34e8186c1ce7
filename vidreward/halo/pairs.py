"""Gran-DPO training pairs by median margins (HALO Sec. 3.3, "Building pairwise training data").

For each prompt, every unordered pair of its N scored candidates is a *candidate pair*. With

* video margin ``|v^a - v^b|`` (``v`` = video reward, Eq. 5),
* patch margins ``|p^a_ij - p^b_ij|`` for every grid cell ``(i, j)``,
* ``m_V`` = the median of all video margins, and ``m_P`` the patch median (see "Which m_P" below),

a pair is kept when ``|v^a - v^b| > m_V`` **or** ``max_ij |p^a_ij - p^b_ij| > m_P`` (strict ``>``).

Which m_P (``patch_median``). The paper keeps a pair if "(1) the video reward margin between two videos exceeds
the statistical median of all pairwise video reward margins m_V. (2) One of the patch reward margins surpasses
the statistical median of all pairwise patch reward margins m_P."

* ``"all_patches"`` (the literal reading): m_P = the median over every patch margin of every candidate pair.
  Rule (2) then asks whether the *maximum* of h_n * w_n = 9 margins beats the median of single margins. If the 9
  margins of a pair were independent draws, P(max <= median) = 0.5^9 ~ 0.2%, so the rule keeps ~99.8% of pairs
  whatever the rewards are: it filters nothing, and rule (1) becomes irrelevant.
* ``"per_pair_max"`` (default, our decision): m_P = the median over candidate pairs of each pair's *maximum*
  patch margin ``max_ij |p^a_ij - p^b_ij|``. "One of the patch reward margins" is a statement about a pair, so the
  pairwise statistic it is compared with is the pair's largest patch margin; m_V is likewise one number per
  pair. Each rule alone then keeps at most half of the candidate pairs (strict ``>`` of a median), exactly like
  rule (1), and the union is a real filter (about 1/2 of the pairs when the two rules agree, about 3/4 when
  they are independent). This is the closest reading to the text under which rule (2) filters at all.

The same m_P normalises the patch weights ``omega_ij = clip(|p^w_ij - p^l_ij| / m_P, 0, 1)`` of Eq. 9, since
the paper uses one symbol for both. With ``per_pair_max`` this m_P is larger, so fewer patches reach weight 1:
in a pair kept by rule (2) the largest patch margin does.

Other decisions:

* **Medians are global**, over every candidate pair of the whole dataset (all prompts). The paper says "the
  statistical median of all pairwise video reward margins"; per-prompt medians would keep about half of every
  prompt's pairs regardless of how distinct its videos are.
* **Median** is the statistical one: the mean of the two middle values for an even count (``statistics.median``).
* **Winner / loser** by video reward. A video tie keeps input order (the candidate listed first is the
  "winner") and records ``video_sign = 0`` so the video DPO term of that pair is zero; it can still be kept for
  its patches.
* Stored per pair: the signed margins ``v^w - v^l`` (>= 0) and ``p^w_ij - p^l_ij``, the signs
  ``F = sign(p^w_ij - p^l_ij)`` in {1, 0, -1}, and the weights ``omega = clip(|margin| / m, 0, 1)`` with ``m_V``
  for the video and ``m_P`` for patches (:func:`vidreward.losses.gran_dpo.margin_weight`).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

import torch

from vidreward.losses.gran_dpo import margin_weight

PatchMedian = Literal["per_pair_max", "all_patches"]
"""How m_P is taken (module docstring): over each pair's largest patch margin, or over every patch margin."""
PATCH_MEDIANS: tuple[str, ...] = get_args(PatchMedian)


@dataclass
class CandidateScores:
    """Reward-model scores of one sampled video."""

    prompt_id: str
    """Key of the prompt the video was sampled for; pairs are built within a prompt."""
    candidate_id: str
    """Unique id of the video within its prompt (e.g. its seed or file name)."""
    video_reward: float
    """Video reward ``v``: the mean of the 5 dimension scores of the video reward model (Eq. 5)."""
    patch_rewards: list[list[float]]
    """``[h_n][w_n]`` patch rewards ``p_ij`` from the patch reward model, row-major, (0, 0) upper left."""

    @classmethod
    def from_dict(cls, record: dict) -> CandidateScores:
        """Build from a JSONL record, naming the bad record on error."""
        try:
            return cls(
                prompt_id=str(record["prompt_id"]),
                candidate_id=str(record["candidate_id"]),
                video_reward=float(record["video_reward"]),
                patch_rewards=[[float(p) for p in row] for row in record["patch_rewards"]],
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"bad candidate score record {record!r}: {err}; need prompt_id, candidate_id, "
                f"video_reward (float) and patch_rewards (list of rows of floats)"
            ) from err


@dataclass
class PreferencePair:
    """One kept Gran-DPO pair, oriented so that the winner has the higher (or equal) video reward."""

    prompt_id: str
    """The prompt both videos were sampled for."""
    winner_id: str
    """``candidate_id`` of the winner (higher video reward)."""
    loser_id: str
    """``candidate_id`` of the loser."""
    video_reward_winner: float
    """``v^w``."""
    video_reward_loser: float
    """``v^l``."""
    video_margin: float
    """``v^w - v^l`` (>= 0)."""
    video_sign: int
    """1, or 0 when the video rewards tie (the video DPO term of this pair is then zero)."""
    video_weight: float
    """``omega(v^w, v^l) = clip(|v^w - v^l| / m_V, 0, 1)``."""
    patch_margins: list[list[float]]
    """``[h_n][w_n]`` signed ``p^w_ij - p^l_ij``."""
    patch_signs: list[list[int]]
    """``[h_n][w_n]`` ``F(p^w_ij, p^l_ij)`` in {1, 0, -1}."""
    patch_weights: list[list[float]]
    """``[h_n][w_n]`` ``omega(p^w_ij, p^l_ij) = clip(|p^w_ij - p^l_ij| / m_P, 0, 1)``."""
    kept_by: list[str] = field(default_factory=list)
    """Which rules kept the pair: ``"video"`` (margin > m_V), ``"patch"`` (some patch margin > m_P), or both."""

    def to_dict(self) -> dict:
        """JSON-serialisable record."""
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> PreferencePair:
        """Inverse of :meth:`to_dict`."""
        return cls(**record)


@dataclass
class PairSet:
    """The result of :func:`build_pairs`: kept pairs, the medians and the counts to report."""

    pairs: list[PreferencePair]
    """Kept pairs, prompt by prompt in input order."""
    median_video_margin: float
    """``m_V`` over all candidate pairs."""
    median_patch_margin: float
    """``m_P``: the median of every pair's largest patch margin (``per_pair_max``) or of every patch margin
    (``all_patches``); it is the threshold of the patch rule and the normaliser of the patch weights."""
    patch_median: str
    """Which m_P was used: ``"per_pair_max"`` or ``"all_patches"``."""
    num_candidate_pairs: int
    """Pairs considered (sum over prompts of N choose 2)."""
    num_kept_by_video: int
    """Kept pairs whose video margin > m_V."""
    num_kept_by_patch_only: int
    """Kept pairs whose video margin <= m_V but some patch margin > m_P."""
    num_prompts_without_pairs: int
    """Prompts with fewer than 2 candidates (no pair possible)."""

    @property
    def num_dropped(self) -> int:
        """Candidate pairs not kept by either rule."""
        return self.num_candidate_pairs - len(self.pairs)


def _validate(candidates: Sequence[CandidateScores]) -> tuple[int, int]:
    grid: tuple[int, int] | None = None
    seen: set[tuple[str, str]] = set()
    for cand in candidates:
        key = (cand.prompt_id, cand.candidate_id)
        if key in seen:
            raise ValueError(f"duplicate candidate {cand.candidate_id!r} for prompt {cand.prompt_id!r}")
        seen.add(key)
        shape = (len(cand.patch_rewards), len(cand.patch_rewards[0]) if cand.patch_rewards else 0)
        if shape[0] == 0 or shape[1] == 0 or any(len(row) != shape[1] for row in cand.patch_rewards):
            raise ValueError(f"candidate {key}: patch_rewards must be a non-empty rectangular grid")
        if grid is None:
            grid = shape
        elif shape != grid:
            raise ValueError(f"candidate {key}: patch grid {shape} differs from the first candidate's {grid}")
        values = [cand.video_reward, *itertools.chain.from_iterable(cand.patch_rewards)]
        if not all(math.isfinite(v) for v in values):
            raise ValueError(
                f"candidate {key}: rewards must be finite, got a NaN or inf; re-score it or drop it"
            )
    if grid is None:
        raise ValueError("no candidates given: score some videos first")
    return grid


def build_pairs(candidates: Sequence[CandidateScores], patch_median: PatchMedian = "per_pair_max") -> PairSet:
    """Build Gran-DPO pairs from scored candidates with the median-margin rules (see module docstring).

    ``patch_median`` picks m_P: ``"per_pair_max"`` (default) = median over pairs of ``max_ij |p^a_ij - p^b_ij|``;
    ``"all_patches"`` = median over every ``|p^a_ij - p^b_ij|`` of every pair (keeps nearly every pair).
    """
    if patch_median not in PATCH_MEDIANS:
        raise ValueError(f"patch_median must be one of {list(PATCH_MEDIANS)}, got {patch_median!r}")
    _validate(candidates)
    by_prompt: dict[str, list[CandidateScores]] = {}
    for cand in candidates:
        by_prompt.setdefault(cand.prompt_id, []).append(cand)

    unordered = [pair for group in by_prompt.values() for pair in itertools.combinations(group, 2)]
    num_without = sum(1 for group in by_prompt.values() if len(group) < 2)
    if not unordered:
        raise ValueError("no prompt has 2 or more candidates: sample N >= 2 videos per prompt")

    # [h_n, w_n] per candidate
    patch_tensor = {id(c): torch.tensor(c.patch_rewards, dtype=torch.float64) for c in candidates}
    video_margins = [abs(a.video_reward - b.video_reward) for a, b in unordered]
    patch_margins = [(patch_tensor[id(a)] - patch_tensor[id(b)]).abs() for a, b in unordered]  # [h_n, w_n]
    max_patch_margins = [float(m.max()) for m in patch_margins]
    m_video = float(statistics.median(video_margins))
    if patch_median == "per_pair_max":
        m_patch = float(statistics.median(max_patch_margins))
    else:
        m_patch = float(statistics.median(torch.stack(patch_margins).flatten().tolist()))

    kept: list[PreferencePair] = []
    by_video = patch_only = 0
    for (a, b), v_margin, p_max in zip(unordered, video_margins, max_patch_margins):
        rules = []
        if v_margin > m_video:
            rules.append("video")
        if p_max > m_patch:  # some patch margin > m_P
            rules.append("patch")
        if not rules:
            continue
        by_video += "video" in rules
        patch_only += rules == ["patch"]
        winner, loser = (b, a) if b.video_reward > a.video_reward else (a, b)
        signed = patch_tensor[id(winner)] - patch_tensor[id(loser)]  # [h_n, w_n]
        kept.append(
            PreferencePair(
                prompt_id=winner.prompt_id,
                winner_id=winner.candidate_id,
                loser_id=loser.candidate_id,
                video_reward_winner=winner.video_reward,
                video_reward_loser=loser.video_reward,
                video_margin=winner.video_reward - loser.video_reward,
                video_sign=int(winner.video_reward > loser.video_reward),
                video_weight=float(margin_weight(torch.tensor(v_margin, dtype=torch.float64), m_video)),
                patch_margins=signed.tolist(),
                patch_signs=torch.sign(signed).to(torch.int64).tolist(),
                patch_weights=margin_weight(signed, m_patch).tolist(),
                kept_by=rules,
            )
        )
    return PairSet(
        pairs=kept,
        median_video_margin=m_video,
        median_patch_margin=m_patch,
        patch_median=patch_median,
        num_candidate_pairs=len(unordered),
        num_kept_by_video=by_video,
        num_kept_by_patch_only=patch_only,
        num_prompts_without_pairs=num_without,
    )


@dataclass
class PairTargets:
    """Batched loss inputs of a list of pairs (see :func:`vidreward.losses.gran_dpo.gran_dpo_loss`)."""

    video_weights: torch.Tensor
    """``[B]`` float32 omega_V."""
    video_signs: torch.Tensor
    """``[B]`` float32 in {1, 0}."""
    patch_weights: torch.Tensor
    """``[B, h_n, w_n]`` float32 omega_P."""
    patch_signs: torch.Tensor
    """``[B, h_n, w_n]`` float32 F in {1, 0, -1}."""


def collate_pair_targets(pairs: Sequence[PreferencePair]) -> PairTargets:
    """Stack the stored weights and signs of ``pairs`` into tensors for the loss."""
    if not pairs:
        raise ValueError("cannot collate an empty list of pairs")
    return PairTargets(
        video_weights=torch.tensor([p.video_weight for p in pairs], dtype=torch.float32),
        video_signs=torch.tensor([float(p.video_sign) for p in pairs], dtype=torch.float32),
        patch_weights=torch.tensor([p.patch_weights for p in pairs], dtype=torch.float32),
        patch_signs=torch.tensor([p.patch_signs for p in pairs], dtype=torch.float32),
    )
