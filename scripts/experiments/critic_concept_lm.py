"""Experiment (not a build stage): can the tiny world critic's language model answer the world questions when its
visual tokens are ideal?

The vision tower is bypassed: each merged visual token is replaced by a *concept token*, the sum of the word
embeddings of what that token's region really shows (:mod:`vidreward.world.critic_concepts`: background, lighting,
object colour / shape / measured size, pixel defects) plus one learned base vector; concepts without a caption word
(``tiny``, ``stretched``, ``noise``, ``blur``, ``flicker``) get learned vectors. A word's embedding is the mean over
its single-token spellings (" bright", "Bright": the facet text says "Bright lighting."), the set the align stage
scores visual tokens against. The tokens enter the real
``Qwen2_5_VLForConditionalGeneration`` through ``mm_encoder_outputs``, at the positions (and M-RoPE positions) of the
video placeholders, so everything after the vision tower is the shipped critic's path. The language model and the
concept vectors train on the build's stage (iii) examples (``--mode mixed``: every dimension; ``--mode ta_short``:
TA facets asked with the short question) with the build's weighted answer NLL. Held-out accuracy (the build's fixed
held-out set, or 96 balanced short TA questions) is printed every ``--eval-every`` steps with and without the
concept tokens rolled across examples (the shuffled-frames control) and written to ``<out>/log.json``.

If the language model cannot learn a dimension from ideal tokens, no vision tower will teach it; if it can, the
critic build reduces to regressing the vision tower onto these tokens.

    .venv/bin/python scripts/experiments/critic_concept_lm.py --out runs/critic_concept_lm --steps 600
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from vidreward.critics.vlm import VLMCritic
from vidreward.world import critic_data as cd
from vidreward.world.critic_align import CONCEPT_WORDS, concept_token_ids
from vidreward.world.critic_batch import Batch, encode_batch
from vidreward.world.critic_concepts import EXTRA_CONCEPTS, example_concepts
from vidreward.world.critic_curriculum import CURRICULUM, curriculum_example, train_scene
from vidreward.world.critic_model import CriticArch, build_critic_model, train_tokenizer
from vidreward.world.render import RenderConfig
from vidreward.world.scene import sample_scene
from vidreward.world.splits import split_of


class ConceptTokens(torch.nn.Module):
    """Concept sets -> token vectors: sum of the concepts' vectors (word embeddings or learned) + a base vector."""

    def __init__(self, critic: VLMCritic):
        super().__init__()
        words = [c for c in CONCEPT_WORDS if c not in EXTRA_CONCEPTS]
        spellings = concept_token_ids(critic.tokenizer)  # " bright", "Bright", ...: what the align stage scores
        self.embeddings = critic.model.get_input_embeddings().weight  # tied with the LM head
        self.spelling_mean = torch.zeros(len(words), self.embeddings.shape[0])  # [n_words, vocab]
        for i, w in enumerate(words):
            self.spelling_mean[i, spellings[w]] = 1.0 / len(spellings[w])
        self.index = {c: i for i, c in enumerate(words + list(EXTRA_CONCEPTS))}
        hidden = self.embeddings.shape[1]
        self.extra = torch.nn.Parameter(torch.randn(len(EXTRA_CONCEPTS) + 1, hidden) * 0.02)  # last: the base

    def forward(self, sets_per_video: list[list[set[str]]]) -> BaseModelOutputWithPooling:
        table = torch.cat([self.spelling_mean @ self.embeddings, self.extra])  # [n_concepts + 1, hidden]
        videos = []
        for tokens in sets_per_video:
            multi_hot = torch.zeros(len(tokens), len(self.index) + 1)  # [n_tokens, n_concepts + 1]
            for j, concepts in enumerate(tokens):
                for c in concepts:
                    multi_hot[j, self.index[c]] = 1.0
            multi_hot[:, -1] = 1.0
            videos.append(multi_hot @ table)  # [n_tokens, hidden]
        return BaseModelOutputWithPooling(pooler_output=tuple(videos))


def answer_loss(model, batch: Batch, features: BaseModelOutputWithPooling) -> tuple[torch.Tensor, list[str | None]]:
    """The build's weighted answer NLL and the scored decisions, with logits only where a target exists."""
    hidden = model.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                         mm_token_type_ids=batch.mm_token_type_ids, video_grid_thw=batch.video_grid_thw,
                         second_per_grid_ts=batch.second_per_grid_ts, use_cache=False,
                         mm_encoder_outputs={"video": features}).last_hidden_state  # [B, L, H]
    targets = batch.labels >= 0  # [B, L]
    logits = model.lm_head(hidden[targets]).float()  # [N, V]
    nll = torch.nn.functional.cross_entropy(logits, batch.labels[targets], reduction="none")
    weights = batch.weights[targets]
    row = torch.full(batch.labels.shape, -1, dtype=torch.long)
    row[targets] = torch.arange(int(targets.sum()))
    preds = []
    for b, pos in enumerate(batch.eval_pos):
        if pos is None:
            preds.append(None)
        else:
            scores = logits[row[b, pos]]
            preds.append("Yes" if scores[batch.yes_id] > scores[batch.no_id] else "No")
    return (nll * weights).sum() / weights.sum(), preds


