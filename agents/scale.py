"""Each speaker's own scale: their running distribution of valence, arousal and dominance.

The published model uses a narrow part of its 0..1 scales, and where that part sits depends on the
speaker and the recording, so a fixed threshold ("valence at or below 0.35 is negative") fires for
everything or for nothing. The planner therefore reads a turn as standard deviations away from the
speaker's own running distribution (`SpeakerProfile`), and until enough of the speaker's turns are
known, from the model's population priors (`PopulationPriors`, kept in the empathy rulebook
`emotion_tool.science.empathy`, which judges a lone reading against the same priors).

Profiles live in a LangGraph store, one namespace per speaker (`profile_namespace`), so a caller
who rings back on a new thread is compared with what earlier conversations showed.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Mapping
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from emotion_tool.engine.results import EmotionReading
from emotion_tool.science.empathy import DimensionPrior, PopulationPriors

from .state import DIMENSIONS, Scale

if TYPE_CHECKING:
    from langgraph.store.base import BaseStore

PROFILE_NAMESPACE = ("emotion_tool", "speakers")
"""Store namespace prefix; a speaker's profile sits under (*PROFILE_NAMESPACE, speaker)."""

PROFILE_KEY = "profile"
_REFINED_IDS_KEPT = 64  # refinements that arrive later than this many others are not guarded against a retry
SET_ASIDE_KEY = "profile.set-aside"  # where a stored profile that fails validation is moved, for a person to look at

logger = logging.getLogger(__name__)

__all__ = [
    "DimensionPrior",
    "PopulationPriors",
    "SpeakerProfile",
    "ScaleConfig",
    "scale_of",
    "profile_namespace",
    "load_profile",
    "save_profile",
    "label_shares",
]


class SpeakerProfile(BaseModel):
    """One speaker's running distribution over every turn heard, in any conversation.

    Means and spreads are kept with Welford's update (`m2` is the sum of squared deviations), so a
    profile folds in one reading at a time without keeping the readings.
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)  # a NaN folded in would poison every later turn

    speaker: str = Field(description="Whose voice")
    turns: int = Field(default=0, ge=0, description="Readings folded in")
    mean: dict[str, float] = Field(default_factory=lambda: {d: 0.0 for d in DIMENSIONS}, description="Mean per dimension")
    m2: dict[str, float] = Field(
        default_factory=lambda: {d: 0.0 for d in DIMENSIONS}, description="Sum of squared deviations per dimension"
    )
    labels: dict[str, int] = Field(default_factory=dict, description="How often each emotion label was the top one")
    last_turn_id: str | None = Field(
        default=None, description="The last turn folded in (thread and turn), so a retried turn is not counted twice"
    )
    refined_ids: list[str] = Field(
        default_factory=list, description="The latest turns whose fast reading was replaced by the faithful one, so a retry replaces once"
    )

    @model_validator(mode="after")
    def _check(self) -> "SpeakerProfile":
        for name, values in (("mean", self.mean), ("m2", self.m2)):
            if set(values) != set(DIMENSIONS):
                raise ValueError(f"{name} must hold exactly {', '.join(DIMENSIONS)}, got {sorted(values)}")
        if any(v < 0 for v in self.m2.values()) or any(v < 0 for v in self.labels.values()):
            raise ValueError("m2 and label counts cannot be negative")
        return self

    def sd(self, dimension: str) -> float:
        """Sample standard deviation of `dimension` (0 with fewer than two readings)."""
        return math.sqrt(self.m2[dimension] / (self.turns - 1)) if self.turns > 1 else 0.0

    def add(self, reading: EmotionReading, *, turn_id: str | None = None) -> "SpeakerProfile":
        """A new profile with `reading` folded in; unchanged when `turn_id` was the last one folded in."""
        if turn_id is not None and turn_id == self.last_turn_id:
            return self
        values = [getattr(reading, d) for d in DIMENSIONS]
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in values):
            raise ValueError(f"a reading with valence/arousal/dominance {values} is not folded into {self.speaker!r}'s profile: they must be finite numbers")
        n = self.turns + 1
        mean, m2 = dict(self.mean), dict(self.m2)
        for d in DIMENSIONS:
            x = float(getattr(reading, d))
            delta = x - mean[d]
            mean[d] += delta / n
            m2[d] += delta * (x - mean[d])
        labels = {**self.labels, reading.label: self.labels.get(reading.label, 0) + 1}
        return self.model_copy(update=dict(turns=n, mean=mean, m2=m2, labels=labels, last_turn_id=turn_id))

    def replace(self, old: EmotionReading, new: EmotionReading, *, turn_id: str | None = None) -> "SpeakerProfile":
        """A new profile with `old` (a reading folded in before: a fast one) replaced by `new` (its faithful
        reading); unchanged when `turn_id` was replaced already, or the profile holds no reading to take out."""
        if turn_id is not None and turn_id in self.refined_ids or self.turns == 0:
            return self
        values = [getattr(new, d) for d in DIMENSIONS]
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in values):
            raise ValueError(f"a reading with valence/arousal/dominance {values} is not folded into {self.speaker!r}'s profile: they must be finite numbers")
        n = self.turns
        mean, m2 = dict(self.mean), dict(self.m2)
        for d in DIMENSIONS:  # Welford's update backwards for `old`, then forwards for `new`
            x_old, x_new = float(getattr(old, d)), float(getattr(new, d))
            if n > 1:
                rest = (n * mean[d] - x_old) / (n - 1)
                m2[d] = max(0.0, m2[d] - (x_old - rest) * (x_old - mean[d]))
                mean[d] = rest
                delta = x_new - mean[d]
                mean[d] += delta / n
                m2[d] += delta * (x_new - mean[d])
            else:
                mean[d], m2[d] = x_new, 0.0
        labels = dict(self.labels)
        if labels.get(old.label, 0) > 0:
            labels[old.label] -= 1
            if not labels[old.label]:
                del labels[old.label]
        labels[new.label] = labels.get(new.label, 0) + 1
        refined_ids = ([*self.refined_ids, turn_id] if turn_id is not None else list(self.refined_ids))[-_REFINED_IDS_KEPT:]
        return self.model_copy(update=dict(mean=mean, m2=m2, labels=labels, refined_ids=refined_ids))

    @classmethod
    def of(cls, speaker: str, readings: "list[EmotionReading]") -> "SpeakerProfile":
        """The profile of `readings`, oldest first."""
        profile = cls(speaker=speaker)
        for r in readings:
            profile = profile.add(r)
        return profile


class ScaleConfig(BaseModel):
    """How a turn is put on the speaker's scale."""

    model_config = ConfigDict(frozen=True)

    # Chosen, not fitted: from 3 readings the true sd lies anywhere between about 0.5x and 6x the
    # sample sd (95 % chi-square interval, 2 degrees of freedom), from 4 between 0.6x and 3.7x; the
    # priors judge until a fourth reading is known.
    min_speaker_turns: int = Field(
        default=4, ge=2, description="Readings of a speaker needed before their own distribution replaces the priors"
    )
    # Chosen: about a quarter of the valence prior's sd (0.0725), so a speaker heard in one steady
    # mood still needs a move of 0.03 on the 0..1 scale (1.5 sd) before it counts.
    min_sd: float = Field(
        default=0.02,
        gt=0.0,
        description="Floor on a speaker's sd: a speaker heard in one steady mood would otherwise flag every wobble",
    )
    priors: PopulationPriors = Field(default_factory=PopulationPriors, description="Used until a speaker's own is known")

    @model_validator(mode="after")
    def _check(self) -> "ScaleConfig":
        if self.min_sd >= 0.5:
            raise ValueError(f"min_sd is a standard deviation on the 0..1 scale, got {self.min_sd}; use e.g. 0.02")
        return self


