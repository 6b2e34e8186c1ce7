"""Stage (i) of the world critic build: word-aligned visual tokens (dense, per-token "captioning" of the vision tower).

Each merged visual token h_n (what the language model sees; dimension = the text hidden size) is trained to
predict the words that describe its region of the frames, through the language model's own (tied) word
embeddings e_w:

    s_{n,w} = tau * cos(h_n, e_w) + b_w,        L = mean_{n, w in A} BCE(sigmoid(s_{n,w}), y_{n,w})

plus, on tokens that hold an object, a softmax cross-entropy within each object group g (colour, shape, size)
over the concept scores s_{n,c} = max_{w spells c} s_{n,w}, weighted ``group_weight`` (shape and size are
whole-object properties a token must gather from its neighbours; the sparse BCE alone left them at chance),
over a fixed attribute vocabulary A (object colours, background colours, shapes, sizes, lighting, image-quality
defects; every single-token spelling of each word, e.g. " bright" and "Bright"). Targets y_{n,w} = 1 when w is
a concept of the token (:func:`vidreward.world.critic_concepts.token_concepts`, occluding):

- the background colour or the lighting word, on every token that holds no object;
- an image-quality word of the video's defect (noise, blur on every token; flicker on the tokens of a temporal
  patch holding a brightness-shifted frame); with ``visible_defects`` only where the token's pixels show it, the
  quality words left unscored (weight 0 in the BCE) on the defective video's other tokens
  (:data:`~vidreward.world.critic_concepts.UNSEEN_DEFECT`);
- the colour, shape or measured size word of an object covering >= ``COVER`` of the token's region in any
  frame of its temporal patch.

With ``physics`` the videos also carry physics corruptions, and classification heads (:mod:`.critic_heads`) learn
motion per object token and physics / quality per video: properties over time that no single word names.

This puts visual tokens and the words of the question in one space, so the language model's comparison of a
facet description with the video ("The circle is red." against the video) starts from a dot product its
attention can read, instead of being discovered from Yes/No supervision alone (which stayed at chance in the
world probe, ../shared/notes/world-probe.md). Positions are left to the language model's M-RoPE positions: the
vision tower has no absolute position embedding and sees one temporal patch (``CriticArch.temporal_patch_size``
frames) at a time; with Qwen's 2, motion is left to the language model as well.

Token geometry: a 64x64 frame is resized to 84x84 = 6x6 patches of 14 px; 2x2 merging gives a 3x3 grid of
merged tokens per temporal patch, ordered (t, row, col) exactly as the processor flattens them, and the world's
9 start cells fall on that grid.
"""

from __future__ import annotations

import random
from typing import NamedTuple

import torch

from vidreward.video_io import subsample_frames
from vidreward.world.critic_concepts import (
    UNSEEN_DEFECT,
    flicker_frames,
    token_concepts,
    video_scene,
)
from vidreward.world.critic_data import make_video
from vidreward.world.critic_heads import AttributeHeads
from vidreward.world.render import RenderConfig
from vidreward.world.scene import (
    BACKGROUND_COLORS,
    LIGHTING,
    OBJECT_COLORS,
    SHAPES,
    SIZES,
)
from vidreward.world.splits import first_scene_of_split

#: concept -> words whose single-token spellings carry it (quality defects as the VQ answers name them)
CONCEPT_WORDS: dict[str, tuple[str, ...]] = {
    **{c: (c,) for c in (*OBJECT_COLORS, *BACKGROUND_COLORS, *SHAPES, *SIZES, *LIGHTING)},
    "noise": ("grain", "noise"), "blur": ("defocus", "blur"), "flicker": ("flicker",),
}
QUALITY_SOURCES: tuple[str, ...] = ("noise", "blur", "flicker")
PHYSICS_SOURCES: tuple[str, ...] = ("deformation", "teleport", "interpenetration")


def single_token_spellings(tokenizer, words: tuple[str, ...]) -> list[int]:
    """Ids of the spellings " word", "word", " Word", "Word" of ``words`` that are one token, without repeats."""
    ids: list[int] = []
    for word in words:
        for text in (f" {word}", word, f" {word.capitalize()}", word.capitalize()):
            pieces = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(pieces) == 1 and pieces[0] not in ids:
                ids.append(pieces[0])
    return ids


def concept_token_ids(tokenizer) -> dict[str, list[int]]:
    """Concept -> ids of every single-token spelling (" red", "red", " Red", "Red"); the first token of " word"
    when no spelling is a single token."""
    out: dict[str, list[int]] = {}
    for concept, words in CONCEPT_WORDS.items():
        ids = single_token_spellings(tokenizer, words)
        if not ids:
            ids.append(tokenizer(f" {words[0]}", add_special_tokens=False)["input_ids"][0])
        out[concept] = ids
    return out


class AlignSample(NamedTuple):
    """One stage (i) video with its per-token concepts."""

    video: torch.Tensor
    """[F, 3, H, W] the full render"""
    concepts: list[set[str]]
    """per merged token of its ``n_frames`` subsample, (t, row, col) order"""
    source: str
    """"clean" or the corruption drawn"""
    n_frames: int
    """N_f the concepts are computed for"""


