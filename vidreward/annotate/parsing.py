"""Tolerant parsers for LLM/VLM outputs: caption decompositions (Figs. 13-14) and Yes/No answers (Figs. 15-17).

LLMs rarely return clean JSON. Each parser tries, in order:

1. JSON after light repair: code fences removed, curly quotes (‘ ’ “ ”) straightened, the outermost
   ``{...}`` cut out, trailing commas dropped;
2. a Python literal (single-quoted dicts, ``True``/``False``);
3. a line scan for ``key: value`` pairs whose key is a known key (bullets ``-``/``*``/``•``, numbering
   ``1.``/``1)``/``1).``, quotes and ``**bold**`` around keys are allowed; lines without a known key continue
   the previous value). This reads the paper's own Fig. 14 example, whose keys carry curly quotes, an
   apostrophe inside a key and no commas between entries.

Every failure is a :class:`ParseError` whose message says what was missing, so the decompose stage can feed
it back to the LLM. No other exception escapes these functions.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections.abc import Iterable
from typing import Any

from vidreward.critics.queries import DECISION_KEYS, FACET_KEYS

MAX_CHARS = 50_000  # longer outputs are cut: no reasonable answer is this long
_QUOTES = {"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00b4": "'"}
_FENCE = re.compile(r"```[a-zA-Z]*")
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_LEAD = re.compile(r"^\s*(?:[-*\u2022+>#]+|\(?\d+\s*[.)]+)?\s*")
_EDGE = "'\"` *_,"
_BARE_YES_NO = re.compile(r"(:\s*)(yes|no|Yes|No|YES|NO)(\s*[,}\n])")


class ParseError(ValueError):
    """An LLM output could not be parsed; the message says what was expected (it is fed back to the LLM)."""


def normalize_key(key: str) -> str:
    """Lowercase letters only: ``‘Objects’ Motion’`` and ``objects' motion`` both become ``objectsmotion``."""
    return re.sub(r"[^a-z]", "", str(key).lower())


_FACET_ALIASES: dict[str, str] = {normalize_key(k): k for k in FACET_KEYS}
_FACET_ALIASES.update(
    {
        "object": "Object(s)", "objectss": "Object(s)", "objectsmotion": "Objects' Motion",
        "objectmotion": "Objects' Motion", "objectlocation": "Object Location / Spatial Distribution",
        "spatialdistribution": "Object Location / Spatial Distribution", "color": "Color Requirement",
        "colour": "Color Requirement", "colourrequirement": "Color Requirement",
        "textpresence": "Letter/Text Presence", "lettertext": "Letter/Text Presence", "camera": "Camera Motion",
    }
)


def clean_text(text: Any) -> str:
    """Straighten curly quotes, drop code fences and NULs, and cut to :data:`MAX_CHARS`."""
    if not isinstance(text, str):
        raise ParseError(f"expected text, got {type(text).__name__}")
    text = text[:MAX_CHARS].replace("\x00", "")
    for curly, straight in _QUOTES.items():
        text = text.replace(curly, straight)
    return _FENCE.sub("", text).strip()


def _outer_braces(text: str) -> str | None:
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else None


def _candidates(text: str) -> list[str]:
    body = _outer_braces(text)
    if body is None:  # a bare '"key": value, ...' list without braces
        body = "{" + text.strip().rstrip(",") + "}" if ":" in text else None
    if body is None:
        return []
    no_commas = _TRAILING_COMMA.sub(r"\1", body)
    return [body, no_commas, _BARE_YES_NO.sub(r'\1"\2"\3', no_commas)]


def parse_mapping(text: str) -> dict[str, Any] | None:
    """The first dict found by JSON (with repairs) or Python-literal parsing, else None."""
    for candidate in _candidates(text):
        for loader in (json.loads, ast.literal_eval):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # literal_eval warns on odd escapes in junk
                    value = loader(candidate)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(value, dict):
                return {str(k): v for k, v in value.items()}
    return None


def parse_json_list(text: str) -> list[Any] | None:
    """The outermost ``[...]`` of ``text`` (inside code fences or other text) when it is a JSON list, else None."""
    start, end = text.find("["), text.rfind("]")
    if not 0 <= start < end:
        return None
    try:
        value = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


def scan_key_values(text: str, aliases: dict[str, str]) -> dict[str, str]:
    """Line scan for ``key: value`` where ``normalize_key(key)`` is in ``aliases`` (maps to canonical keys).

    A line is split at the first ``:`` whose left part is a known key; other lines (``1). ...`` items,
    wrapped text) are appended to the current value. Braces, quotes and trailing commas are stripped.
    """
    found: dict[str, list[str]] = {}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.strip().strip("{}").strip()
        if not line:
            continue
        body = _LEAD.sub("", line)
        key = None
        for match in re.finditer(":", body):
            canon = aliases.get(normalize_key(body[: match.start()].strip(_EDGE)))
            if canon is not None and len(body[: match.start()]) <= 60:
                key, value = canon, body[match.end() :]
                break
        if key is not None:
            current = key
            found[current] = [value.strip(_EDGE + ":")]
        elif current is not None:
            found[current].append(line.strip(_EDGE))
    return {k: " ".join(p for p in parts if p).strip() for k, parts in found.items()}


