"""Experiment: can the world critic's language model learn a TA facet when the video is *described in words*?

No vision tower and no visual tokens: each example is the text-only chat prompt

    <|im_start|>user\\nVideo: a black background, bright light, a large magenta triangle. <short TA question>
    <|im_end|>\\n<|im_start|>assistant\\n{"answer": "

and the model is trained (cross-entropy on the next token, "Yes" or "No") with the build's stage (iii) settings
(AdamW, ``--lr`` with 50 warm-up steps, gradient clip 1, batch 32). The description is of the scene the video
really draws (:func:`vidreward.world.critic_concepts.video_scene`: an edit's or a corruption's scene), so the
answer is a word match between the question and the description, the easiest form of the comparison a critic
must learn. Questions come from :func:`vidreward.world.critic_data.make_example` (balanced Yes/No, train-split
scenes for training, held-out-split scenes for the printed held-out accuracy). Training samples batches from
``--train-examples`` pre-built examples.

If this fails, the visual tokens are not what stops the critic: the language model's training is.

``--aux-share p``: a share p of the training examples keep the prompt but end the assistant turn with ``Video
shows:`` (target: the video's value word, e.g. " dim", the background or the first object's colour) or ``Question
asks:`` (target: the question's value word). Each of these has a direct gradient to one of the two words the
Yes/No answer compares, which the Yes/No target alone does not: there, either word alone carries no information
about the label (an XOR), so attention to it is not rewarded until both are attended. ``--aux-keyed`` names the
facet in the prefixes instead (``Video Lighting:`` / ``Question Lighting:``).

``--facet`` takes several facets separated by commas: they are trained mixed (the examples cycle through them) and
the held-out accuracy is printed per facet. The short description names background, lighting and each object's
size, colour and shape (the aux targets of Environment, Lighting and Color Requirement); ``--describe-motion`` adds
each object's motion and start cell, for all six facets. ``--question-first`` puts the question before the
description, as ``critic_model.QWEN_VL_TEXT_FIRST_CHAT_TEMPLATE`` puts it before the video. ``--text-layers`` /
``--text-hidden`` change the language model's size.

    .venv/bin/python scripts/experiments/critic_text_lm.py --facet "Color Requirement" --steps 1500
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from critic_concept_lm import COL_WHERE, ROW_WHERE, aux_heads  # this script's directory: the same place words

from vidreward.world import critic_data as cd
from vidreward.world.critic_aux import facet_value
from vidreward.world.critic_concepts import video_scene
from vidreward.world.critic_model import CriticArch, build_critic_model, train_tokenizer
from vidreward.world.render import RenderConfig
from vidreward.world.scene import SceneSpec, sample_scene
from vidreward.world.splits import split_of

#: facets whose value words the short description holds (``--aux-share`` asks for these; with ``--describe-motion``
#: every TA facet)
DESCRIBED_FACETS: tuple[str, ...] = ("Environment", "Lighting", "Color Requirement")


def describe(scene: SceneSpec, seed: int, motion: bool = False) -> str:
    """``scene`` (the one a video draws) in words, its objects in a ``seed``-fixed random order; with ``motion``
    each object also says how it moves and where it starts ("that moves left from the top center")."""
    objects = [f"a {o.size} {o.color} {o.shape}" + (f" that moves {o.motion} from the {ROW_WHERE[o.row]} "
                                                    f"{COL_WHERE[o.col]}" if motion else "")
               for o in scene.objects]
    random.Random(seed).shuffle(objects)
    return f"Video: a {scene.background} background, {scene.lighting} light, " + " and ".join(objects) + "."


def make_examples(tokenizer, facets: list[str], split: str, count: int, seed: int, cfg: RenderConfig,
                  answer_ids: tuple[int, int], aux: bool = False, keyed: bool = False,
                  question_first: bool = False, motion: bool = False) -> list[tuple[list[int], int, list[tuple[list[int], int]], str]]:
    """``count`` balanced (prompt ids, answer id, auxiliary pairs, facet) of ``split`` scenes from ``seed`` on, the
    facets in turn; with ``aux`` the auxiliary pairs are the (ids, target) of the two auxiliary prompts (module
    doc, :func:`aux_heads`); ``question_first`` puts the question before the description."""
    out = []
    while len(out) < count:
        spec = sample_scene(seed)
        if split_of(spec) == split:
            label = ("Yes", "No")[len(out) % 2]
            facet = facets[(len(out) // 2) % len(facets)]
            ex = cd.make_example(spec, "ta", label, seed, cfg, 10, facet=facet, short=True)
            drawn, _ = video_scene(ex.scene, ex.source, ex.seed, cfg)
            text = describe(drawn, ex.seed, motion)
            body = f"{ex.question} {text}" if question_first else f"{text} {ex.question}"
            user = f"<|im_start|>user\n{body}<|im_end|>\n<|im_start|>assistant\n"
            ids = tokenizer(user + '{"answer": "', add_special_tokens=False)["input_ids"]
            extra: list[tuple[list[int], int]] = []
            if aux:
                for prefix, scene in zip(aux_heads(facet, keyed), (drawn, ex.scene)):
                    word = tokenizer(f" {facet_value(scene, facet)}", add_special_tokens=False)["input_ids"][0]
                    extra.append((tokenizer(user + prefix, add_special_tokens=False)["input_ids"], word))
            out.append((ids, answer_ids[label == "No"], extra, facet))
        seed += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--facet", default="Color Requirement",
                        help="a TA facet, or several separated by commas (trained mixed, scored each)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--train-examples", type=int, default=3000)
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--aux-share", type=float, default=0.0, help="share of auxiliary word targets (doc)")
    parser.add_argument("--aux-keyed", action="store_true", help="auxiliary prefixes that name the facet")
    parser.add_argument("--question-first", action="store_true", help="the question before the description")
    parser.add_argument("--describe-motion", action="store_true",
                        help="the description also gives each object's motion and start cell (all six facets)")
    parser.add_argument("--text-layers", type=int, default=CriticArch.text_layers)
    parser.add_argument("--text-hidden", type=int, default=CriticArch.text_hidden)
    args = parser.parse_args()
    facets = [f.strip() for f in args.facet.split(",")]
    unknown = [f for f in facets if f not in cd.TA_FACETS]
    if unknown:
        parser.error(f"unknown facet(s) {unknown}; expected TA facets from {cd.TA_FACETS}")
    described = cd.TA_FACETS if args.describe_motion else DESCRIBED_FACETS
    if args.aux_share and any(f not in described for f in facets):
        parser.error(f"--aux-share needs facets the description names: from {described} (or --describe-motion)")
    torch.set_num_threads(1)
    cfg = RenderConfig()
    with torch.device("cpu"):
        model, processor = build_critic_model(train_tokenizer(cd.text_corpus(2000), 1024),
                                              CriticArch(text_layers=args.text_layers, text_hidden=args.text_hidden), 0)
    tok = processor.tokenizer
    answer_ids = tuple(tok.convert_tokens_to_ids(["Yes", "No"]))
    t0 = time.time()
    train = make_examples(tok, facets, "train", args.train_examples, 1, cfg, answer_ids, args.aux_share > 0,
                          args.aux_keyed, args.question_first, args.describe_motion)
    held = make_examples(tok, facets, "heldout", args.held_out, cd.HELD_OUT_SEED0, cfg, answer_ids,
                         question_first=args.question_first, motion=args.describe_motion)
    print(f"data: {len(train)} train, {len(held)} held-out examples in {time.time() - t0:.0f}s", flush=True)
    params = [p for n, p in model.named_parameters() if not n.startswith("model.visual")]
    model.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)

    def loss_and_accuracy(batch: list[tuple[list[int], int]]) -> tuple[torch.Tensor, float]:
        """Next-token CE at the last prompt position; accuracy of Yes vs No on the Yes/No rows."""
        length = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([[tok.pad_token_id] * (length - len(i)) + i for i, _ in batch])  # [B, L], left-padded
        mask = (ids != tok.pad_token_id).long()
        logits = model(input_ids=ids, attention_mask=mask).logits[:, -1].float()  # [B, V]
        target = torch.tensor([t for _, t in batch])
        yes, no = answer_ids
        decision = (target == yes) | (target == no)
        pred = torch.where(logits[:, yes] > logits[:, no], yes, no)
        acc = float((pred == target)[decision].float().mean()) if decision.any() else float("nan")
        return torch.nn.functional.cross_entropy(logits, target), acc

    rng = random.Random(0)
    for step in range(1, args.steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, step / 50)
        batch = []
        for ids, target, extra, _ in rng.sample(train, 32):
            batch.append(rng.choice(extra) if extra and rng.random() < args.aux_share else (ids, target))
        loss, acc = loss_and_accuracy(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % 100 == 0:
            per_facet = {}
            with torch.no_grad():
                for facet in facets:
                    rows = [(i_, t) for i_, t, _, f in held if f == facet]
                    per_facet[facet] = sum(loss_and_accuracy(rows[i:i + 50])[1] * len(rows[i:i + 50])
                                           for i in range(0, len(rows), 50)) / len(rows)
            held_acc = sum(per_facet.values()) / len(per_facet)
            detail = " ".join(f"{f.split()[0]} {a:.3f}" for f, a in per_facet.items()) if len(facets) > 1 else ""
            print(f"step {step} loss {loss.item():.3f} batch acc {acc:.2f} held-out {held_acc:.3f} {detail} "
                  f"{time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