def scale_of(reading: EmotionReading, profile: SpeakerProfile | None, config: ScaleConfig = ScaleConfig()) -> Scale:
    """`reading` as standard deviations from the speaker's distribution, or from the priors."""
    own = profile is not None and profile.turns >= config.min_speaker_turns
    if own:
        mean = dict(profile.mean)
        sd = {d: max(profile.sd(d), config.min_sd) for d in DIMENSIONS}
    else:
        priors = {d: getattr(config.priors, d) for d in DIMENSIONS}
        mean = {d: p.mean for d, p in priors.items()}
        sd = {d: p.sd for d, p in priors.items()}
    z = {d: (float(getattr(reading, d)) - mean[d]) / sd[d] for d in DIMENSIONS}
    return Scale(
        source="speaker" if own else "population",
        speaker_turns=profile.turns if profile is not None else 0,
        min_speaker_turns=config.min_speaker_turns,
        mean=mean,
        sd=sd,
        z=z,
    )


def profile_namespace(speaker: str) -> tuple[str, ...]:
    """The store namespace of `speaker`'s profile."""
    if not isinstance(speaker, str) or not speaker:
        raise ValueError(f"speaker must be a non-empty name, got {speaker!r}")
    # Store namespaces may not hold dots (some stores join labels with them): percent-encode.
    return (*PROFILE_NAMESPACE, quote(speaker, safe="").replace(".", "%2E"))


def load_profile(store: "BaseStore", speaker: str) -> SpeakerProfile | None:
    """`speaker`'s profile from `store`, or None when the speaker is new."""
    namespace = profile_namespace(speaker)
    item = store.get(namespace, PROFILE_KEY)
    if item is None:
        return None
    try:
        return SpeakerProfile.model_validate(item.value)
    except ValidationError as e:
        # Never a reason for this speaker's later turns to fail: the bad profile is moved aside (kept, for a
        # person to look at) and the speaker starts again from the population priors.
        store.put(namespace, SET_ASIDE_KEY, {"value": item.value, "error": str(e)[:2000], "set_aside_unix_s": time.time()})
        store.delete(namespace, PROFILE_KEY)
        logger.warning(
            "the stored profile of speaker %r failed validation and was set aside under key %r (%s); the speaker starts again from the priors",
            speaker, SET_ASIDE_KEY, e.errors()[0]["msg"] if e.errors() else e,
        )  # fmt: skip
        return None


def save_profile(store: "BaseStore", profile: SpeakerProfile) -> None:
    """Writes `profile` under its speaker's namespace."""
    store.put(profile_namespace(profile.speaker), PROFILE_KEY, profile.model_dump(mode="json"))


def label_shares(profile: SpeakerProfile) -> Mapping[str, float]:
    """How often each label was the top one, as shares of the speaker's turns."""
    total = sum(profile.labels.values())
    return {k: v / total for k, v in sorted(profile.labels.items(), key=lambda kv: -kv[1])} if total else {}