def _as_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(_as_text(v) for v in value).strip()
    if isinstance(value, dict):
        return " ".join(f"{k}: {_as_text(v)}" for k, v in value.items()).strip()
    return "" if value is None else str(value).strip()


def parse_decomposition(text: str) -> dict[str, str]:
    """Parse a Fig. 14-style caption decomposition into {canonical facet key: description}.

    Unknown keys are ignored; facets the LLM left out are simply absent. Raises :class:`ParseError`
    when no facet key at all is found or every facet value is empty.
    """
    text = clean_text(text)
    mapping = parse_mapping(text)
    result: dict[str, str] = {}
    if mapping is not None:
        for key, value in mapping.items():
            canon = _FACET_ALIASES.get(normalize_key(key))
            if canon is not None and canon not in result:
                result[canon] = _as_text(value)
    if not result:
        result = scan_key_values(text, _FACET_ALIASES)
    result = {k: v for k, v in result.items() if v}
    if not result:
        raise ParseError(
            "no decomposition found: answer with a dict whose keys are "
            + ", ".join(f'"{k}"' for k in FACET_KEYS)
            + ' and whose values are short descriptions (or "Not explicitly stated.")'
        )
    return {k: result[k] for k in FACET_KEYS if k in result}


def normalize_yes_no(value: Any, key: str = "answer") -> str:
    """``"Yes"`` or ``"No"`` from Yes/yes/YES./true/"**No**"/False; ParseError for "Yes or No" and the like."""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    words = re.findall(r"[a-z]+", str(value).lower())
    decisions = {"yes": "Yes", "true": "Yes", "y": "Yes", "no": "No", "false": "No", "n": "No"}
    first = decisions.get(words[0]) if words else None
    second = decisions.get(words[2] if len(words) > 2 and words[1] == "or" else words[1] if len(words) > 1 else "")
    if first is not None and (second is None or second == first):
        return first
    raise ParseError(f'"{key}" must be "Yes" or "No", got {str(value)[:40]!r}')


def _collect(text: str, keys: Iterable[str], extra: Iterable[str]) -> dict[str, Any]:
    aliases = {normalize_key(k): k for k in (*keys, *extra)}
    mapping = parse_mapping(text)
    if mapping is not None:
        got = {aliases[normalize_key(k)]: v for k, v in mapping.items() if normalize_key(k) in aliases}
        if all(k in got for k in keys):
            return got
    return scan_key_values(text, aliases)


def _parse_evidence(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [_as_text(v) for v in value if _as_text(v)]
    text = _as_text(value)
    try:
        parsed = json.loads(_TRAILING_COMMA.sub(r"\1", text))
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, list):
        return [_as_text(v) for v in parsed if _as_text(v)]
    return [p.strip(" \"'") for p in text.strip("[] ").split('",') if p.strip(" \"'")]


def parse_answer(text: str, dimension: str) -> dict[str, Any]:
    """Parse a VLM answer to a TA / Phy / VQ query into a normalized dict.

    - ``ta``: ``{"answer": "Yes"|"No", "explanation": str}``; a bare reply starting with Yes/No
      ("Yes. The video shows ...") is accepted too.
    - ``phy``: the five Fig. 16 keys, each "Yes"/"No", plus ``"explanation"`` when the VLM gave one.
    - ``vq``: ``{"has obvious defect": "Yes"|"No", "dominant issue": str, "evidence": [str, ...]}``.
    """
    if dimension not in DECISION_KEYS:
        raise ParseError(f"unknown query dimension {dimension!r}")
    text = clean_text(text)
    keys = DECISION_KEYS[dimension]
    extra = {"ta": ("explanation",), "phy": ("explanation",), "vq": ("dominant issue", "evidence")}[dimension]
    got = _collect(text, keys, extra)
    if dimension == "ta" and "answer" not in got:
        match = re.match(r"^\W*(yes|no)\b\W*(.*)$", text, flags=re.IGNORECASE | re.DOTALL)
        if match:
            got = {"answer": match.group(1), "explanation": match.group(2)}
    missing = [k for k in keys if k not in got]
    if missing:
        raise ParseError(f"answer is missing {missing}: reply with JSON holding the keys {list(keys + extra)}")
    out: dict[str, Any] = {k: normalize_yes_no(got[k], k) for k in keys}
    if dimension == "vq":
        out["dominant issue"] = _as_text(got.get("dominant issue", "")) or "none"
        out["evidence"] = _parse_evidence(got.get("evidence", []))
    elif "explanation" in got or dimension == "ta":
        out["explanation"] = _as_text(got.get("explanation", ""))
    return out