def short_ta_held_out(rcfg: RenderConfig, count: int = 96) -> list[cd.CriticExample]:
    """Balanced short TA questions on held-out scenes, the facets in turn."""
    out, seed = [], cd.HELD_OUT_SEED0
    for i in range(count):
        spec = sample_scene(seed)
        while split_of(spec) != "heldout":
            seed += 1
            spec = sample_scene(seed)
        out.append(cd.make_example(spec, "ta", ("Yes", "No")[i % 2], seed, rcfg, 10,
                                   facet=cd.TA_FACETS[(i // 2) % len(cd.TA_FACETS)], short=True))
        seed += 1
    return out


def concept_sets(examples, n_frames, rcfg, shuffle: bool = False) -> list[list[set[str]]]:
    """Per video in prompt order (video, then reference); ``shuffle`` rolls the generated video's tokens."""
    sets = [example_concepts(e, n, rcfg) for e, n in zip(examples, n_frames)]
    if shuffle:
        rolled = [list(s) for s in sets]
        groups: dict[str, list[int]] = {}
        for i, e in enumerate(examples):
            groups.setdefault(e.dimension, []).append(i)
        for idx in groups.values():
            for a, b in zip(idx, idx[1:] + idx[:1]):
                rolled[a][0] = sets[b][0]
        sets = rolled
    return [video for per_example in sets for video in per_example]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--layers", type=int, default=2, help="text layers (the shipped critic has 2)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mode", choices=("mixed", "ta_short"), default="mixed")
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--facets", default="", help="comma-separated TA facets to train on (ta_short; default all)")
    parser.add_argument("--schedule", default="",
                        help="ta_short curriculum 'Facet:steps;Facet:steps;...': stage s trains on its facet half of "
                             "the time and on the earlier stages' facets the other half (overrides --steps/--facets)")
    parser.add_argument("--init-state", default="", help="state.pt of an earlier run to start from")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out, rcfg = Path(args.out), RenderConfig()
    init = out / "init"
    if not (init / "model.safetensors").is_file():
        model, processor = build_critic_model(train_tokenizer(cd.text_corpus(2000), 1024),
                                              CriticArch(text_layers=args.layers), 0)
        model.save_pretrained(init, safe_serialization=True)
        processor.save_pretrained(init)
    critic = VLMCritic.from_pretrained(init)
    model = critic.model
    concepts = ConceptTokens(critic)
    if args.init_state:
        state = torch.load(args.init_state)
        model.load_state_dict(state["model"])
        concepts.extra.data.copy_(state["extra"])
    held = cd.held_out_examples(48, rcfg) if args.mode == "mixed" else short_ta_held_out(rcfg)
    params = [p for n, p in model.named_parameters() if not n.startswith("model.visual")] + [concepts.extra]
    model.model.visual.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)  # VLMCritic loads frozen
    model.train()
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)

    def evaluate(shuffle: bool) -> dict[str, float]:
        hits: dict[str, list[int]] = {}
        with torch.no_grad():
            for s in range(0, len(held), 32):
                part = held[s:s + 32]
                batch = encode_batch(critic, part, [10] * len(part))
                _, preds = answer_loss(model, batch, concepts(concept_sets(part, [10] * len(part), rcfg, shuffle)))
                for e, p in zip(part, preds):
                    hits.setdefault(e.dimension if args.mode == "mixed" else e.facet, []).append(int(p == e.label))
        return {k: round(sum(v) / len(v), 3) for k, v in hits.items()}

    facets = [f for f in args.facets.split(",") if f] or list(cd.TA_FACETS)
    stages = [(unit.rsplit(":", 1)[0], int(unit.rsplit(":", 1)[1])) for unit in args.schedule.split(";") if unit]
    if stages:
        args.steps = sum(n for _, n in stages)

    def facet_for(step: int, rng: random.Random) -> str:
        if not stages:
            return rng.choice(facets)
        end = 0
        for s, (facet, n) in enumerate(stages):
            end += n
            if step <= end:
                return facet if s == 0 or rng.random() < 0.5 else rng.choice([f for f, _ in stages[:s]])
        return rng.choice([f for f, _ in stages])

    log, t0 = [], time.time()
    for step in range(1, args.steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, step / 50)
        examples, n_frames = [], []
        for i in range(args.batch_size):  # pairs 2j, 2j + 1: same scene and unit, labels Yes / No
            rng = random.Random(f"concept-lm-{step}-{i // 2}")
            if args.mode == "mixed":
                ex, n = curriculum_example(rng, i, len(CURRICULUM), 0.0, rcfg)
            else:
                seed, spec = train_scene(rng, rcfg.num_frames)
                ex, n = cd.make_example(spec, "ta", ("Yes", "No")[i % 2], seed, rcfg, 10,
                                        facet=facet_for(step, rng), short=True), 10
            examples.append(ex)
            n_frames.append(n)
        batch = encode_batch(critic, examples, n_frames, decision_weight=20.0)
        loss, preds = answer_loss(model, batch, concepts(concept_sets(examples, n_frames, rcfg)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % 20 == 0:
            scored = [(p, e.label) for p, e in zip(preds, examples) if e.label]
            print(f"step {step} loss {loss.item():.3f} batch acc {sum(p == y for p, y in scored) / len(scored):.2f} "
                  f"{time.time() - t0:.0f}s", flush=True)
        if step % args.eval_every == 0 or step == args.steps:
            acc, shuffled = evaluate(False), evaluate(True)
            print(f"step {step} held-out {acc} | concept tokens shuffled {shuffled}", flush=True)
            log.append({"step": step, "acc": acc, "shuffled": shuffled, "seconds": round(time.time() - t0, 1)})
            (out / "log.json").write_text(json.dumps(log, indent=1))
            torch.save({"model": model.state_dict(), "extra": concepts.extra.detach()}, out / "state.pt")


if __name__ == "__main__":
    main()
