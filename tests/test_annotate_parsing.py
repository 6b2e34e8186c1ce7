"""Fuzz and hand-written cases for the tolerant LLM-output parsers: parse right or raise ParseError, nothing else."""

import json
import random

import pytest

from vidreward.annotate.parsing import (
    ParseError,
    parse_answer,
    parse_decomposition,
    parse_json_list,
    parse_mapping,
)
from vidreward.critics.queries import DECISION_KEYS, FACET_KEYS

ENV = "A city street on a rainy day."
OBJ = "Two motorbikes."

# (raw LLM output, expected {facet: value}) -- each written by hand in a style seen from real LLMs.
DECOMPOSITIONS = [
    (json.dumps({"Environment": ENV, "Object(s)": OBJ}), {"Environment": ENV, "Object(s)": OBJ}),
    ("```json\n" + json.dumps({"Environment": ENV, "Object(s)": OBJ}) + "\n```", {"Environment": ENV, "Object(s)": OBJ}),
    (f"{{'Environment': '{ENV}', 'Object(s)': '{OBJ}',}}", {"Environment": ENV, "Object(s)": OBJ}),
    (f'{{"Environment": "{ENV}", "Object(s)": "{OBJ}",}}', {"Environment": ENV, "Object(s)": OBJ}),
    (f"- Environment: {ENV}\n- Object(s): {OBJ}", {"Environment": ENV, "Object(s)": OBJ}),
    (f"* **Environment**: {ENV}\n* **Object(s)**: {OBJ}", {"Environment": ENV, "Object(s)": OBJ}),
    (f"1. Environment: {ENV}\n2. Object(s): {OBJ}", {"Environment": ENV, "Object(s)": OBJ}),
    (f"1). Environment: {ENV}\n2). Object(s): {OBJ}", {"Environment": ENV, "Object(s)": OBJ}),
    (f"Environment:\n1). A city street.\n2). Rain.\nObject(s): {OBJ}",
     {"Environment": "1). A city street. 2). Rain.", "Object(s)": OBJ}),
    (f"Here is the decomposition:\n\u2018Environment\u2019: \u2018{ENV}\u2019\n\u2018Objects\u2019 Motion\u2019: \u2018Static.\u2019",
     {"Environment": ENV, "Objects' Motion": "Static."}),
    (f"\u201cEnvironment\u201d: \u201c{ENV}\u201d, \u201cLighting\u201d: \u201cNot explicitly stated.\u201d",
     {"Environment": ENV, "Lighting": "Not explicitly stated."}),
    (json.dumps({"environment": ENV, "object location/spatial distribution": "Left."}),
     {"Environment": ENV, "Object Location / Spatial Distribution": "Left."}),
    (json.dumps({"Environment": [ENV, "Rain."], "Camera Motion": "Fixed."}),
     {"Environment": f"{ENV} Rain.", "Camera Motion": "Fixed."}),
    (json.dumps({"Environment": ENV, "Mood": "calm"}), {"Environment": ENV}),
    ("{'Lighting:': 'Not explicitly stated.', 'Colour': 'Gray.'}",
     {"Lighting": "Not explicitly stated.", "Color Requirement": "Gray."}),
    (f"Sure! {{\"Environment\": \"{ENV}\"}} Hope this helps.", {"Environment": ENV}),
    (f"Environment - {ENV}\nObject(s): {OBJ}", {"Object(s)": OBJ}),
    (f"Environment: {ENV}\n\nText presence: None", {"Environment": ENV, "Letter/Text Presence": "None"}),
    ("{\"Environment\": \"Street: wet\", \"Camera Motion\": \"Pan: left\"}",
     {"Environment": "Street: wet", "Camera Motion": "Pan: left"}),
    (f"{{\n  \"Environment\": \"{ENV}\",\n  \"Object(s)\": \"{OBJ}\"", {"Environment": ENV, "Object(s)": OBJ}),
]

BAD_DECOMPOSITIONS = [
    "", "   ", "I cannot help with that.", "{}", "{'Mood': 'calm'}", "[1, 2, 3]", "{{{{{{", "}{",
    "Environment:", "Environment: ''", "\x00\x00", "[" * 5000 + "]" * 5000, "{" * 3000, "null", "Yes",
]

TA_ANSWERS = [
    ('{"answer": "Yes", "explanation": "A street."}', {"answer": "Yes", "explanation": "A street."}),
    ("{'answer': 'no', 'explanation': 'No street.',}", {"answer": "No", "explanation": "No street."}),
    ('```json\n{"answer": "YES.", "explanation": "ok"}\n```', {"answer": "Yes", "explanation": "ok"}),
    ("Yes. The video shows a street.", {"answer": "Yes", "explanation": "The video shows a street."}),
    ("No - the motorbikes are missing.", {"answer": "No", "explanation": "the motorbikes are missing."}),
    ("answer: Yes\nexplanation: matches", {"answer": "Yes", "explanation": "matches"}),
    ('{"answer": true, "explanation": "x"}', {"answer": "Yes", "explanation": "x"}),
    ("**Answer:** No\n**Explanation:** wrong colour", {"answer": "No", "explanation": "wrong colour"}),
    ('{"Answer": "Yes"}', {"answer": "Yes", "explanation": ""}),
]
PHY_OK = "\n".join(["{"] + [f'  "{k}": "No",' for k in DECISION_KEYS["phy"]] + ["}"])
PHY_ANSWERS = [
    (PHY_OK, dict.fromkeys(DECISION_KEYS["phy"], "No")),
    (PHY_OK.replace('"abnormal motion": "No"', '"abnormal motion": "Yes"'),
     {**dict.fromkeys(DECISION_KEYS["phy"], "No"), "abnormal motion": "Yes"}),
    ("\n".join(f"- {k}: no" for k in DECISION_KEYS["phy"]) + "\n- explanation: fine",
     {**dict.fromkeys(DECISION_KEYS["phy"], "No"), "explanation": "fine"}),
]
VQ_ANSWERS = [
    ('{"has obvious defect": No, "dominant issue": "none", "evidence": ["sharp", "clean"],}',
     {"has obvious defect": "No", "dominant issue": "none", "evidence": ["sharp", "clean"]}),
    ('{"has obvious defect": false, "dominant issue": "none", "evidence": []}',
     {"has obvious defect": "No", "dominant issue": "none", "evidence": []}),
    ('{"has obvious defect": "Yes", "dominant issue": "motion blur", "evidence": "softer edges"}',
     {"has obvious defect": "Yes", "dominant issue": "motion blur", "evidence": ["softer edges"]}),
]
BAD_ANSWERS = [
    ("ta", "Maybe."), ("ta", '{"answer": "Yes or No", "explanation": "x"}'), ("ta", ""), ("ta", "{}"),
    ("phy", PHY_OK.replace('  "abnormal motion": "No",\n', "")), ("phy", "No."),
    ("phy", PHY_OK.replace('"abnormal motion": "No"', '"abnormal motion": "Yes or No"')),
    ("vq", '{"dominant issue": "none"}'), ("vq", '{"has obvious defect": Yes / No}'), ("vq", "[[[[") ,
]


