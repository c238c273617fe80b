"""Speaker baselines from recordings: a recording read by speakers (channels, or diarized turns) folds
each speaker's turns into that speaker's profile in the agent's store, so that the agent later hears
them against their own usual level, as it does for speakers met in conversation.

A diarized recording names its speakers "speaker 1", "speaker 2", ... in order of first speech; those
names mean nothing beyond the recording, so the caller says who they are (`names`). Channel names
("agent", "customer") are kept as given unless mapped too. A recording folded again right after itself
(a retried call: the same source, speaker and times) is not counted twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from emotion_tool.engine.results import EmotionAnalysis

from .scale import SpeakerProfile, load_profile, save_profile
from .turns import profile_lock

if TYPE_CHECKING:
    from langgraph.store.base import BaseStore

__all__ = ["fold_recording"]


def fold_recording(store: "BaseStore", analysis: EmotionAnalysis, *, names: Mapping[str, str] | None = None, **lock: Any) -> dict[str, SpeakerProfile]:
    """Folds each speaker's readings (its turns, or its channel's windows) into their profiles in `store`.

    Args:
        store: the LangGraph store the agent keeps profiles in (`open_database(...)`'s, or any BaseStore).
        analysis: an analysis read by speakers (`AnalysisOptions(diarize=True)` or `channels=...`).
        names: the analysis' speaker names to the store's (e.g. {"speaker 1": "alice"}); required for every
            diarized speaker, optional for channels (their names are kept).
        lock: passed to `profile_lock` (e.g. wait_s).

    Returns:
        The updated profile of each speaker, by the store's name.

    Raises:
        ValueError: the analysis has no speakers, or a diarized speaker has no name in `names`.
    """
    if not analysis.speakers:
        raise ValueError(
            "this analysis reads one voice: fold speakers from a recording read with diarize=True (--diarize) or channels=(...)"
        )
    names = dict(names or {})
    unknown = [p.speaker for p in analysis.speakers if p.speaker not in names and analysis.diarization is not None]
    if unknown:
        raise ValueError(
            f"diarized speakers are named only within their recording; say who {', '.join(map(repr, unknown))} "
            f"are: names={{{', '.join(f'{s!r}: ...' for s in unknown)}}}"
        )
    stray = [k for k in names if k not in {p.speaker for p in analysis.speakers}]
    if stray:
        raise ValueError(f"names maps {', '.join(map(repr, stray))}, not speakers of this analysis ({', '.join(p.speaker for p in analysis.speakers)})")
    out: dict[str, SpeakerProfile] = {}
    for p in analysis.speakers:
        who = names.get(p.speaker, p.speaker)
        readings = [w for w in analysis.windows if w.speaker == p.speaker]
        with profile_lock(store, who, **lock):
            profile = load_profile(store, who) or SpeakerProfile(speaker=who)
            ids = [f"recording:{analysis.source}:{p.speaker}:{r.start_s:.3f}-{r.end_s:.3f}" for r in readings]
            if ids and profile.last_turn_id != ids[-1]:  # the same recording folded again at once (a retry) counts once
                for r, turn_id in zip(readings, ids):
                    profile = profile.add(r, turn_id=turn_id)
                save_profile(store, profile)
        out[who] = profile
    return out
