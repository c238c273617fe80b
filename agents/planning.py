"""Choosing a dialogue strategy from a reading and the speaker's own history.

The rules are plain and inspectable: the emotion label picks a strategy (valence and arousal
decide for neutral-sounding speech), the turn is read on the speaker's own scale (standard
deviations from their running distribution, or from the model's population priors until enough of
their turns are known; see `agents.scale`), which turns unusual levels into events, and an
uncertain reading softens the plan to a neutral one that names what it leans to. When the words
are known and point the other way from the voice, the plan says so. Every threshold lives in
`PlanningConfig`; thresholds on valence and arousal are in standard deviations, not on the 0..1
scale, because the model uses a narrow, speaker-dependent part of that scale. The defaults, the
strategies and their wording come from the empathy rulebook (`emotion_tool.science.empathy`), which the MCP
prompt reads too.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from emotion_tool.science.empathy import (
    AROUSAL_GOAL,
    HANDOVER_GOAL,
    MISMATCH_GOAL,
    PLAYBOOK,
    STRATEGY_FOR_LABEL,
    THRESHOLDS,
    VALENCE_GOAL,
    choose_strategy,
)
from emotion_tool.engine.results import EmotionReading

from .scale import ScaleConfig, SpeakerProfile, scale_of
from .state import DialoguePlan, EmotionTurn, PlanEvent, Scale, StrategyName, Trend, WordsAgainstVoice
from .words import words_against_voice


class PlanningConfig(BaseModel):
    """Thresholds and mappings of the planner.

    Thresholds on valence and arousal (`*_z`, `valence_fall_sd`) are in standard deviations from the
    speaker's usual level (`scale`), not on the 0..1 scales; `min_confidence` and `min_margin` are
    probabilities. The defaults shared with the MCP prompt come from `emotion_tool.science.empathy.THRESHOLDS`.
    """

    model_config = ConfigDict(frozen=True)

    strategies: Mapping[str, StrategyName] = Field(
        default_factory=lambda: dict(STRATEGY_FOR_LABEL),
        description="Strategy for each confident emotion label; other labels (neutral) are judged by valence and arousal",
    )
    min_confidence: float | None = Field(
        default=None,
        description="Readings whose top probability is lower are uncertain; None keeps the reading's own `uncertain` "
        "flag (the recognizer's AnalysisOptions.min_confidence)",
    )
    # The rulebook's value and reason (EmpathyThresholds.min_margin): set by hand.
    min_margin: float = Field(default=THRESHOLDS.min_margin, description="Readings whose top-1 minus top-2 probability is lower are uncertain")
    # Set by hand: twice the shortest audio the recognizer judges at all (AnalysisOptions.min_duration_s, 0.5 s).
    min_duration_s: float = Field(default=1.0, description="Readings of shorter stretches are uncertain (little evidence)")
    # The rulebook's 1.5 sd: outside the central 87 % of a normal distribution (a convention).
    low_valence_z: float = Field(
        default=THRESHOLDS.low_valence_z, gt=0, description="Valence this many sd below the speaker's usual level counts as negative"
    )
    high_arousal_z: float = Field(
        default=THRESHOLDS.high_arousal_z, gt=0, description="Arousal this many sd above the speaker's usual level counts as agitated"
    )
    negative_labels: tuple[str, ...] = Field(
        default=THRESHOLDS.negative_labels, description="Labels that count as a negative state"
    )
    # Set by hand: the trend reported beside the scale looks at the last few turns of this thread.
    baseline_turns: int = Field(default=5, ge=1, description="Most recent earlier readings the baseline averages")
    min_baseline_turns: int = Field(default=2, ge=1, description="Earlier readings needed before comparing with a baseline")
    # 2 sd: outside the central 95 % of a normal distribution (a convention), stricter than the
    # 1.5 sd that decides the strategy, since an event adds goals to the reply.
    arousal_rise_z: float = Field(
        default=2.0, gt=0, description="Arousal this many sd above the speaker's usual level flags arousal-rising"
    )
    valence_low_z: float = Field(
        default=2.0, gt=0, description="Valence this many sd below the speaker's usual level flags valence-low"
    )
    # Set by hand: three readings are the fewest in which "falling turn after turn" means more than one step.
    valence_fall_turns: int = Field(
        default=3, ge=2, description="Consecutive readings (this one included) over which valence must keep falling"
    )
    # The 1.5-sd convention, applied to the total drop over those turns.
    valence_fall_sd: float = Field(
        default=1.5, gt=0, description="Total valence drop over them, in the speaker's sd, that flags valence-falling"
    )
    # Turns needed, floor on the sd and the population priors (their sources are in `agents.scale`
    # and `emotion_tool.science.empathy.PopulationPriors`).
    scale: ScaleConfig = Field(
        default_factory=ScaleConfig, description="How a turn is put on the speaker's scale: turns needed, priors"
    )
    # Set by hand: three confident negative turns in a row is a pattern rather than a moment.
    handover_turns: int | None = Field(
        default=3, ge=1, description="Consecutive confident negative readings that call for a person; None never hands over"
    )

    @model_validator(mode="after")
    def _check(self) -> "PlanningConfig":
        for name in ("min_confidence", "min_margin"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is on the 0..1 scale, got {getattr(self, name)}")
        if self.min_baseline_turns > self.baseline_turns:
            raise ValueError(
                f"min_baseline_turns={self.min_baseline_turns} exceeds baseline_turns={self.baseline_turns}; "
                "the baseline could never be formed"
            )
        return self


def strategy_for(
    reading: EmotionReading, config: PlanningConfig = PlanningConfig(), scale: Scale | None = None
) -> StrategyName:
    """The strategy a confident `reading` calls for.

    The label decides through `config.strategies`; for other labels (neutral, or labels of a custom
    checkpoint) valence and arousal on the speaker's `scale` decide (default: the population
    priors): well below the usual valence and well above the usual arousal → de-escalate, well
    below the usual valence → comfort.
    """
    scale = scale or scale_of(reading, None, config.scale)
    return choose_strategy(
        reading.label,
        negative=scale.z["valence"] <= -config.low_valence_z,
        agitated=scale.z["arousal"] >= config.high_arousal_z,
        strategies=config.strategies,
    )


def uncertainty(current: EmotionTurn, config: PlanningConfig = PlanningConfig()) -> list[str]:
    """Why the turn's reading is too unsure to act on strongly; empty when it is not (or there is none)."""
    r = current.reading
    if r is None:
        return []
    reasons = []
    if r.uncertain if config.min_confidence is None else r.confidence < config.min_confidence:
        reasons.append(f"confidence {r.confidence:.2f} is low")
    if r.margin < config.min_margin:
        reasons.append(f"the runner-up emotion is close (margin {r.margin:.2f})")
    if r.end_s - r.start_s < config.min_duration_s:
        reasons.append(f"only {r.end_s - r.start_s:.1f} s of audio")
    if current.speech_s is not None and current.speech_s <= 0.0:
        reasons.append("no speech was detected")
    return reasons


