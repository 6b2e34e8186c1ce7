"""Self-instruct generation of HALO training prompts (Sec. 3.4, Appendix C Fig. 8).

A chat model gets the Fig. 8 instruction as the system message and, as the user message, the JSON input the
instruction describes::

    {"dimension": "<evaluation dimension>", "examples": [{"prompt": "..."}, ...]}

with a few demonstrations sampled from the dimension's example prompts (VBench prompts in the paper). The reply
should be a JSON list in the same format as the examples; :func:`parse_candidate_prompts` reads it tolerantly.
The similarity filter (:mod:`vidreward.halo.similarity`) runs afterwards.

Decisions: the paper's appendix prints the instruction with doubled braces (``{{ }}``, a Python format
template); we store the rendered text with single braces. Demonstrations are ``{"prompt": text}`` objects,
and a dimension description, when given, is appended to the dimension name (``"name: description"``), since
the paper lists "dimension descriptions" among the inputs but the input format has only these two fields.

The chat backend is any callable ``chat(messages) -> str`` over OpenAI-style ``{"role", "content"}`` messages,
e.g. one from :mod:`vidreward.llm`.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from typing import Protocol

from vidreward.annotate.parsing import parse_json_list

FIG8_INSTRUCTION = """## Background

You are an expert in generating user queries. I will provide you with an evaluation dimension, and your task is to generate user queries based on this dimension. The generated queries will be used as input for video generation models, allowing me to evaluate the quality of the generated videos based on the specified dimension. Your goal is to generate high-quality and diverse text queries that align with the provided evaluation dimension.

## Input Format

I will provide you with an evaluation dimension and some good examples in the following JSON format:

```
{
  "dimension": a string indicating the evaluation dimension,
  "examples": a list of JSON-formatted data pieces, each representing a good example for the given dimension
}
```

## Output Format

You should generate a list of high-quality and diverse query examples that are closely related to the provided dimension and examples. The generated examples should follow the writing style and tone of the provided examples. The output should be in the format of a JSON list, with the same data format as the examples in the input.

### Notions

1. Closely follow the writing style and tone of the provided examples when generating new queries.
2. Output only the JSON-formatted list of generated queries, without any additional words or characters."""
"""The Fig. 8 instruction (rendered: single braces)."""

_PROMPT_KEYS = ("prompt", "prompt_en", "query", "text", "caption")


class ChatFn(Protocol):
    """A chat backend: OpenAI-style messages in, the assistant's reply text out."""

    def __call__(self, messages: list[dict]) -> str: ...


class PromptParseError(ValueError):
    """A reply holds no candidate prompt; the message quotes the start of the reply."""


def sample_demonstrations(examples: Sequence[str], k: int, rng: random.Random) -> list[str]:
    """``k`` distinct examples drawn with ``rng`` (all of them, shuffled, when there are fewer than ``k``)."""
    if k < 1:
        raise ValueError(f"need at least one demonstration, got k={k}")
    if not examples:
        raise ValueError("no example prompts for this dimension: add some to the demonstrations file")
    return rng.sample(list(examples), min(k, len(examples)))


def build_messages(
    dimension: str, demonstrations: Sequence[str], description: str | None = None
) -> list[dict]:
    """System = Fig. 8 instruction; user = the JSON input with the dimension and the demonstrations."""
    name = f"{dimension}: {description}" if description else dimension
    payload = {"dimension": name, "examples": [{"prompt": text} for text in demonstrations]}
    return [
        {"role": "system", "content": FIG8_INSTRUCTION},
        {"role": "user", "content": json.dumps(payload, ensure_ascii=False, indent=2)},
    ]


def _item_text(item: object) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for key in _PROMPT_KEYS:
            if isinstance(item.get(key), str):
                return item[key]
        strings = [v for v in item.values() if isinstance(v, str)]
        if len(strings) == 1:
            return strings[0]
    return None


def parse_candidate_prompts(reply: str) -> list[str]:
    """Candidate prompts from a reply, in order, stripped and de-duplicated (exact text).

    Reads the outermost JSON list (inside code fences or other text); items may be strings or objects with a
    ``prompt``-like key. If there is no valid JSON list, falls back to one prompt per non-empty line, with
    bullets, numbering and surrounding quotes removed. Raises :class:`PromptParseError` when nothing is found.
    """
    items = parse_json_list(reply)
    if items is not None:
        texts = [_item_text(item) for item in items]
        texts = [t for t in texts if t]
    else:
        texts = []
        for line in reply.splitlines():
            line = line.strip()
            if not line or line.startswith("```") or line in {"[", "]", "{", "}", "[]"}:
                continue
            line = re.sub(r"^(?:[-*\u2022]|\d+[.)])\s*", "", line).strip().rstrip(",").strip()
            line = line.strip("\"'").strip()
            if line:
                texts.append(line)
    out: list[str] = []
    for text in texts:
        text = " ".join(text.split())
        if text and text not in out:
            out.append(text)
    if not out:
        raise PromptParseError(f"no candidate prompt in the reply: {reply.strip()[:200]!r}")
    return out


def generate_candidates(
    chat: ChatFn,
    dimension: str,
    examples: Sequence[str],
    num_demonstrations: int,
    rng: random.Random,
    description: str | None = None,
) -> list[str]:
    """One self-instruct round: sample demonstrations, ask ``chat``, parse the candidates (unfiltered)."""
    demonstrations = sample_demonstrations(examples, num_demonstrations, rng)
    return parse_candidate_prompts(chat(build_messages(dimension, demonstrations, description)))
