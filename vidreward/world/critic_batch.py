"""Batched teacher-forced forward of the world critic, through the critic's own input path.

Every example is encoded with ``VLMCritic.encode_prompt`` (our torch preprocessing, the chat template, the HF
processor's placeholder expansion: t*h*w/4 video pads per video), the answer ids are appended exactly as in
``VLMCritic.answer_logprobs`` (then ``<|im_end|>``), and the batch is right-padded. The model gets
``mm_token_type_ids`` (from the processor), ``video_grid_thw`` and ``second_per_grid_ts`` like the critic does;
with a frozen vision tower the video features are computed once under ``no_grad`` and passed as
``mm_encoder_outputs``, which the model scatters into the same placeholder positions. ``check_same_path`` asserts
that this path and ``VLMCritic.answer_logprobs`` give the same log-probs, so training and use cannot drift.

Loss (teacher forcing, Eq. 3 of Diffusion-DRF, weighted): L = sum_t w_t * (-log p(y_t | c, y_<t)) / sum_t w_t, with
w_t = ``decision_weight`` at Yes/No decision tokens and 1 at the other answer tokens. With ``scored_only`` only the
scored decision (``eval_char``) weighs ``decision_weight`` and an answer's other decisions weigh 1: a Phy answer
has five decisions (Fig. 16's keys), of which a Yes example's scored one is its only "Yes" and a No example's (one
of the world's three physics keys, drawn) one of five "No"s, so over the balanced Yes/No pairs the weighted Yes and
No targets are equal (1 : 9 otherwise).

Speed (``benchmarks/critic_step.py``): the language-model head runs only at the answer targets (:func:`answer_logits`,
``[N, V]`` rather than ``[B, L, V]``), and :func:`grouped_loss` encodes a batch as sub-batches of one dimension each
(a Phy or VQ prompt is 3-4x longer than a TA or Vanilla one), summing the numerator and the denominator of L over
the sub-batches, so the loss and its gradient are those of the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from vidreward.critics.vlm import VLMCritic
from vidreward.video_io import subsample_frames
from vidreward.world.critic_data import DIMENSIONS, CriticExample

if TYPE_CHECKING:
    from transformers.modeling_outputs import BaseModelOutputWithPooling


@dataclass
class Batch:
    """Padded model inputs and per-token targets of a batch of examples."""

    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    mm_token_type_ids: torch.Tensor  # [B, L] 0 text, 2 video
    pixel_values_videos: torch.Tensor  # [rows, 1176]
    video_grid_thw: torch.Tensor  # [V, 3]
    second_per_grid_ts: torch.Tensor  # [V]
    labels: torch.Tensor  # [B, L] next-token targets (-100 where none), aligned with logits positions
    weights: torch.Tensor  # [B, L] loss weight per target
    eval_pos: list[int | None]  # per example: logits position of the scored decision (None for captions)
    yes_id: int
    no_id: int

    @property
    def answer_positions(self) -> torch.Tensor:
        """(row, position) of every target, row-major: ``[N, 2]`` (the rows of :func:`answer_logits`)."""
        return (self.labels >= 0).nonzero()

    def eval_rows(self) -> list[int | None]:
        """Per example, the row of :func:`answer_logits` holding its scored decision (None for captions)."""
        index = {(b, p): n for n, (b, p) in enumerate(self.answer_positions.tolist())}
        return [None if pos is None else index[(b, pos)] for b, pos in enumerate(self.eval_pos)]


def _frames(video: torch.Tensor | None, n_frames: int) -> torch.Tensor | None:
    return None if video is None else subsample_frames(video, n_frames)  # [N_f, 3, H, W]


def weighted_token_index(critic: VLMCritic, ex: CriticExample, char: int, answer_ids: list[int]) -> int:
    """Index in ``answer_ids`` of the token weighted for ``ex``'s decision character ``char``: the Yes/No token of a
    labelled example; for an unlabelled one (an auxiliary answer, :mod:`.critic_aux`) the token that starts at
    ``char``, i.e. the number of tokens of ``answer[:char]`` (checked to be a prefix of the answer's tokens)."""
    if ex.label is not None:
        return critic._decision_ids(ex.answer, char)[0]
    prefix = critic.tokenizer(ex.answer[:char], add_special_tokens=False)["input_ids"]
    if answer_ids[:len(prefix)] != prefix or len(prefix) >= len(answer_ids):
        raise ValueError(f"character {char} of {ex.answer!r} is not at a token boundary")
    return len(prefix)


def encode_batch(critic: VLMCritic, examples: list[CriticExample], n_frames: list[int],
                 decision_weight: float = 5.0, videos: list[torch.Tensor] | None = None,
                 scored_only: bool = False) -> Batch:
    """Encode examples (``videos`` optionally overrides each example's video, e.g. the shuffled control;
    ``scored_only``: see the module doc)."""
    tok = critic.tokenizer
    yes_id, no_id = tok.convert_tokens_to_ids(["Yes", "No"])
    rows, pix, grids, secs, eval_pos = [], [], [], [], []
    for i, (ex, n) in enumerate(zip(examples, n_frames)):
        video = ex.video if videos is None else videos[i]
        prompt = critic.encode_prompt(_frames(video, n), ex.question, reference=_frames(ex.reference, n))
        answer_ids = tok(ex.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        p = prompt.input_ids.shape[1]
        ids = prompt.input_ids[0].tolist() + answer_ids
        labels = [-100] * len(ids)
        weights = [0.0] * len(ids)
        chars = [ex.eval_char] if scored_only and ex.eval_char is not None else ex.decision_chars
        decision_idx = {weighted_token_index(critic, ex, c, answer_ids) for c in chars}
        for j, a in enumerate(answer_ids):
            labels[p - 1 + j] = a  # logits at position p-1+j predict answer token j
            weights[p - 1 + j] = decision_weight if j in decision_idx else 1.0
        eval_pos.append(None if ex.eval_char is None else p - 1 + critic._decision_ids(ex.answer, ex.eval_char)[0])
        rows.append((ids, labels, weights))
        kw = prompt.visuals.model_kwargs
        pix.append(kw["pixel_values_videos"])
        grids.append(kw["video_grid_thw"])
        secs.append(kw["second_per_grid_ts"])
    length = max(len(r[0]) for r in rows)
    pad = tok.pad_token_id
    ids = torch.tensor([r[0] + [pad] * (length - len(r[0])) for r in rows])  # [B, L]
    mask = torch.tensor([[1] * len(r[0]) + [0] * (length - len(r[0])) for r in rows])
    labels = torch.tensor([r[1] + [-100] * (length - len(r[1])) for r in rows])
    weights = torch.tensor([r[2] + [0.0] * (length - len(r[2])) for r in rows])
    mm = torch.tensor(critic.processor.create_mm_token_type_ids(ids.tolist()))
    return Batch(ids, mask, mm, torch.cat(pix), torch.cat(grids), torch.cat(secs), labels, weights, eval_pos,
                 yes_id, no_id)


def video_features(model, batch: Batch) -> BaseModelOutputWithPooling:
    """The vision tower's merged tokens per video (the caller owns grad mode)."""
    return model.model.get_video_features(batch.pixel_values_videos, batch.video_grid_thw, return_dict=True)


def answer_logits(model, batch: Batch, features: BaseModelOutputWithPooling | None = None) -> torch.Tensor:
    """Logits at the answer targets only, ``[N, V]`` (rows: :attr:`Batch.answer_positions`); ``features``
    (precomputed video features) replace the pixel path when given. Equal to the full ``[B, L, V]`` logits at those
    positions: the head is applied per position."""
    kwargs = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                  mm_token_type_ids=batch.mm_token_type_ids, video_grid_thw=batch.video_grid_thw,
                  second_per_grid_ts=batch.second_per_grid_ts, use_cache=False)
    if features is None:
        kwargs["pixel_values_videos"] = batch.pixel_values_videos
    else:
        kwargs["mm_encoder_outputs"] = {"video": features}
    hidden = model.model(**kwargs).last_hidden_state  # [B, L, D]
    rows, cols = batch.answer_positions.unbind(1)
    return model.lm_head(hidden[rows, cols]).float()  # [N, V]


def weighted_nll_terms(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum_t w_t * NLL_t, sum_t w_t) over the batch's answer targets; ``logits`` from :func:`answer_logits`."""
    mask = batch.labels >= 0
    nll = torch.nn.functional.cross_entropy(logits, batch.labels[mask], reduction="none")  # [N]
    weights = batch.weights[mask]
    return (nll * weights).sum(), weights.sum()


def weighted_nll(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """sum_t w_t * NLL_t / sum_t w_t over the answer targets (see module docstring)."""
    total, weight = weighted_nll_terms(logits, batch)
    return total / weight.clamp_min(1e-8)


def decisions(logits: torch.Tensor, batch: Batch) -> list[str | None]:
    """Predicted decision ("Yes" if logit(Yes) > logit(No)) at each example's scored position."""
    return [None if n is None else ("Yes" if logits[n, batch.yes_id] > logits[n, batch.no_id] else "No")
            for n in batch.eval_rows()]


def length_groups(examples: list[CriticExample]) -> list[list[int]]:
    """Indices of ``examples`` grouped by dimension (prompts of one dimension have similar lengths), in first-seen
    order."""
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(ex.dimension, []).append(i)
    return list(groups.values())


def grouped_loss(critic: VLMCritic, examples: list[CriticExample], n_frames: list[int], decision_weight: float,
                 tune_vision: bool, scored_only: bool = False) -> tuple[torch.Tensor, list[str | None]]:
    """(L of the whole batch, predicted decisions per example), computed over :func:`length_groups` sub-batches:
    L = sum_groups sum_t w_t NLL_t / sum_groups sum_t w_t. The vision tower runs under grad only if
    ``tune_vision``; ``scored_only``: only the scored decision weighs ``decision_weight`` (module doc)."""
    model = critic.model
    total, weight = torch.zeros(()), torch.zeros(())
    preds: list[str | None] = [None] * len(examples)
    for idx in length_groups(examples):
        batch = encode_batch(critic, [examples[i] for i in idx], [n_frames[i] for i in idx], decision_weight,
                             scored_only=scored_only)
        with torch.set_grad_enabled(tune_vision):
            feats = video_features(model, batch)
        logits = answer_logits(model, batch, feats)
        part_total, part_weight = weighted_nll_terms(logits, batch)
        total, weight = total + part_total, weight + part_weight
        for i, p in zip(idx, decisions(logits.detach(), batch)):
            preds[i] = p
    return total / weight.clamp_min(1e-8), preds


def check_same_path(critic: VLMCritic, examples: list[CriticExample], n_frames: int, tol: float = 1e-4) -> float:
    """Max |log p| difference between the batched training path and ``VLMCritic.answer_logprobs``; raises if > tol."""
    batch = encode_batch(critic, examples, [n_frames] * len(examples))
    with torch.no_grad():
        logprobs = torch.log_softmax(answer_logits(critic.model, batch, video_features(critic.model, batch)), -1)
        targets = batch.labels[batch.labels >= 0]
        rows = batch.answer_positions[:, 0]
        worst = 0.0
        for b, ex in enumerate(examples):
            ref = critic.answer_logprobs(_frames(ex.video, n_frames), ex.question, ex.answer,
                                         reference=_frames(ex.reference, n_frames))
            mine = (rows == b).nonzero()[:, 0][: len(ref.answer_ids)]
            ours = logprobs[mine].gather(1, targets[mine][:, None])[:, 0]
            worst = max(worst, (ours - ref.token_logprobs).abs().max().item())
    if worst > tol:
        raise RuntimeError(f"training path and VLMCritic.answer_logprobs differ by {worst:.2e} > {tol:.0e}")
    return worst


def evaluate(critic: VLMCritic, examples: list[CriticExample], n_frames: int = 10, shuffle: bool = False,
             chunk: int = 32) -> dict[str, float]:
    """Decision accuracy per dimension (fast batched path); ``shuffle`` rolls videos within each dimension."""
    videos = [ex.video for ex in examples]
    if shuffle:
        for dim in DIMENSIONS:
            idx = [i for i, ex in enumerate(examples) if ex.dimension == dim]
            for a, b in zip(idx, idx[1:] + idx[:1]):
                videos[a] = examples[b].video
    hits: dict[str, list[int]] = {}
    with torch.no_grad():
        for s in range(0, len(examples), chunk):
            part = examples[s:s + chunk]
            batch = encode_batch(critic, part, [n_frames] * len(part), videos=videos[s:s + chunk])
            preds = decisions(answer_logits(critic.model, batch, video_features(critic.model, batch)), batch)
            for ex, p in zip(part, preds):
                hits.setdefault(ex.dimension, []).append(int(p == ex.label))
    return {d: sum(h) / len(h) for d, h in hits.items()}


def value_accuracy(critic: VLMCritic, examples: list[CriticExample], n_frames: int = 10, chunk: int = 32) -> float:
    """Share of ``examples`` whose first weighted answer token (a decision character's token, e.g. the value word of a
    keyed auxiliary answer, :mod:`.critic_aux`) is the model's top-1 prediction under teacher forcing; for an
    auxiliary example it says whether the critic reads that side of a TA comparison (video or question)."""
    marker = 2.0  # the weight that marks the decision characters' tokens (other answer tokens weigh 1)
    hits = []
    with torch.no_grad():
        for s in range(0, len(examples), chunk):
            part = examples[s:s + chunk]
            batch = encode_batch(critic, part, [n_frames] * len(part), decision_weight=marker)
            logits = answer_logits(critic.model, batch, video_features(critic.model, batch))  # [N, V]
            targets = batch.labels[batch.labels >= 0]  # [N]
            heavy = (batch.weights[batch.labels >= 0] == marker).nonzero().flatten()  # [H] rows of weighted targets
            first: dict[int, int] = {}  # example -> its first weighted target's row
            for n, example in zip(heavy.tolist(), batch.answer_positions[heavy, 0].tolist()):
                first.setdefault(example, n)
            if len(first) != len(part):
                raise ValueError("value_accuracy needs a weighted decision character in every example's answer")
            hits += [int(logits[n].argmax() == targets[n]) for n in first.values()]
    return sum(hits) / max(len(hits), 1)