def baseline_trend(
    current: EmotionTurn, earlier: Sequence[EmotionTurn], config: PlanningConfig = PlanningConfig()
) -> Trend | None:
    """This turn against the mean of the speaker's most recent earlier readings, or None with too few."""
    if current.reading is None:
        return None
    prior = _readings(earlier, current.speaker)[-config.baseline_turns :]
    if len(prior) < config.min_baseline_turns:
        return None
    n = len(prior)
    base = {d: sum(getattr(r, d) for r in prior) / n for d in ("valence", "arousal", "dominance")}
    r = current.reading
    return Trend(
        turns=n,
        baseline_valence=base["valence"],
        baseline_arousal=base["arousal"],
        baseline_dominance=base["dominance"],
        valence_change=r.valence - base["valence"],
        arousal_change=r.arousal - base["arousal"],
        dominance_change=r.dominance - base["dominance"],
    )


def speaker_scale(
    current: EmotionTurn,
    earlier: Sequence[EmotionTurn] = (),
    config: PlanningConfig = PlanningConfig(),
    profile: SpeakerProfile | None = None,
) -> Scale | None:
    """`current` on its speaker's scale: from `profile` (their readings across conversations) when
    given, else from the speaker's `earlier` turns in this conversation; None without a reading."""
    if current.reading is None:
        return None
    if profile is None:
        profile = SpeakerProfile.of(current.speaker, _readings(earlier, current.speaker))
    return scale_of(current.reading, profile, config.scale)


