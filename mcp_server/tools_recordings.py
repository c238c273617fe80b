"""Tools over recordings: `analyze_emotion` reads a whole file or base64 payload."""

import os
from dataclasses import replace
from typing import Annotated, Any

from mcp.types import ToolAnnotations
from pydantic import Field

from emotion_tool import EmotionAnalysis
from emotion_tool.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from emotion_tool.engine.windows import MIN_HOP_S, MIN_TRACE_WINDOW_S

from .app_view import ICONS, TOOL_UI_META
from .context import EmotionContext, progress_reporter, state_of, tool_errors, transport_session_of
from .departures import DEPARTURES
from .inference import Job
from .payloads import BYTES_PER_SAMPLE, AudioFormat, check_container, decode_base64, decode_pcm
from .security import RequestError, read_file_bytes

__all__ = ["analyze_emotion", "TOOLS"]

# Parameters are module-level so the SDK can resolve the annotations.
AudioPath = Annotated[
    str | None,
    Field(
        description="Path of an audio file (wav, flac, ogg, mp3) inside a directory the server was started "
        "with --allow-dir; relative paths start in the first such directory. Give this or audio_base64."
    ),
]
AudioBase64 = Annotated[
    str | None,
    Field(
        description="The audio as base64: the bytes of a wav/flac/ogg/mp3 file, or raw mono samples "
        "(then audio_format pcm_s16le or pcm_f32le and sample_rate). Give this or audio_path."
    ),
]
FormatHint = Annotated[
    AudioFormat | None,
    Field(description="What audio_base64 holds; optional for files (their header tells), required for raw PCM"),
]
PcmRate = Annotated[
    int | None,
    Field(description="Hz of raw PCM in audio_base64; files carry their own rate", ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE),
]
TraceFlag = Annotated[bool, Field(description="Also read overlapping windows of window_s every hop_s (an emotion trace over time)")]
WindowS = Annotated[
    float,
    Field(description="Trace window length, seconds (2 s is the model's fine-grained unit)", ge=MIN_TRACE_WINDOW_S, le=30, allow_inf_nan=False),
]
HopS = Annotated[
    float,
    Field(
        description="Trace hop between window starts, seconds; long recordings need longer hops (the reply says how long)",
        ge=MIN_HOP_S,
        le=30,
        allow_inf_nan=False,
    ),
]

Channels = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=64)]] | None,
    Field(
        description="Read each channel of the recording as its own speaker, named in channel order (e.g. "
        '["agent", "customer"] for a call recorded one side per channel): the reply then holds a summary per '
        "speaker, every reading and trace window carries its speaker, and windows where another channel speaks "
        "too are marked overlap. Omit (null) to mix all channels into one voice.",
        min_length=1,
        max_length=16,
    ),
]

Diarize = Annotated[
    bool,
    Field(
        description="For one-channel recordings of several people (a meeting, a call on one channel): find who speaks "
        "when, read each speaker's turns as their own utterances, and reply with a summary per speaker (\"speaker 1\", "
        "\"speaker 2\", ... in order of first speech) and the turns found. Not with channels."
    ),
]
NumSpeakers = Annotated[
    int | None,
    Field(description="With diarize: how many people speak, if known (1 to 8); omit to have it found.", ge=1, le=8),
]


async def analyze_emotion(
    ctx: EmotionContext,
    audio_path: AudioPath = None,
    audio_base64: AudioBase64 = None,
    audio_format: FormatHint = None,
    sample_rate: PcmRate = None,
    trace: TraceFlag = False,
    window_s: WindowS = 2.0,
    hop_s: HopS = 1.0,
    channels: Channels = None,
    diarize: Diarize = False,
    num_speakers: NumSpeakers = None,
) -> EmotionAnalysis:
    """Reads the emotions in a recording of speech.

    Returns a summary reading of the whole recording (label, confidence, the 7 probabilities,
    valence/arousal/dominance in 0..1, `uncertain`), the windows of at most 30 s behind it, and,
    with trace=true, a reading every hop_s seconds. With channels, one summary per channel's speaker;
    with diarize, one per speaker found in a one-channel recording, and the turns.
    Long recordings report progress.
    """
    state = state_of(ctx)
    o = state.options
    with tool_errors():
        if (audio_path is None) == (audio_base64 is None):
            raise RequestError(
                "give exactly one of audio_path (a file in an allowed directory) or audio_base64 (the audio bytes)"
            )
        if diarize:
            from emotion_tool.audio.diarize import DiarizerUnavailable, check_available

            try:
                check_available()
            except DiarizerUnavailable as e:
                raise RequestError(f"diarize is not available on this server: {e}") from e
        analysis_options = replace(
            state.recognizer.options, trace=trace, window_s=window_s, hop_s=hop_s, max_duration_s=o.max_duration_s,
            channels=tuple(channels) if channels is not None else None, diarize=diarize, num_speakers=num_speakers,
        )
        if audio_path is not None:
            real = state.paths.resolve(audio_path)
            name = os.path.basename(audio_path)

            def load() -> tuple[Any, int | None]:
                return read_file_bytes(real, max_bytes=o.max_request_chars, shown_as=audio_path), None

        else:
            assert audio_base64 is not None
            raw = decode_base64(audio_base64, max_chars=o.max_request_chars, field="audio_base64")
            name = "audio_base64"
            if audio_format in BYTES_PER_SAMPLE:
                if sample_rate is None:
                    raise RequestError(f"audio_format {audio_format} is raw samples: give their sample_rate in Hz too")
                samples = decode_pcm(raw, audio_format, field="audio_base64")  # type: ignore[arg-type]
                rate: int | None = sample_rate

                def load() -> tuple[Any, int | None]:
                    return samples, rate

            else:
                check_container(raw, audio_format, field="audio_base64")

                def load() -> tuple[Any, int | None]:
                    return raw, None

        transport_session, request_id = transport_session_of(ctx), ctx.request_id

        def work(job: Job) -> EmotionAnalysis:
            def progress(done: int, total: int) -> None:
                job.check(more_to_do=done < total)  # between windows: stop here if the caller went away, or take turns
                report(done, total)

            DEPARTURES.register(transport_session, request_id, job)  # a 2025 client gone for good stops it
            try:
                audio, rate = load()
                job.check()
                return state.recognizer.analyze(
                    audio, sample_rate=rate, options=analysis_options, name=name, progress=progress
                )
            finally:
                DEPARTURES.unregister(transport_session, request_id)

        async with progress_reporter(ctx) as report:
            return await state.queue.run(work, within_passes=True)  # nothing is kept from a stopped analysis


# (function, `add_tool` arguments) in the order the server lists them; the view draws the result.
TOOLS = (
    (
        analyze_emotion,
        dict(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False), icons=ICONS, meta=TOOL_UI_META),
    ),
)
