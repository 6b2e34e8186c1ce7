"""The world critic's teacher-forced answers: the paper's JSON answers (Figs. 15-17, in the exact format of
``annotate.records.canonical_answer``) and the Vanilla reply, with short templated explanations chosen by how the
video was made (``source``: "clean" or a corruption / edit name), and where their Yes/No decisions sit.
"""

from __future__ import annotations

from vidreward.annotate.records import canonical_answer
from vidreward.critics.queries import DECISION_KEYS

#: physics corruption -> the Fig. 16 key it makes "Yes"
PHY_KEY: dict[str, str] = {"deformation": "abnormal deformation", "teleport": "abnormal motion",
                           "interpenetration": "unnatural interpenetration"}
#: image-quality corruption -> the Fig. 17 "dominant issue"
VQ_ISSUE: dict[str, str] = {"noise": "grain noise", "blur": "defocus blur", "flicker": "flicker"}
PHY_EXPLAIN: dict[str, str] = {
    "clean": "The objects move smoothly and keep their shapes, as in the real video.",
    "deformation": "An object changes its shape or size during the clip, unlike in the real video.",
    "teleport": "An object suddenly jumps to another place in the middle of the clip.",
    "interpenetration": "An object passes through another object instead of touching it.",
}
VQ_EVIDENCE: dict[str, str] = {
    "clean": "edges and colours as clean as the reference",
    "noise": "grainy speckles over every frame, unlike the reference",
    "blur": "softer edges than the reference",
    "flicker": "brightness jumps between frames, unlike the reference",
}
VANILLA_WHY: dict[str, str] = {
    "wrong_color": "an object has the wrong colour", "wrong_shape": "an object has the wrong shape",
    "wrong_motion": "an object moves the wrong way", "wrong_position": "an object starts in the wrong place",
    "background": "the background has the wrong colour", "lighting": "the lighting is wrong",
    "size": "an object has the wrong size",
}


def decision_offsets(answer: str) -> list[int]:
    """Character offsets of every quoted "Yes" / "No" decision word in a JSON ``answer``, in order."""
    return [i for w in ('"Yes"', '"No"') for i in _find_all(answer, w)]


def _find_all(text: str, word: str) -> list[int]:
    """Offset of each occurrence of the quoted ``word`` plus one: where the decision word starts, past its quote."""
    out, start = [], text.find(word)
    while start >= 0:
        out.append(start + 1)
        start = text.find(word, start + 1)
    return sorted(out)


def ta_answer(label: str, description: str) -> str:
    """Fig. 15 answer JSON with a templated explanation."""
    why = "The video shows this" if label == "Yes" else "The video does not show this"
    return canonical_answer("ta", {"answer": label, "explanation": f"{why}: {description}"})[0]


def phy_answer(source: str) -> str:
    """Fig. 16 answer JSON: the corruption's key Yes, every other key No."""
    parsed = {k: ("Yes" if PHY_KEY.get(source) == k else "No") for k in DECISION_KEYS["phy"]}
    parsed["explanation"] = PHY_EXPLAIN.get(source, PHY_EXPLAIN["clean"])
    return canonical_answer("phy", parsed)[0]


def vq_answer(source: str) -> str:
    """Fig. 17 answer JSON."""
    issue = VQ_ISSUE.get(source)
    parsed = {"has obvious defect": "Yes" if issue else "No", "dominant issue": issue or "none",
              "evidence": [VQ_EVIDENCE.get(source, VQ_EVIDENCE["clean"])]}
    return canonical_answer("vq", parsed)[0]


def vanilla_answer(label: str, source: str) -> str:
    """Vanilla answer: the decision word first (read by ``decision_logprobs``), then a short reason."""
    if label == "Yes":
        return "Yes. Every part of the prompt is shown."
    return f"No. In the video {VANILLA_WHY[source]}."