def detect_events(
    current: EmotionTurn,
    earlier: Sequence[EmotionTurn],
    config: PlanningConfig = PlanningConfig(),
    scale: Scale | None = None,
) -> list[PlanEvent]:
    """Arousal well above or valence well below the speaker's usual level, valence falling over
    several turns, a persistent negative state. `scale` defaults to `speaker_scale(current, earlier)`."""
    if current.reading is None:
        return []
    r = current.reading
    scale = scale or speaker_scale(current, earlier, config)
    whose = "this speaker's usual level" if scale.source == "speaker" else "the model's usual level (population prior)"
    events = []
    if scale.z["arousal"] >= config.arousal_rise_z:
        events.append(
            PlanEvent(
                kind="arousal-rising",
                value=scale.z["arousal"],
                threshold=config.arousal_rise_z,
                detail=f"arousal {r.arousal:.2f} is {scale.z['arousal']:+.1f} sd from {whose} of "
                f"{scale.mean['arousal']:.2f}",
            )
        )
    if scale.z["valence"] <= -config.valence_low_z:
        events.append(
            PlanEvent(
                kind="valence-low",
                value=scale.z["valence"],
                threshold=-config.valence_low_z,
                detail=f"valence {r.valence:.2f} is {scale.z['valence']:+.1f} sd from {whose} of "
                f"{scale.mean['valence']:.2f}",
            )
        )
    series = [*_readings(earlier, current.speaker), r][-config.valence_fall_turns :]
    if len(series) == config.valence_fall_turns:
        steps = [b.valence - a.valence for a, b in zip(series, series[1:])]
        drop = series[0].valence - series[-1].valence
        drop_sd = drop / scale.sd["valence"]
        if all(st < 0 for st in steps) and drop_sd >= config.valence_fall_sd:
            events.append(
                PlanEvent(
                    kind="valence-falling",
                    value=drop_sd,
                    threshold=config.valence_fall_sd,
                    detail=f"valence fell {drop:.2f} ({drop_sd:.1f} sd) over the last {len(series)} turns "
                    f"({series[0].valence:.2f} to {series[-1].valence:.2f})",
                )
            )
    if config.handover_turns is not None:
        streak = 0
        for turn in [*(t for t in earlier if t.speaker == current.speaker and t.reading is not None), current][::-1]:
            if not _confidently_negative(turn, config, scale):
                break
            streak += 1
        if streak >= config.handover_turns:
            events.append(
                PlanEvent(
                    kind="persistent-negative",
                    value=float(streak),
                    threshold=float(config.handover_turns),
                    detail=f"{streak} consecutive turns sounded confidently negative; a person should take over",
                )
            )
    return events