def align_sample(seed: int, cfg: RenderConfig, n_frames: int, split: str = "train", visible_defects: bool = False,
                 temporal_patch: int = 2, physics: bool = False) -> AlignSample:
    """A ``split`` scene, clean or with a quality defect (``physics``: or a physics corruption too), and its
    per-token concepts: :func:`critic_concepts.token_concepts` of what the video draws, occluding (object tokens carry
    only the object's words and the defects; ``visible_defects``: a defect only on the tokens that show it) in
    temporal patches of ``temporal_patch`` frames; with ``physics`` the object tokens also carry motion labels."""
    rng = random.Random(f"critic-align-{seed}")
    seed, spec = first_scene_of_split(seed, split, cfg.num_frames)
    source = rng.choice(("clean", "clean", "clean") + QUALITY_SOURCES + (PHYSICS_SOURCES if physics else ()))
    video = make_video(spec, source, seed, cfg)
    scene, tracks = video_scene(spec, source, seed, cfg)
    shifted = flicker_frames(video, scene, cfg) if source == "flicker" else set()
    concepts = token_concepts(scene, tracks, source, n_frames, cfg, shifted, occlude=True,
                              visible_defects=visible_defects, temporal_patch=temporal_patch, motions=physics)
    return AlignSample(video, concepts, source, n_frames)


