"""Which way the user's words point, to set beside which way their voice points.

The words' polarity is judged by a small rule lexicon, on purpose: it is inspectable, needs no
model, and behaves the same everywhere. Each lexicon word counts +1 (positive) or -1 (negative); a
negator ("not", "never", "no", "n't", "hardly") up to three words before a lexicon word flips it
("not good" is negative, "not bad" positive). The sum's sign is the polarity; no lexicon word, or a
sum of 0, is neutral. It reads English only and misses irony that the words themselves carry;
the voice is what catches that ("fine, thanks" said angrily).
"""

from __future__ import annotations

import re

from emotion_tool.engine.results import EmotionReading

from .state import Polarity, WordsAgainstVoice

POSITIVE_WORDS = frozenset(
    "fine good great thanks thank thankful grateful appreciate appreciated happy glad pleased delighted love "
    "lovely perfect wonderful excellent nice awesome fantastic amazing brilliant cool super terrific superb "
    "okay ok alright well enjoy enjoyed helpful sorted solved works worked".split()
)
NEGATIVE_WORDS = frozenset(
    "bad terrible awful horrible worst worse angry furious mad upset annoyed annoying frustrated frustrating "
    "ridiculous unacceptable hate hated sad unhappy miserable disappointed disappointing useless broken wrong "
    "problem problems scared afraid worried worrying fear disgusting sick tired fed stupid pathetic joke "
    "nonsense failed fails failing".split()
)
NEGATORS = frozenset("not no never hardly barely isn't wasn't don't doesn't didn't can't won't aren't".split())
_NEGATION_REACH = 3  # words a negator reaches forward
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words_polarity(text: str) -> tuple[Polarity, list[str]]:
    """The polarity of `text` and the lexicon words (with their negators) that decided it."""
    tokens = _TOKEN.findall(text.lower().replace("\u2019", "'"))
    score, cues, negated_until = 0, [], -1
    for i, tok in enumerate(tokens):
        is_negator = tok in NEGATORS or tok.endswith("n't")
        sign = 1 if tok in POSITIVE_WORDS else -1 if tok in NEGATIVE_WORDS else 0
        if sign:
            flip = i <= negated_until
            score += -sign if flip else sign
            cues.append(f"not {tok}" if flip else tok)
        if is_negator:
            negated_until = i + _NEGATION_REACH
    return ("positive" if score > 0 else "negative" if score < 0 else "neutral"), cues


def voice_polarity(reading: EmotionReading, negative_labels: tuple[str, ...]) -> Polarity:
    """Which way the voice points: negative labels, happy, or neither."""
    if reading.label in negative_labels:
        return "negative"
    return "positive" if reading.label == "happy" else "neutral"


def words_against_voice(
    transcript: str | None, reading: EmotionReading | None, negative_labels: tuple[str, ...]
) -> WordsAgainstVoice | None:
    """Set when the words point one way and the voice the opposite way; None otherwise."""
    if not transcript or reading is None:
        return None
    words, cues = words_polarity(transcript)
    voice = voice_polarity(reading, negative_labels)
    if "neutral" in (words, voice) or words == voice:
        return None
    said = transcript if len(transcript) <= 60 else transcript[:57] + "..."
    return WordsAgainstVoice(
        words=words,
        voice=voice,
        cues=cues,
        detail=f'the words are {words} ("{said}") but the voice sounds {reading.label}; '
        "answer how it was said as well as what was said, and check in gently",
    )
