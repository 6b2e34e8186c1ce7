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

``--aux-share p`` (Environment, Lighting, Color Requirement only): a share p of the training examples keep the
prompt but end the assistant turn with ``Video shows:`` (target: the video's value word, e.g. " dim", the
background or the first object's colour) or ``Question asks:`` (target: the question's value word). Each of these
has a direct gradient to one of the two words the Yes/No answer compares, which the Yes/No target alone does not:
there, either word alone carries no information about the label (an XOR), so attention to it is not rewarded
until both are attended.

    .venv/bin/python scripts/experiments/critic_text_lm.py --facet "Color Requirement" --steps 1500
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from critic_concept_lm import AUX_HEADS, facet_value  # the same auxiliary answers (this script's directory)

from vidreward.world import critic_data as cd
from vidreward.world.critic_concepts import video_scene
from vidreward.world.critic_model import CriticArch, build_critic_model, train_tokenizer
from vidreward.world.render import RenderConfig
from vidreward.world.scene import SceneSpec, sample_scene
from vidreward.world.splits import split_of

#: facets whose value words the description holds (the ones ``--aux-share`` can ask for)
DESCRIBED_FACETS: tuple[str, ...] = ("Environment", "Lighting", "Color Requirement")


def describe(scene: SceneSpec, seed: int) -> str:
    """``scene`` (the one a video draws) in words, its objects in a ``seed``-fixed random order."""
    objects = [f"a {o.size} {o.color} {o.shape}" for o in scene.objects]
    random.Random(seed).shuffle(objects)
    return f"Video: a {scene.background} background, {scene.lighting} light, " + " and ".join(objects) + "."


def make_examples(tokenizer, facet: str, split: str, count: int, seed: int, cfg: RenderConfig,
                  answer_ids: tuple[int, int], aux: bool = False
                  ) -> list[tuple[list[int], int, list[tuple[list[int], int]]]]:
    """``count`` balanced (prompt ids, answer id, auxiliary pairs) of ``split`` scenes from ``seed`` on; with ``aux``
    the auxiliary pairs are the (ids, target) of the ``Video shows:`` and ``Question asks:`` prompts (module doc)."""
    out = []
    while len(out) < count:
        spec = sample_scene(seed)
        if split_of(spec) == split:
            label = ("Yes", "No")[len(out) % 2]
            ex = cd.make_example(spec, "ta", label, seed, cfg, 10, facet=facet, short=True)
            drawn, _ = video_scene(ex.scene, ex.source, ex.seed, cfg)
            user = f"<|im_start|>user\n{describe(drawn, ex.seed)} {ex.question}<|im_end|>\n<|im_start|>assistant\n"
            ids = tokenizer(user + '{"answer": "', add_special_tokens=False)["input_ids"]
            extra: list[tuple[list[int], int]] = []
            if aux:
                for prefix, scene in zip(AUX_HEADS, (drawn, ex.scene)):
                    word = tokenizer(f" {facet_value(scene, facet)}", add_special_tokens=False)["input_ids"][0]
                    extra.append((tokenizer(user + prefix, add_special_tokens=False)["input_ids"], word))
            out.append((ids, answer_ids[label == "No"], extra))
        seed += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--facet", default="Color Requirement", choices=cd.TA_FACETS)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--train-examples", type=int, default=3000)
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--aux-share", type=float, default=0.0, help="share of auxiliary word targets (doc)")
    args = parser.parse_args()
    if args.aux_share and args.facet not in DESCRIBED_FACETS:
        parser.error(f"--aux-share needs a facet the description names: one of {DESCRIBED_FACETS}")
    torch.set_num_threads(1)
    cfg = RenderConfig()
    with torch.device("cpu"):
        model, processor = build_critic_model(train_tokenizer(cd.text_corpus(2000), 1024), CriticArch(), 0)
    tok = processor.tokenizer
    answer_ids = tuple(tok.convert_tokens_to_ids(["Yes", "No"]))
    t0 = time.time()
    train = make_examples(tok, args.facet, "train", args.train_examples, 1, cfg, answer_ids, args.aux_share > 0)
    held = make_examples(tok, args.facet, "heldout", args.held_out, cd.HELD_OUT_SEED0, cfg, answer_ids)
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
        for ids, target, extra in rng.sample(train, 32):
            batch.append(rng.choice(extra) if extra and rng.random() < args.aux_share else (ids, target))
        loss, acc = loss_and_accuracy(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % 100 == 0:
            with torch.no_grad():
                held_acc = sum(loss_and_accuracy([(i_, t) for i_, t, _ in held[i:i + 50]])[1] * len(held[i:i + 50])
                               for i in range(0, len(held), 50)) / len(held)
            print(f"step {step} loss {loss.item():.3f} batch acc {acc:.2f} held-out {held_acc:.3f} "
                  f"{time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