class WordAlignment(torch.nn.Module):
    """s_{n,w} = tau * cos(h_n, e_w) + b_w over the attribute vocabulary (e_w: the language model's input embeddings).

    Cosine, not the raw dot product: freshly initialised embeddings are tiny (std 0.02), so raw scores start at
    ~0 and barely move; the language model reads both through RMSNorm anyway, so only directions matter there.
    """

    def __init__(self, concept_ids: dict[str, list[int]]):
        super().__init__()
        self.concepts = list(concept_ids)
        self.ids = [i for c in self.concepts for i in concept_ids[c]]
        self.owner = [c for c in self.concepts for _ in concept_ids[c]]  # concept of each id
        self.bias = torch.nn.Parameter(torch.full((len(self.ids),), -2.0))
        self.log_tau = torch.nn.Parameter(torch.tensor(2.3))  # tau starts at 10

    def targets(self, concepts: list[set[str]]) -> torch.Tensor:
        return torch.tensor([[float(o in words) for o in self.owner] for words in concepts])  # [N, |A|]

    def scored(self, concepts: list[set[str]]) -> torch.Tensor:
        """1 where a target counts, 0 on the quality words of tokens marked ``UNSEEN_DEFECT``: ``[N, |A|]``."""
        quality = torch.tensor([o in QUALITY_SOURCES for o in self.owner])  # [|A|]
        unseen = torch.tensor([UNSEEN_DEFECT in words for words in concepts])  # [N]
        return (~(unseen[:, None] & quality[None, :])).float()

    def forward(self, tokens: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.normalize(tokens, dim=-1)
        e = torch.nn.functional.normalize(embeddings[self.ids], dim=-1)
        return self.log_tau.exp() * h @ e.T + self.bias  # [N, |A|]


OBJECT_GROUPS: dict[str, tuple[str, ...]] = {"color": tuple(OBJECT_COLORS), "shape": SHAPES, "size": tuple(SIZES)}


def merged_tokens(model, encoder, videos: list[torch.Tensor], n_frames: list[int], fps: float) -> torch.Tensor:
    """The vision tower's merged tokens of ``videos`` (each subsampled to its N_f), concatenated: ``[sum N, D]``."""
    kw = encoder.encode([subsample_frames(v, n) for v, n in zip(videos, n_frames)], fps=fps).model_kwargs
    out = model.model.get_video_features(kw["pixel_values_videos"], kw["video_grid_thw"], return_dict=True)
    return torch.cat(list(out.pooler_output))


def group_scores(align: WordAlignment, scores: torch.Tensor, concepts: list[set[str]],
                 members: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concept scores of one group, s_{n,c} = max over c's spellings ``[N, |g|]``, and each token's target concept
    index (-100 unless the token holds exactly one concept of the group) ``[N]``."""
    cols = [[j for j, o in enumerate(align.owner) if o == c] for c in members]
    group = torch.stack([scores[:, js].max(dim=1).values for js in cols], dim=1)  # [N, |g|]
    target = torch.tensor([members.index(next(iter(w & set(members)))) if len(w & set(members)) == 1 else -100
                           for w in concepts])
    return group, target


def group_loss(align: WordAlignment, scores: torch.Tensor, concepts: list[set[str]],
               groups: tuple[tuple[str, ...], ...] = tuple(OBJECT_GROUPS.values())) -> torch.Tensor:
    """Sum over ``groups`` (default: the object groups) of the softmax CE within the group, on tokens holding exactly
    one of its concepts (that concept is the target)."""
    loss = scores.new_zeros(())
    for members in groups:
        group, target = group_scores(align, scores, concepts, members)
        if (target >= 0).any():
            loss = loss + torch.nn.functional.cross_entropy(group, target, ignore_index=-100)
    return loss


def align_loss(model, align: WordAlignment, encoder, videos: list[torch.Tensor], concepts: list[list[set[str]]],
               n_frames: list[int], fps: float, group_weight: float = 1.0,
               quality_weight: float = 0.0, heads: AttributeHeads | None = None, sources: list[str] | None = None,
               heads_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean BCE of the word scores of every merged token (over the scored targets, :meth:`WordAlignment.scored`),
    plus ``group_weight`` times the object groups' softmax CE, ``quality_weight`` times the quality group's
    (noise / blur / flicker, on defect tokens) and ``heads_weight`` times the classification heads' loss
    (:meth:`critic_heads.AttributeHeads.loss`; needs the videos' ``sources``); and held-out style stats (token
    accuracy, exact sets)."""
    tokens = merged_tokens(model, encoder, videos, n_frames, fps)  # [sum N, D]
    flat = [w for per_video in concepts for w in per_video]
    if tokens.shape[0] != len(flat):
        raise RuntimeError(f"{tokens.shape[0]} merged tokens but {len(flat)} token labels: grid mismatch")
    target, scored = align.targets(flat), align.scored(flat)  # [N, |A|] each
    scores = align(tokens, model.get_input_embeddings().weight)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(scores, target, reduction="none")
    loss = (bce * scored).sum() / scored.sum()
    if group_weight:
        loss = loss + group_weight * group_loss(align, scores, flat)
    if quality_weight:
        loss = loss + quality_weight * group_loss(align, scores, flat, (QUALITY_SOURCES,))
    if heads_weight and heads is not None:
        loss = loss + heads_weight * heads.loss(tokens, concepts, sources)
    with torch.no_grad():
        hit = ((scores > 0).float() == target) | (scored == 0)
        stats = {"word_acc": hit.float().mean().item(), "token_exact": hit.all(dim=1).float().mean().item()}
        for name, members in (("object", set(OBJECT_COLORS) | set(SHAPES) | set(SIZES)),
                              ("quality", set(QUALITY_SOURCES))):
            cols = [j for j, o in enumerate(align.owner) if o in members]
            stats[f"{name}_exact"] = hit[:, cols].all(dim=1).float().mean().item()
    return loss, stats


def align_accuracy(model, align: WordAlignment, encoder, samples: list[AlignSample], fps: float,
                   heads: AttributeHeads | None = None) -> dict[str, float]:
    """Held-out accuracy per concept group: on tokens where the group has a concept, is the top-scoring concept
    of the group the right one (object groups: colour, shape, size; scene groups: background, lighting, quality)?
    The quality group is also split by the defect the tokens carry (``quality_noise``, ``quality_blur``,
    ``quality_flicker``). With ``heads``, also each head's balanced accuracy (``head_motion``, ...)."""
    groups = {**OBJECT_GROUPS, "background": tuple(BACKGROUND_COLORS), "lighting": tuple(LIGHTING),
              "quality": QUALITY_SOURCES}
    with torch.no_grad():
        tokens = merged_tokens(model, encoder, [s.video for s in samples], [s.n_frames for s in samples], fps)
        scores = align(tokens, model.get_input_embeddings().weight)
    flat = [w for s in samples for w in s.concepts]
    acc = {}
    for name, members in groups.items():
        group, target = group_scores(align, scores, flat, members)
        valid = target >= 0
        if valid.any():
            acc[name] = round(float((group[valid].argmax(1) == target[valid]).float().mean()), 3)
        if name == "quality":
            for k, defect in enumerate(members):
                if (target == k).any():
                    acc[f"quality_{defect}"] = round(float((group[target == k].argmax(1) == k).float().mean()), 3)
    if heads is not None:
        acc.update(heads.accuracy(tokens, [s.concepts for s in samples], [s.source for s in samples]))
    return acc


@torch.no_grad()
def rescale_visual_tokens(model, align: WordAlignment, encoder, samples: list[AlignSample], fps: float) -> float:
    """Scale the vision merger's last linear layer so that the mean norm of the merged tokens of ``samples`` equals
    the mean norm of the attribute words' input embeddings; returns the factor.

    The word scores are cosines (:class:`WordAlignment`), so stage (i)'s result is unchanged, but stage (i) leaves
    the tokens' norms free and they grow (10-50x the word embeddings' after 2500-5000 steps). The language model adds
    its layers' outputs to the visual tokens' residual stream; at 10-50x the norm of a text token, what its first
    layer writes there (the comparison with the question, which comes first) is drowned before the next layer's
    RMSNorm reads it.
    """
    tokens = merged_tokens(model, encoder, [s.video for s in samples], [s.n_frames for s in samples], fps)
    target = model.get_input_embeddings().weight[align.ids].norm(dim=-1).mean()
    factor = float(target / tokens.norm(dim=-1).mean())
    last = model.model.visual.merger.mlp[-1]
    last.weight.mul_(factor)
    last.bias.mul_(factor)
    return factor