@pytest.mark.parametrize("raw,expected", DECOMPOSITIONS)
def test_decomposition_hand_written(raw, expected):
    assert parse_decomposition(raw) == expected


@pytest.mark.parametrize("raw", BAD_DECOMPOSITIONS)
def test_decomposition_garbage_raises_parse_error(raw):
    with pytest.raises(ParseError):
        parse_decomposition(raw)


@pytest.mark.parametrize("dimension,raw,expected",
                         [("ta", r, e) for r, e in TA_ANSWERS] + [("phy", r, e) for r, e in PHY_ANSWERS]
                         + [("vq", r, e) for r, e in VQ_ANSWERS])
def test_answers_hand_written(dimension, raw, expected):
    assert parse_answer(raw, dimension) == expected


@pytest.mark.parametrize("dimension,raw", BAD_ANSWERS)
def test_bad_answers_raise_parse_error(dimension, raw):
    with pytest.raises(ParseError):
        parse_answer(raw, dimension)


def _mutations(seed_texts: list[str], n: int, seed: int) -> list[str]:
    """Random damage to valid outputs: truncation, deletions, inserted junk, quote swaps, duplicated spans."""
    rng = random.Random(seed)
    junk = ["{", "}", "'", '"', ":", ",", "\n", "```", "\u2018", "\u201d", "\\", "\x00", "[", "1).", "- ", "Yes", "No"]
    out = []
    for _ in range(n):
        text = rng.choice(seed_texts)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(5)
            i = rng.randrange(len(text) + 1)
            if op == 0:
                text = text[:i]
            elif op == 1:
                text = text[:i] + text[i + rng.randint(1, 10):]
            elif op == 2:
                text = text[:i] + rng.choice(junk) + text[i:]
            elif op == 3:
                text = text.replace('"', "'") if rng.random() < 0.5 else text.replace("'", "\u2019")
            else:
                j = rng.randrange(len(text) + 1)
                text = text[:i] + text[min(i, j):max(i, j)] + text[i:]
        out.append(text)
    return out


def test_fuzz_decomposition_parses_or_raises_parse_error():
    samples = _mutations([raw for raw, _ in DECOMPOSITIONS], 200, seed=0)
    parsed = 0
    for text in samples:
        try:
            result = parse_decomposition(text)
        except ParseError:
            continue
        parsed += 1
        assert result and set(result) <= set(FACET_KEYS)
        assert all(isinstance(v, str) and v for v in result.values())
    assert 0 < parsed < len(samples)  # the generator produces both readable and unreadable outputs


@pytest.mark.parametrize("dimension", ["ta", "phy", "vq"])
def test_fuzz_answers_parse_or_raise_parse_error(dimension):
    seeds = {"ta": [r for r, _ in TA_ANSWERS], "phy": [r for r, _ in PHY_ANSWERS], "vq": [r for r, _ in VQ_ANSWERS]}
    samples = _mutations(seeds[dimension], 150, seed=1)
    for text in samples:
        try:
            result = parse_answer(text, dimension)
        except ParseError:
            continue
        assert all(result[k] in ("Yes", "No") for k in DECISION_KEYS[dimension])
        if dimension == "vq":
            assert isinstance(result["evidence"], list) and isinstance(result["dominant issue"], str)


def test_non_text_input_is_a_parse_error():
    for value in (None, 3, b"bytes", {"answer": "Yes"}):
        with pytest.raises(ParseError):
            parse_decomposition(value)
        with pytest.raises(ParseError):
            parse_answer(value, "ta")


@pytest.mark.parametrize(("reply", "expected"), [
    ('Here you go:\n```json\n["a red ball", {"prompt": "b"}]\n```', ["a red ball", {"prompt": "b"}]),
    ("[1, 2,]", None),  # broken JSON
    ('{"not": "a list"}', None),
    ("no brackets at all", None),
    ("] backwards [", None),
])
def test_parse_json_list(reply, expected):
    assert parse_json_list(reply) == expected


def test_parse_mapping_reads_a_teacher_reply_with_repairs():
    reply = "Sure!\n```\n{'visual quality': 7, \"dynamic degree\": \"6/10\",}\n```"
    assert parse_mapping(reply) == {"visual quality": 7, "dynamic degree": "6/10"}