def plan_dialogue(
    current: EmotionTurn,
    earlier: Sequence[EmotionTurn] = (),
    config: PlanningConfig = PlanningConfig(),
    *,
    profile: SpeakerProfile | None = None,
) -> DialoguePlan:
    """Plans the reply to `current` given the conversation's `earlier` turns (oldest first).

    Only the earlier turns of `current.speaker` form the baseline. `profile` is the speaker's
    distribution across conversations (from a store), before this turn; without it the scale comes
    from this conversation's earlier turns. Uncertain readings do not drive the strategy: the plan
    stays neutral, names the strategy it leans to, and asks the reply to check in rather than
    presume; the events are still reported, and uncertain turns never count toward a hand-over.
    """
    notes = list(current.notes)  # the analysis' caveats, random weights among them
    if current.reading is None:
        if not current.notes:
            notes.append("No emotion reading this turn; respond to the words alone.")
        return _build("neutral", emotion=None, uncertain=True, notes=notes)

    scale = speaker_scale(current, earlier, config, profile)
    if scale.source == "population":
        notes.append(
            f"Levels are judged against the model's population priors: only {scale.speaker_turns} earlier "
            f"reading{'s' if scale.speaker_turns != 1 else ''} of this speaker are known "
            f"({scale.min_speaker_turns} needed for their own scale). Priors used: {config.scale.priors.describe()}."
        )
    reasons = uncertainty(current, config)
    candidate = strategy_for(current.reading, config, scale)
    events = detect_events(current, earlier, config, scale)
    trend = baseline_trend(current, earlier, config)
    mismatch = words_against_voice(current.transcript, current.reading, config.negative_labels)
    if mismatch is not None:
        notes.append(f"Words against voice: {mismatch.detail}.")
    common = dict(emotion=current.reading.label, events=events, trend=trend, scale=scale, words_against_voice=mismatch)
    if reasons:
        notes.append(f"The reading is uncertain ({'; '.join(reasons)}); treat it as a faint hint.")
        extra = [
            f"The voice hints at {current.reading.label}, but the model is unsure: respond to the words, and if it "
            "fits, ask how the user is doing rather than naming a feeling."
        ]
        return _build(
            "neutral",
            leaning=candidate if candidate != "neutral" else None,
            uncertain=True,
            notes=notes,
            extra_goals=extra,
            **common,
        )
    handover = any(e.kind == "persistent-negative" for e in events)
    first = [HANDOVER_GOAL] if handover else []
    extra = [
        goal
        for kind, goal in (("arousal-rising", AROUSAL_GOAL), ("valence-falling", VALENCE_GOAL))
        if any(e.kind == kind for e in events)
    ]
    if mismatch is not None:
        extra.append(MISMATCH_GOAL)
    return _build(
        candidate,
        uncertain=False,
        notes=notes,
        handover=handover,
        first_goals=first,
        extra_goals=extra,
        **common,
    )


def _build(
    name: StrategyName,
    *,
    emotion: str | None,
    uncertain: bool,
    leaning: StrategyName | None = None,
    events: Sequence[PlanEvent] = (),
    trend: Trend | None = None,
    scale: Scale | None = None,
    words_against_voice: WordsAgainstVoice | None = None,
    notes: Sequence[str] = (),
    handover: bool = False,
    first_goals: Sequence[str] = (),
    extra_goals: Sequence[str] = (),
) -> DialoguePlan:
    book = PLAYBOOK[name]
    tone = book.tone if not uncertain else "warm and even; do not presume how the user feels"
    return DialoguePlan(
        name=name,
        leaning=leaning,
        emotion=emotion,
        goals=[*first_goals, *book.goals, *extra_goals],
        tone=tone,
        avoid=list(book.avoid) + (["naming or diagnosing the user's emotion"] if uncertain else []),
        events=list(events),
        handover=handover,
        uncertain=uncertain,
        trend=trend,
        scale=scale,
        words_against_voice=words_against_voice,
        notes=list(notes),
    )


def _readings(turns: Sequence[EmotionTurn], speaker: str) -> list[EmotionReading]:
    return [t.reading for t in turns if t.speaker == speaker and t.reading is not None]


def _confidently_negative(turn: EmotionTurn, config: PlanningConfig, scale: Scale) -> bool:
    r = turn.reading
    if r is None or uncertainty(turn, config):
        return False
    # Earlier turns are measured on the current turn's scale: one yardstick for the whole streak.
    return r.label in config.negative_labels or (r.valence - scale.mean["valence"]) / scale.sd["valence"] <= -config.low_valence_z
