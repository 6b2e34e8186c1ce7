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

``--where`` adds what the default concept tokens lack, where an object starts and how it moves: every token an
object covers (>= ``COVER``, either frame of the patch) also gets the word embeddings of the object's start cell
(:data:`WHERE_WORDS`: row 0 -> "top"/"upper", row 2 -> "bottom"/"lower", column 0 -> "left", column 2 -> "right",
the middle row or column -> "center"/"middle"/"centre") and a learned vector for its motion (one per motion, so the
motion "left" does not collide with the place "left"). It asks whether Location and Motion become learnable once
they are readable from the tokens; it does not say that a vision tower can produce them.

``--gated "F1,F2,..."`` is a curriculum gated on accuracy: phase k trains on facet F_k half of the time (the
earlier facets the other half) until F_k's running batch accuracy over its last ``--gate-window`` examples reaches
``--gate-acc`` (at least 50 steps), or after ``--gate-cap`` steps; then the next facet; after the last one, all
facets uniformly until ``--steps``. Phase changes are printed and logged.

``--occlude`` drops the background and lighting words from tokens that hold an object, so an object token carries
only the object's words (a sparser, more distinct token; asks whether the summed scene words drown the object's).

``--broadcast`` makes every token of a temporal patch carry what the whole patch shows: the union of its tokens'
concepts, plus a learned vector per (colour, shape) pair present (``pair:<colour>-<shape>``, so "the triangle is
magenta" is not confused with a magenta circle beside a blue triangle). It asks whether object facets become as
easy as Environment once the language model can read them by pooling over all video tokens instead of retrieving
a few (a vision tower's attention within a temporal patch could broadcast them; not measured here).

``--aux-share p`` (as in ``critic_text_lm.py``): a share p of the ``ta_short`` training examples keep video and
question but are answered ``Video shows: <word>`` (the drawn scene's value of the facet: background, lighting,
first object's colour / shape / motion / start cell) or ``Question asks: <word>`` (the prompt's value), the word
weighted like a decision token. Each gives a direct gradient to one side of the comparison the Yes/No answer needs.
``--aux-keyed`` names the facet in those prefixes (``Video Lighting:`` / ``Question Lighting:``).

``--question-first`` gives the critic :data:`vidreward.world.critic_model.QWEN_VL_TEXT_FIRST_CHAT_TEMPLATE`, so the
question comes before the video and every visual token sees it.

If the language model cannot learn a dimension from ideal tokens, no vision tower will teach it; if it can, the
critic build reduces to regressing the vision tower onto these tokens.

    .venv/bin/python scripts/experiments/critic_concept_lm.py --out runs/critic_concept_lm --steps 600
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import deque
from pathlib import Path

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from vidreward.critics.vlm import VLMCritic
from vidreward.world import critic_data as cd
from vidreward.world.critic_align import CONCEPT_WORDS, concept_token_ids, single_token_spellings
from vidreward.world.critic_aux import aux_example as library_aux_example
from vidreward.world.critic_aux import aux_heads as keyed_aux_heads
from vidreward.world.critic_batch import Batch, encode_batch
from vidreward.world.critic_concepts import (
    COVER,
    EXTRA_CONCEPTS,
    example_concepts,
    subsample_covers,
    video_scene,
)
from vidreward.world.critic_curriculum import CURRICULUM, curriculum_example, train_scene
from vidreward.world.critic_model import (
    QWEN_VL_TEXT_FIRST_CHAT_TEMPLATE,
    CriticArch,
    save_initial_critic,
)
from vidreward.world.render import RenderConfig
from vidreward.world.scene import MOTIONS, OBJECT_COLORS, SHAPES
from vidreward.world.splits import first_scene_of_split

#: start-cell concepts of ``--where`` -> their words (row / column index 1 is the centre of either axis)
WHERE_WORDS: dict[str, tuple[str, ...]] = {"top": ("top", "upper"), "bottom": ("bottom", "lower"), "left": ("left",),
                                           "right": ("right",), "center": ("center", "middle", "centre")}
#: start-cell row / column index -> its place word (``--where`` tokens; the text form's motion descriptions)
ROW_WHERE: tuple[str, str, str] = ("top", "center", "bottom")
COL_WHERE: tuple[str, str, str] = ("left", "center", "right")


def where_sets(ex: cd.CriticExample, n_frames: int, rcfg: RenderConfig) -> list[set[str]]:
    """Per merged token of ``ex``'s video: ``where:<cell word>`` and ``motion:<motion>`` of the objects covering it."""
    scene, tracks = video_scene(ex.scene, ex.source, ex.seed, rcfg)
    _, covers = subsample_covers(tracks, n_frames, rcfg)  # [N_f, 3, 3] each
    out = []
    for t in range(n_frames // 2):
        for r in range(3):
            for c in range(3):
                words: set[str] = set()
                for obj, cov in zip(scene.objects, covers):
                    if max(cov[2 * t, r, c], cov[2 * t + 1, r, c]) >= COVER:
                        words |= {f"where:{ROW_WHERE[obj.row]}", f"where:{COL_WHERE[obj.col]}", f"motion:{obj.motion}"}
                out.append(words)
    return out


class ConceptTokens(torch.nn.Module):
    """Concept sets -> token vectors: sum of the concepts' vectors (word embeddings or learned) + a base vector."""

    def __init__(self, critic: VLMCritic):
        super().__init__()
        words = [c for c in CONCEPT_WORDS if c not in EXTRA_CONCEPTS] + [f"where:{w}" for w in WHERE_WORDS]
        spellings = concept_token_ids(critic.tokenizer)  # " bright", "Bright", ...: what the align stage scores
        spellings.update({f"where:{w}": single_token_spellings(critic.tokenizer, v) for w, v in WHERE_WORDS.items()})
        self.embeddings = critic.model.get_input_embeddings().weight  # tied with the LM head
        self.spelling_mean = torch.zeros(len(words), self.embeddings.shape[0])  # [n_words, vocab]
        for i, w in enumerate(words):
            self.spelling_mean[i, spellings[w]] = 1.0 / len(spellings[w])
        learned = list(EXTRA_CONCEPTS) + [f"motion:{m}" for m in MOTIONS] + [
            f"pair:{c}-{s}" for c in OBJECT_COLORS for s in SHAPES]
        self.index = {c: i for i, c in enumerate(words + learned)}
        hidden = self.embeddings.shape[1]
        self.extra = torch.nn.Parameter(torch.randn(len(learned) + 1, hidden) * 0.02)  # last: the base

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
        seed, spec = first_scene_of_split(seed, "heldout")
        out.append(cd.make_example(spec, "ta", ("Yes", "No")[i % 2], seed, rcfg, 10,
                                   facet=cd.TA_FACETS[(i // 2) % len(cd.TA_FACETS)], short=True))
        seed += 1
    return out




AUX_HEADS: tuple[str, str] = ("Video shows:", "Question asks:")


def aux_heads(facet: str, keyed: bool) -> tuple[str, str]:
    """The two auxiliary answer prefixes: :data:`AUX_HEADS`, or with ``keyed`` ones that name the facet
    (``Video Lighting:`` / ``Question Lighting:``), so the target's facet is read next to the answer."""
    return keyed_aux_heads(facet) if keyed else AUX_HEADS


def aux_example(ex: cd.CriticExample, rcfg: RenderConfig, video_side: bool, keyed: bool = False
                ) -> cd.CriticExample:
    """``ex`` answered with the video's (or the question's) value words of its facet after :func:`aux_heads`
    (:func:`vidreward.world.critic_aux.aux_example`: ``encode_batch`` weights the value's first token like a
    decision)."""
    return library_aux_example(ex, rcfg, video_side, heads=aux_heads(ex.facet, keyed))


def broadcast_sets(ex: cd.CriticExample, tokens: list[set[str]], n_frames: int, rcfg: RenderConfig) -> list[set[str]]:
    """Every token of a temporal patch gets the union of the patch's concepts and its (colour, shape) pairs."""
    _, tracks = video_scene(ex.scene, ex.source, ex.seed, rcfg)
    idx, covers = subsample_covers(tracks, n_frames, rcfg)  # [N_f], [N_f, 3, 3] each
    out = []
    for t in range(n_frames // 2):
        patch = set().union(*tokens[9 * t:9 * t + 9])
        for track, cov in zip(tracks, covers):
            if cov[2 * t:2 * t + 2].max() >= COVER:
                patch |= {f"pair:{track.color}-{track.shapes[int(idx[2 * t])]}"}
        out.extend([set(patch) for _ in range(9)])
    return out


def concept_sets(examples, n_frames, rcfg, shuffle: bool = False, where: bool = False,
                 occlude: bool = False, broadcast: bool = False) -> list[list[set[str]]]:
    """Per video in prompt order (video, then reference); ``shuffle`` rolls the generated video's tokens;
    ``where`` adds :func:`where_sets` to the generated video's tokens; ``occlude`` drops the background and
    lighting words of object tokens; ``broadcast`` replaces the generated video's tokens by
    :func:`broadcast_sets`."""
    sets = [example_concepts(e, n, rcfg, occlude) for e, n in zip(examples, n_frames)]
    if where:
        for e, n, per_video in zip(examples, n_frames, sets):
            per_video[0] = [a | b for a, b in zip(per_video[0], where_sets(e, n, rcfg))]
    if broadcast:
        for e, n, per_video in zip(examples, n_frames, sets):
            per_video[0] = broadcast_sets(e, per_video[0], n, rcfg)
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
    parser.add_argument("--where", action="store_true", help="add start-cell words and motion vectors to tokens")
    parser.add_argument("--aux-share", type=float, default=0.0, help="share of auxiliary word answers (doc)")
    parser.add_argument("--aux-keyed", action="store_true", help="auxiliary prefixes that name the facet")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and training draws (0: as before)")
    parser.add_argument("--question-first", action="store_true",
                        help="the question before the video (critic_model.QWEN_VL_TEXT_FIRST_CHAT_TEMPLATE)")
    parser.add_argument("--held-out-per-facet", type=int, default=16,
                        help="ta_short held-out questions per facet (16 has shortcuts: Colour's Nos are mostly "
                             "triangles, so 0.69 needs no colour)")
    parser.add_argument("--occlude", action="store_true", help="object tokens without background/lighting words")
    parser.add_argument("--broadcast", action="store_true", help="every token carries its temporal patch's concepts")
    parser.add_argument("--gated", default="", help="accuracy-gated curriculum 'Facet,Facet,...' (module doc)")
    parser.add_argument("--gate-acc", type=float, default=0.95)
    parser.add_argument("--gate-window", type=int, default=128, help="new-facet examples in the running accuracy")
    parser.add_argument("--gate-cap", type=int, default=2000, help="max steps of one gated phase")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out, rcfg = Path(args.out), RenderConfig()
    init = out / "init"
    if not (init / "model.safetensors").is_file():
        save_initial_critic(init, cd.text_corpus(2000), CriticArch(text_layers=args.layers), args.seed)
    critic = VLMCritic.from_pretrained(init)
    if args.question_first:
        critic.processor.chat_template = QWEN_VL_TEXT_FIRST_CHAT_TEMPLATE
    model = critic.model
    concepts = ConceptTokens(critic)
    if args.init_state:
        state = torch.load(args.init_state)
        model.load_state_dict(state["model"])
        concepts.extra.data.copy_(state["extra"])
    held = cd.held_out_examples(48, rcfg) if args.mode == "mixed" else short_ta_held_out(
        rcfg, args.held_out_per_facet * len(cd.TA_FACETS))
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
                sets = concept_sets(part, [10] * len(part), rcfg, shuffle, args.where, args.occlude, args.broadcast)
                _, preds = answer_loss(model, batch, concepts(sets))
                for e, p in zip(part, preds):
                    hits.setdefault(e.dimension if args.mode == "mixed" else e.facet, []).append(int(p == e.label))
        return {k: round(sum(v) / len(v), 3) for k, v in hits.items()}

    facets = [f for f in args.facets.split(",") if f] or list(cd.TA_FACETS)
    stages = [(unit.rsplit(":", 1)[0], int(unit.rsplit(":", 1)[1])) for unit in args.schedule.split(";") if unit]
    if stages:
        args.steps = sum(n for _, n in stages)

    gated = [f for f in args.gated.split(",") if f]
    gate = {"phase": 0, "start": 1, "recent": deque(maxlen=args.gate_window)}

    def facet_for(step: int, rng: random.Random) -> str:
        if gated:
            k = gate["phase"]
            if k >= len(gated):
                return rng.choice(gated)
            return gated[k] if k == 0 or rng.random() < 0.5 else rng.choice(gated[:k])
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
            rng = random.Random(f"concept-lm-{step}-{i // 2}" + (f"-{args.seed}" if args.seed else ""))
            if args.mode == "mixed":
                ex, n = curriculum_example(rng, i, len(CURRICULUM), 0.0, rcfg)
            else:
                seed, spec = train_scene(rng, rcfg.num_frames)
                ex, n = cd.make_example(spec, "ta", ("Yes", "No")[i % 2], seed, rcfg, 10,
                                        facet=facet_for(step, rng), short=True), 10
                if args.aux_share and rng.random() < args.aux_share:
                    ex = aux_example(ex, rcfg, video_side=rng.random() < 0.5, keyed=args.aux_keyed)
            examples.append(ex)
            n_frames.append(n)
        batch = encode_batch(critic, examples, n_frames, decision_weight=20.0)
        loss, preds = answer_loss(model, batch, concepts(concept_sets(examples, n_frames, rcfg, where=args.where,
                                                                          occlude=args.occlude,
                                                                          broadcast=args.broadcast)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if gated and gate["phase"] < len(gated):
            new = gated[gate["phase"]]
            gate["recent"].extend(int(p == e.label) for p, e in zip(preds, examples) if e.facet == new and e.label)
            in_phase = step - gate["start"] + 1
            full = len(gate["recent"]) == gate["recent"].maxlen
            running = sum(gate["recent"]) / max(len(gate["recent"]), 1)
            if (in_phase >= 50 and full and running >= args.gate_acc) or in_phase >= args.gate_cap:
                print(f"step {step} phase {new} done after {in_phase} steps (running acc {running:.2f})", flush=True)
                log.append({"step": step, "phase_done": new, "phase_steps": in_phase, "running_acc": running})
                gate.update(phase=gate["phase"] + 1, start=step + 1)
                gate["recent"].clear()
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
