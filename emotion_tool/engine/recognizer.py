"""`EmotionRecognizer`: owns the network, its device and weights, and turns audio into analyses.

Layer 2, the engine (`emotion_tool.engine`).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from emotion_tool.audio import AudioError, AudioInput, load_audio, load_channels
from emotion_tool.audio.diarize import speaker_names
from emotion_tool.audio.vad import SpeechDetector, VadOptions, speech_seconds
from emotion_tool.config import SAMPLE_RATE, default_model
from emotion_tool.engine.checkpoint import Checkpoint, build_model, read_checkpoint
from emotion_tool.engine.features import log_mel_spectrogram, pad_or_trim
from emotion_tool.engine.kernels import KernelChoice, cpu_kernels
from emotion_tool.engine.model import MERaLiONSER
from emotion_tool.engine.operating_point import OperatingPoint, Runtime, cpu_features
from emotion_tool.engine.options import (
    AnalysisOptions,
    Context,
    Precision,
    Quantization,
)
from emotion_tool.engine.results import (
    DIMENSION_MEANINGS,
    LANGUAGES,
    LIMITATIONS,
    DiarizationNote,
    EmotionAnalysis,
    EmotionReading,
    ModelInfo,
    SpeakerTurn,
    TraceSegment,
)
from emotion_tool.engine.speakers import merge_channels
from emotion_tool.engine.windows import (
    check_window_budget,
    plan_trace,
    plan_windows,
    trace_window_count,
    weighted_mean,
)

if TYPE_CHECKING:
    from emotion_tool.audio.diarize import Diarizer
    from emotion_tool.engine.calibrated import Calibration

Progress = Callable[[int, int], None]
"""Called as progress(done, total) with the number of windows read so far, between windows. It is also
the cancellation hook: an exception it raises stops the analysis there and reaches the caller."""

_SAMPLES_PER_FRAME = 320  # one encoder frame = 2 mel frames of 160 samples = 20 ms
DEFAULT_MIN_CONFIDENCE = 0.5  # the uncertain threshold when neither the options nor a calibration set one


@dataclass(frozen=True)
class RawOutputs:
    """The network's outputs for a batch of windows, before any calibration."""

    logits: np.ndarray  # (n, num_emotions) float32 categorical logits, in `labels` order
    dims: np.ndarray  # (n, 3) float32 valence, arousal, dominance in 0..1


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" → CUDA, then Apple MPS, then CPU; anything else is passed to torch.device."""
    if str(device) != "auto":
        try:
            dev = torch.device(device)
        except RuntimeError as e:
            raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from e
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but CUDA is not available; use --device cpu or auto")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "fp16": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}  # fmt: skip


def pick_dtype(device: torch.device, dtype: str | torch.dtype = "auto") -> torch.dtype:
    """"auto" → bf16 on GPUs that support it, else fp16 on GPU; fp32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype != "auto":
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; use auto, {', '.join(_DTYPES)}")
        return _DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


@dataclass(frozen=True)
class _Plan:
    """A decoded recording and the windows `analyze` reads from it, before any is read."""

    wav: np.ndarray  # (n,) 16 kHz float32
    duration_s: float
    speech: list[tuple[int, int]]  # spans of speech (sample spans)
    speech_s: float
    warnings: list[str]
    planned: list[tuple[int, int]]  # windows of at most 30 s tiling the audio (sample spans)
    windows: list[tuple[int, int]]  # those read for the summary (with speech, if any has)
    weights: list[float]  # seconds of speech in each of `windows`
    trace_windows: list[tuple[int, int]]
    trace_ratio: list[float]  # speech share of each trace window
    trace_read: list[tuple[int, int]]  # trace windows with enough speech to read

    @property
    def spans(self) -> list[tuple[int, int]]:
        """What is read, in the order of the readings: `windows`, then `trace_read`."""
        return self.windows + self.trace_read

    def chunks(self) -> list[np.ndarray]:
        return [self.wav[s:e] for s, e in self.spans]


class EmotionRecognizer:
    """Reads emotions from speech with MERaLiON-SER-v1 (or a checkpoint of the same network).

    Thread-safe: calls from several threads take turns on the network.

    Example:
        >>> rec = EmotionRecognizer.from_pretrained()  # MERaLiON/MERaLiON-SER-v1 from the Hub cache
        >>> rec.analyze("turn.wav").summary.label
        'neutral'
    """

    def __init__(
        self,
        model: MERaLiONSER,
        *,
        model_id: str,
        random_weights: bool = False,
        options: AnalysisOptions = AnalysisOptions(),
        quantize: Quantization | None = None,
        calibration: "str | os.PathLike | Calibration | None" = None,
        precision: Precision | None = None,
        runtime: Runtime = "torch",
        runtime_cache_key: str | None = None,
    ):
        """Wraps a built network. `precision` (default: the dtype the encoder holds) casts the encoder to
        "bf16"/"fp16" or quantizes its linear layers to "int8" in place; `quantize="int8"` is the same
        as `precision="int8"`. `runtime="openvino"` runs the (fp32) encoder with OpenVINO's CPU plugin
        at `precision` fp32 or bf16 instead (`emotion_tool.engine.openvino_runtime`; `runtime_cache_key`
        names the weights for its cache of converted models)."""
        if quantize is not None:
            if quantize != "int8":
                raise ValueError(f"unknown quantization {quantize!r}; the one available is 'int8'")
            if precision not in (None, "int8"):
                raise ValueError(f"quantize={quantize!r} contradicts precision={precision!r}; give one of them")
            precision = "int8"
        self.model = model.eval()
        self.model_id = model_id
        self.random_weights = random_weights
        self.options = options
        self._param = next(model.downstream_model.parameters())  # the heads' device and dtype
        self._parameters = sum(p.numel() for p in model.parameters())
        encoder = self.model.whisper.encoder
        if precision is None:
            precision = _PRECISION_OF.get(next(encoder.parameters()).dtype, "fp32")
        OperatingPoint(precision=precision, runtime=runtime)  # validates the names and their combination
        self.runtime: Runtime = runtime
        self.openvino: Any = None
        if runtime == "openvino":
            if self._param.device.type != "cpu":
                raise ValueError(f"the openvino runtime runs on the CPU only; use device='cpu', or a torch point on {self._param.device}")
            from emotion_tool.engine.openvino_runtime import OpenVinoEncoder

            encoder.float()
            self.openvino = OpenVinoEncoder(encoder, precision=precision, cache_key=runtime_cache_key)
            encoder.runtime = self.openvino
        elif precision in ("bf16", "fp16"):
            _warn_if_slow(precision, self._param.device)
            encoder.to(_DTYPES[precision])
        elif precision == "int8":
            if self._param.device.type != "cpu":
                raise ValueError(f"precision 'int8' runs on the CPU only; use device='cpu' or bf16/fp16 on {self._param.device}")
            self.model = _quantize(self.model, "int8")
        self.precision: Precision = precision
        self.quantization = "int8" if precision == "int8" else None
        self._encoder_dtype = torch.float32 if precision == "int8" else next(encoder.parameters()).dtype
        self.kernels: KernelChoice | None = None  # a bf16 encoder on the CPU: what its attention computes in, and why
        if self._encoder_dtype == torch.bfloat16 and self._param.device.type == "cpu" and runtime == "torch":
            self.kernels = cpu_kernels()
            encoder.set_cpu_attention(self.kernels.attention)
        self._vad: SpeechDetector | None = None
        self._vad_options: VadOptions | None = None
        self._lock = threading.Lock()
        self._diarizer_lock = threading.Lock()
        self._diarizer_instance: Diarizer | None = None
        self.calibration: Calibration | None = None
        self._calibration_note = None
        self._calibration_warnings: list[str] = []
        self._scale: tuple[float, torch.Tensor | None] | None = None
        if calibration is not None:
            self._load_calibration(calibration)

    def _load_calibration(self, source: "str | os.PathLike | Calibration") -> None:
        import warnings

        from emotion_tool.engine.calibrated import load_calibration, same_model

        cal, name = load_calibration(source)
        if cal.labels != self.labels:
            raise ValueError(
                f"calibration {name} was fitted for labels {cal.labels}, but {self.model_id} has {self.labels}; "
                "fit one for this model with `emotion-tool calibrate`"
            )
        notes = []
        if not same_model(cal.model_id, self.model_id):
            notes.append(f"The calibration {name} was fitted for {cal.model_id}, not {self.model_id}: its probabilities may be off.")
        if cal.operating_point != self.operating_point(trace=False):
            notes.append(
                f"The calibration {name} was fitted at the {cal.operating_point} operating point, and is used at "
                f"{self.operating_point(trace=False)}: its probabilities may be off."
            )
        for note in notes:
            warnings.warn(note, stacklevel=3)
        bias = cal.bias_vector()
        self.calibration = cal
        self._calibration_note = cal.note(name)
        self._calibration_warnings = notes
        self._scale = (cal.temperature, None if bias is None else torch.from_numpy(bias).float().to(self.device))

    @property
    def min_confidence(self) -> float:
        """The uncertain threshold of the recognizer's options: theirs, a calibration's fitted one, or 0.5."""
        return self._threshold(self.options)

    def _threshold(self, o: AnalysisOptions) -> float:
        if o.min_confidence is not None:
            return o.min_confidence
        if self.calibration is not None and self.calibration.min_confidence is not None:
            return self.calibration.min_confidence
        return DEFAULT_MIN_CONFIDENCE

    def _softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities from logits (n, K), through the calibration when one is loaded."""
        z = logits.float()
        if self._scale is not None:
            temperature, bias = self._scale
            z = z / temperature if bias is None else z / temperature + bias
        return torch.softmax(z, dim=-1)

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike | None = None,
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        options: AnalysisOptions = AnalysisOptions(),
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        quantize: Quantization | None = None,
        calibration: "str | os.PathLike | Calibration | None" = None,
        operating_point: str | OperatingPoint | None = None,
    ) -> "EmotionRecognizer":
        """Loads a checkpoint from a Hub id or a directory in the published layout.

        Args:
            model: Hub id or directory; default $EMOTION_TOOL_MODEL, else "MERaLiON/MERaLiON-SER-v1".
            device: "auto" (CUDA, MPS, CPU), or a torch device string.
            dtype: "auto" (bf16/fp16 on GPU, fp32 on CPU), or "float32", "float16", "bfloat16".
            options: analysis defaults for `analyze`.
            revision, token, cache_dir, local_files_only: passed to the Hub download.
            quantize: "int8" is the same as operating_point="int8" (kept for older callers).
            operating_point: a name such as "published" (the default), "live", "bf16" or "trimmed+int8"
                (see `emotion_tool.engine.operating_point`): its precision sets the encoder's weights, its
                context and trace mode replace those of `options`. Anything but "published" changes
                the numbers, and every result names the point.
            calibration: a calibration.json (or its directory, or a `Calibration`) from `emotion-tool
                calibrate`: probabilities go through its temperature and bias, the uncertain flag uses its
                threshold unless `options.min_confidence` is set, and readings name it. None: the
                network's own probabilities.

        Raises:
            CheckpointError: the checkpoint cannot be found or does not fit the network.
            ValueError: an unknown operating point, or one the device cannot run.
        """
        point = OperatingPoint.parse(operating_point) if operating_point is not None else None
        if point is not None:
            options = replace(options, context=point.context, trace_mode=point.trace_mode)
            if quantize is not None and point.precision != "int8":
                raise ValueError(f"quantize={quantize!r} contradicts operating_point={str(point)!r}; give one of them")
        ckpt: Checkpoint = read_checkpoint(
            model if model is not None else default_model(),
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
        dev = pick_device(device)
        precision = "int8" if quantize is not None else (point.precision if point is not None else None)
        if precision == "int8" and dev.type != "cpu":
            raise ValueError(f"int8 runs on the CPU only; use device='cpu', or bf16/fp16 on {dev}")
        base = pick_dtype(dev, dtype)
        runtime = point.runtime if point is not None else "torch"
        if runtime == "openvino":  # the torch encoder stays fp32: OpenVINO computes in the point's precision
            if dev.type != "cpu":
                raise ValueError(f"the openvino runtime runs on the CPU only; use device='cpu', or a torch point on {dev}")
            from emotion_tool.config import WEIGHTS_FILE
            from emotion_tool.engine.openvino_runtime import checkpoint_cache_key

            net = build_model(ckpt, device=dev, dtype=torch.float32)
            return cls(
                net, model_id=ckpt.model_id, random_weights=ckpt.random_init, options=options, precision=precision,
                calibration=calibration, runtime="openvino", runtime_cache_key=checkpoint_cache_key(ckpt.path / WEIGHTS_FILE),
            )  # fmt: skip
        if precision in ("bf16", "fp16") or (precision == "fp32" and dev.type != "cpu"):
            # The named precision is the encoder's; pooling and heads keep fp32 (they cost little).
            net = build_model(ckpt, device=dev, dtype=torch.float32, encoder_dtype=_DTYPES[precision])
        elif precision == "int8":  # quantized in place (copying out of the file's map first measured worse)
            net = build_model(ckpt, device=dev, dtype=torch.float32)
        else:
            net = build_model(ckpt, device=dev, dtype=base)
        return cls(
            net, model_id=ckpt.model_id, random_weights=ckpt.random_init, options=options, precision=precision, calibration=calibration
        )

    @property
    def point(self) -> OperatingPoint:
        """The operating point of a whole-file analysis with the recognizer's options."""
        return self.operating_point_of(self.options)

    def operating_point_of(self, options: AnalysisOptions | None = None, *, trace: bool | None = None) -> OperatingPoint:
        """The operating point that `options` (default: the recognizer's) give on these weights."""
        o = options or self.options
        shared = (o.trace if trace is None else trace) and o.trace_mode == "shared-encoder"
        return OperatingPoint(context=o.context, runtime=self.runtime, precision=self.precision, trace_mode="shared-encoder" if shared else "windows")

    def operating_point(self, options: AnalysisOptions | None = None, *, trace: bool | None = None) -> str:
        """"published", or the opt-in choices in use joined by "+" (e.g. "trimmed+int8")."""
        return str(self.operating_point_of(options, trace=trace))

    @property
    def labels(self) -> list[str]:
        return list(self.model.config.labels)

    @property
    def device(self) -> torch.device:
        return self._param.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of pooling and heads (fp32 unless the whole network was loaded in half precision)."""
        return self._param.dtype

    @property
    def encoder_dtype(self) -> torch.dtype:
        """The dtype the encoder computes in (fp32 for int8: its activations stay fp32)."""
        return self._encoder_dtype

    def info(self) -> ModelInfo:
        """What is loaded, for people and assistants."""
        return ModelInfo(
            model_id=self.model_id,
            random_weights=self.random_weights,
            labels=self.labels,
            dimensions={d: DIMENSION_MEANINGS.get(d, "0..1") for d in self.model.config.dims},
            operating_point=self.operating_point(trace=False),
            sample_rate=SAMPLE_RATE,
            max_window_s=float(self.model.config.features.chunk_length),
            device=str(self.device),
            dtype=str(self.encoder_dtype).removeprefix("torch.") if self.precision != "int8" else "int8",
            parameters=self._parameters,
            cpu=cpu_features().describe() if self.device.type == "cpu" else None,
            encoder_runtime=self.openvino.describe() if self.openvino is not None else None,
            languages=LANGUAGES,
            limitations=LIMITATIONS,
            calibration=self._calibration_note,
        )

    # --- whole recordings --------------------------------------------------------------------------

    def analyze(
        self,
        audio: AudioInput,
        *,
        sample_rate: int | None = None,
        trace: bool | None = None,
        window_s: float | None = None,
        hop_s: float | None = None,
        options: AnalysisOptions | None = None,
        name: str | None = None,
        progress: Progress | None = None,
    ) -> EmotionAnalysis:
        """Analyses one recording.

        Args:
            audio: a path, the bytes of an audio file, or an array of samples (then `sample_rate` too).
            sample_rate: Hz of an array.
            trace: also read windows of `window_s` every `hop_s` (defaults from `options`).
            window_s, hop_s: trace window and hop, seconds.
            options: overrides the recognizer's `AnalysisOptions` for this call.
            name: how to call the audio in results and errors (defaults to the file name).
            progress: called as progress(done, total) while windows are read.

        Raises:
            AudioError: the audio is empty, undecodable, non-finite, too short or too long.
        """
        o = options or self.options
        overrides = {k: v for k, v in (("trace", trace), ("window_s", window_s), ("hop_s", hop_s)) if v is not None}
        if overrides:
            o = replace(o, **overrides)
        if name is None and isinstance(audio, (str, os.PathLike)):
            name = os.fspath(audio)
        if o.channels is not None:
            return self._analyze_channels(audio, sample_rate, o, name, progress)
        if o.diarize:
            return self._analyze_diarized(audio, sample_rate, o, name, progress)
        plan = self._plan(audio, sample_rate, o, name)
        probs, dims = self._read_plan(plan, o, progress)
        return self._assemble(plan, probs, dims, o, name)

    def _read_plan(self, plan: _Plan, o: AnalysisOptions, progress: Progress | None) -> tuple[np.ndarray, np.ndarray]:
        """Reads a planned recording: probabilities and dims, their rows following `plan.spans`."""
        if o.trace and o.trace_mode == "shared-encoder":
            _, probs, dims = self._read_shared(plan.wav, plan.planned, plan.windows, plan.trace_read, o, progress)
        else:
            _, probs, dims = self._read(plan.chunks(), batch_size=self._batch_size(o), context=o.context, progress=progress)
        return probs, dims

    def _analyze_channels(
        self, audio: AudioInput, sample_rate: int | None, o: AnalysisOptions, name: str | None, progress: Progress | None
    ) -> EmotionAnalysis:
        """Reads each channel as its own recording and merges them (`emotion_tool.engine.speakers`)."""
        speakers = o.channels or ()
        waves = load_channels(audio, sample_rate=sample_rate, max_duration_s=o.max_duration_s, name=name)
        if waves.shape[0] != len(speakers):
            raise AudioError(
                "type",
                f"{name or 'audio'} has {waves.shape[0]} channel(s), but {len(speakers)} speaker names were given "
                f"({', '.join(speakers)}); name one speaker per channel, or mix the channels (channels=None, --channels mix)",
            )
        one = replace(o, channels=None)
        return self._read_speakers([self._plan(wav, SAMPLE_RATE, one, name) for wav in waves], speakers, one, o, name, progress)

    def _read_speakers(
        self, plans: list[_Plan], speakers: Sequence[str], one: AnalysisOptions, o: AnalysisOptions, name: str | None,
        progress: Progress | None, **merge: Any,
    ) -> EmotionAnalysis:  # fmt: skip
        """Reads each speaker's plan (one-voice options `one`) and merges them; `merge` goes to `merge_channels`."""
        analyses, outputs = [], []
        for k, plan in enumerate(plans):
            # Progress over all speakers: each speaker's share of the work counted as equal.
            step = None if progress is None else (lambda done, total, k=k: progress(k * total + done, len(plans) * total))
            probs, dims = self._read_plan(plan, one, step)
            analyses.append(self._assemble(plan, probs, dims, one, name))
            outputs.append((probs[: len(plan.windows)], dims[: len(plan.windows)], plan.weights))
        return merge_channels(
            analyses, speakers=speakers, speech=[p.speech for p in plans], window_outputs=outputs,
            min_confidence=self._threshold(o), channel_warnings=[p.warnings for p in plans], **merge,
        )  # fmt: skip

    def _analyze_diarized(
        self, audio: AudioInput, sample_rate: int | None, o: AnalysisOptions, name: str | None, progress: Progress | None
    ) -> EmotionAnalysis:
        """Finds the speaker turns of one-channel audio, reads each speaker's turns as a channel of their own
        (the others' speech silenced), and merges the speakers (`emotion_tool.engine.speakers`)."""
        one = replace(o, diarize=False, num_speakers=None)
        wav = load_audio(audio, sample_rate=sample_rate, max_duration_s=o.max_duration_s, name=name)
        speech = self._detector(o.vad).speech_spans(wav)
        diarizer = self._diarizer()
        found = diarizer.turns(wav, speech, num_speakers=o.num_speakers)
        if not found:  # nobody speaks: the one-voice analysis, which says so
            plan = self._plan(wav, SAMPLE_RATE, one, name, speech=speech)
            analysis = self._assemble(plan, *self._read_plan(plan, one, progress), one, name)
            return analysis.model_copy(update={"warnings": [*analysis.warnings, "No speech was detected, so no speaker turns were found."]})
        count = max(t.speaker for t in found) + 1
        names = speaker_names(count)
        own = [[(t.start, t.end) for t in found if t.speaker == k] for k in range(count)]
        plans = []
        for spans in own:
            masked = np.zeros_like(wav)
            for s, e in spans:
                masked[s:e] = wav[s:e]
            plans.append(self._plan(masked, SAMPLE_RATE, one, name, speech=spans, turns=spans))
        merged = self._read_speakers(plans, names, one, o, name, progress, channels=[None] * count, turns=[len(spans) for spans in own])
        note = DiarizationNote(
            backend=diarizer.name, num_speakers=count, given=o.num_speakers is not None,
            turns=[SpeakerTurn(speaker=names[t.speaker], start_s=t.start / SAMPLE_RATE, end_s=t.end / SAMPLE_RATE) for t in found],
        )  # fmt: skip
        return merged.model_copy(update={"diarization": note})

    def _diarizer(self) -> "Diarizer":
        """The diarizer, loaded on first use (its voice encoder is small: 1.4 M parameters)."""
        with self._diarizer_lock:
            if self._diarizer_instance is None:
                from emotion_tool.audio.diarize import Diarizer

                self._diarizer_instance = Diarizer()
            return self._diarizer_instance

    def analyze_batch(
        self,
        audios: Sequence[AudioInput],
        *,
        sample_rate: int | None = None,
        names: Sequence[str | None] | None = None,
        options: AnalysisOptions | None = None,
    ) -> list[EmotionAnalysis | AudioError | ValueError]:
        """Analyses several recordings, their windows read together in batches of `options.batch_size`
        (so short clips fill a GPU's batches); each analysis equals `analyze`'s of that recording, up
        to the float rounding of a different batch.

        Returns:
            For each recording, its analysis, or the error `analyze` would raise for it (AudioError:
            empty, undecodable, too short or too long; ValueError: a trace over its window budget).
        """
        o = options or self.options
        names = list(names) if names is not None else [None] * len(audios)
        if len(names) != len(audios):
            raise ValueError(f"names has {len(names)} entries for {len(audios)} recordings; give one per recording")
        if o.channels is not None or o.diarize:  # each speaker is planned apart: read recording by recording
            return [self._analyze_or_error(audio, sample_rate, o, name) for audio, name in zip(audios, names)]
        results: list[EmotionAnalysis | AudioError | ValueError] = []
        plans: list[tuple[int, _Plan]] = []
        for i, (audio, name) in enumerate(zip(audios, names)):
            if name is None and isinstance(audio, (str, os.PathLike)):
                names[i] = name = os.fspath(audio)
            try:
                plans.append((i, self._plan(audio, sample_rate, o, name)))
                results.append(None)  # type: ignore[arg-type]  # filled below
            except (AudioError, ValueError) as e:  # this recording's own problem
                results.append(e)
        if o.trace and o.trace_mode == "shared-encoder":  # one shared pass per recording: nothing to pool
            for i, plan in plans:
                _, probs, dims = self._read_shared(plan.wav, plan.planned, plan.windows, plan.trace_read, o, None)
                results[i] = self._assemble(plan, probs, dims, o, names[i])
            return results
        chunks = [c for _, plan in plans for c in plan.chunks()]
        _, probs, dims = self._read(chunks, batch_size=self._batch_size(o), context=o.context)
        start = 0
        for i, plan in plans:
            end = start + len(plan.spans)
            results[i] = self._assemble(plan, probs[start:end], dims[start:end], o, names[i])
            start = end
        return results

    def _analyze_or_error(
        self, audio: AudioInput, sample_rate: int | None, o: AnalysisOptions, name: str | None
    ) -> EmotionAnalysis | AudioError | ValueError:
        try:
            return self.analyze(audio, sample_rate=sample_rate, options=o, name=name)
        except (AudioError, ValueError) as e:  # this recording's own problem
            return e

    def _plan(
        self, audio: AudioInput, sample_rate: int | None, o: AnalysisOptions, name: str | None,
        *, speech: list[tuple[int, int]] | None = None, turns: list[tuple[int, int]] | None = None,
    ) -> _Plan:  # fmt: skip
        """Decodes a recording and plans its windows (nothing read yet); raises what `analyze` raises.

        `speech` replaces the voice activity detector's spans; with `turns` (a diarized speaker's), the
        summary windows are planned inside each turn, so that each turn is read as its own utterance."""
        wav = load_audio(audio, sample_rate=sample_rate, max_duration_s=o.max_duration_s, name=name)
        duration_s = wav.shape[0] / SAMPLE_RATE
        if duration_s < o.min_duration_s:
            raise AudioError(
                "too_short",
                f"{name or 'audio'} lasts {duration_s:.2f} s, too short to judge (minimum {o.min_duration_s:g} s); "
                "send a longer stretch of speech",
            )
        if o.trace:  # the work a trace asks for is bounded before any of it is done
            check_window_budget(
                trace_window_count(wav.shape[0], window_s=o.window_s, hop_s=o.hop_s),
                duration_s,
                padded=o.trace_mode == "windows" and o.context == "padded",
                operating_point=self.operating_point(o),
                hop_s=o.hop_s,
            )
        if speech is None:
            speech = self._detector(o.vad).speech_spans(wav)
        speech_s = speech_seconds(speech, 0, wav.shape[0])
        warnings: list[str] = []
        if not speech:
            warnings.append("No speech was detected; the reading describes non-speech sound and means little.")

        # Windows never exceed what the checkpoint's network reads at once (30 s for the published one).
        span_s = min(o.max_window_s, float(self.model.config.features.chunk_length))
        if o.trace and o.window_s > span_s:
            raise ValueError(f"window_s={o.window_s} exceeds the {span_s:g}-s window this checkpoint reads")
        planned = plan_windows(wav.shape[0], speech, max_window_s=span_s)
        if turns is not None:  # each turn on its own: a turn longer than a window is cut in its pauses
            planned = [
                (s + a, s + b) for s, e in turns
                for a, b in plan_windows(e - s, [(max(0, x - s), min(e, y) - s) for x, y in speech if x < e and y > s], max_window_s=span_s)
            ]  # fmt: skip
        windows = planned
        weights = [speech_seconds(speech, s, e) for s, e in windows]
        if sum(weights) > 0:  # windows without speech carry no weight: do not read them
            windows = [w for w, wt in zip(windows, weights) if wt > 0]
            weights = [wt for wt in weights if wt > 0]
        trace_windows = plan_trace(wav.shape[0], window_s=o.window_s, hop_s=o.hop_s) if o.trace else []
        trace_ratio = [speech_seconds(speech, s, e) / ((e - s) / SAMPLE_RATE) for s, e in trace_windows]
        trace_read = [w for w, r in zip(trace_windows, trace_ratio) if r >= o.min_speech_ratio]
        return _Plan(wav, duration_s, speech, speech_s, warnings, planned, windows, weights, trace_windows, trace_ratio, trace_read)

    def _assemble(self, plan: _Plan, probs: np.ndarray, dims: np.ndarray, o: AnalysisOptions, name: str | None) -> EmotionAnalysis:
        """The analysis from the planned recording's readings: rows of `probs`/`dims` follow `plan.spans`."""
        duration_s, speech_s, spans, windows, weights = plan.duration_s, plan.speech_s, plan.spans, plan.windows, plan.weights
        trace_windows, trace_ratio, trace_read, warnings = plan.trace_windows, plan.trace_ratio, plan.trace_read, list(plan.warnings)
        threshold = self._threshold(o)

        def reading(i: int) -> EmotionReading:
            s, e = spans[i]
            return EmotionReading.from_outputs(
                probs[i], dims[i], labels=self.labels, start_s=s / SAMPLE_RATE, end_s=e / SAMPLE_RATE,
                min_confidence=threshold,
            )  # fmt: skip

        n = len(windows)
        summary = EmotionReading.from_outputs(
            weighted_mean(probs[:n], weights),
            weighted_mean(dims[:n], weights),
            labels=self.labels,
            start_s=0.0,
            end_s=duration_s,
            min_confidence=threshold,
        )
        window_readings = [reading(i) for i in range(n)]
        if not plan.speech:  # the network still names an emotion for silence or noise: never let it look confident
            summary = summary.model_copy(update={"uncertain": True})
            window_readings = [r.model_copy(update={"uncertain": True}) for r in window_readings]
        read_at = {span: n + j for j, span in enumerate(trace_read)}
        segments = [
            TraceSegment(
                start_s=s / SAMPLE_RATE,
                end_s=e / SAMPLE_RATE,
                speech_ratio=min(1.0, ratio),
                is_speech=(s, e) in read_at,
                reading=reading(read_at[(s, e)]) if (s, e) in read_at else None,
            )
            for (s, e), ratio in zip(trace_windows, trace_ratio)
        ]
        if duration_s < 1.0:
            warnings.append(f"The audio lasts only {duration_s:.2f} s; readings of clips under 1 s are unreliable.")
        if self.random_weights:
            warnings.append("This checkpoint has random weights (a test model): the readings mean nothing.")
        warnings.extend(self._calibration_warnings)
        return EmotionAnalysis(
            summary=summary,
            windows=window_readings,
            segments=segments,
            duration_s=duration_s,
            speech_s=speech_s,
            speech_ratio=speech_s / duration_s,
            trace_window_s=o.window_s if o.trace else None,
            trace_hop_s=o.hop_s if o.trace else None,
            source=os.path.basename(name) if name else None,
            model_id=self.model_id,
            random_weights=self.random_weights,
            operating_point=self.operating_point(o),
            labels=self.labels,
            warnings=warnings,
            calibration=self._calibration_note,
        )

    # --- windows -----------------------------------------------------------------------------------

    def classify_batch(
        self, waveforms: Sequence[np.ndarray], *, min_confidence: float | None = None
    ) -> list[EmotionReading]:
        """Reads each 16 kHz mono waveform of at most 30 s as one window, padded to 30 s (published) unless
        the recognizer's options say `context="trimmed"`.

        Readings' times run from 0 to each waveform's length; callers shift them into their stream.
        """
        self._check_windows(waveforms, "classify_batch")
        _, probs, dims = self._read(list(waveforms), batch_size=self._batch_size(self.options), context=self.options.context)
        threshold = self._threshold(self.options) if min_confidence is None else min_confidence
        return [
            EmotionReading.from_outputs(
                p, d, labels=self.labels, start_s=0.0, end_s=w.shape[0] / SAMPLE_RATE, min_confidence=threshold
            )
            for p, d, w in zip(probs, dims, waveforms)
        ]

    def logits_batch(self, waveforms: Sequence[np.ndarray]) -> RawOutputs:
        """The network's logits and dims for windows read as `classify_batch` reads them, before any
        calibration: what `emotion-tool calibrate` fits on and `emotion-tool eval` scores."""
        self._check_windows(waveforms, "logits_batch")
        logits, _, dims = self._read(list(waveforms), batch_size=self._batch_size(self.options), context=self.options.context)
        return RawOutputs(logits=logits, dims=dims)

    def _check_windows(self, waveforms: Sequence[np.ndarray], caller: str) -> None:
        limit = self.model.config.features.n_samples
        for i, w in enumerate(waveforms):
            if w.ndim != 1 or w.shape[0] == 0 or w.shape[0] > limit:
                raise AudioError("type", f"waveform {i} has shape {w.shape}; {caller} takes 1-D waveforms of 1..{limit} samples")

    def _read(
        self, chunks: list[np.ndarray], *, batch_size: int, context: Context = "padded", progress: Progress | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw logits and probabilities (n, num_emotions), and dims (n, 3), of 16 kHz chunks of at most 30 s, one window each."""
        logits = np.zeros((len(chunks), self.model.config.num_emotions), dtype=np.float32)
        probs = np.zeros((len(chunks), self.model.config.num_emotions), dtype=np.float32)
        dims = np.zeros((len(chunks), len(self.model.config.dims)), dtype=np.float32)
        done = 0
        for idx in self._batches([len(c) for c in chunks], batch_size, context):
            with self._lock, torch.inference_mode():
                hidden = self._encode([chunks[i] for i in idx], context)
                # Pooling and heads one window at a time: their kernels round differently with the batch's
                # size, and a window's reading should not depend on the windows beside it (they cost
                # little next to the encoder).
                outs = [self.model.heads(self.model.embed(hidden[b : b + 1].to(self.dtype))) for b in range(len(idx))]
                out_logits = torch.cat([o.logits for o in outs])
                logits[idx] = out_logits.float().cpu().numpy()
                probs[idx] = self._softmax(out_logits).cpu().numpy()
                dims[idx] = torch.cat([o.dims for o in outs]).float().cpu().numpy()
            done += len(idx)
            if progress is not None:
                progress(done, len(chunks))
        return _finite(logits, probs, dims)

    def _read_shared(
        self,
        wav: np.ndarray,
        hosts: list[tuple[int, int]],
        windows: list[tuple[int, int]],
        segments: list[tuple[int, int]],
        o: AnalysisOptions,
        progress: Progress | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The shared-encoder trace: one encoder pass per host window (the plan of windows of at most
        30 s that tiles the audio); each trace segment is pooled from the frames of the host holding its
        midpoint. `windows` (a subset of `hosts`) get their own readings from the same passes.
        Rows of the results (logits, probabilities, dims): `windows`, then `segments`."""
        home = {seg: next(h for h in hosts if h[0] <= (seg[0] + seg[1]) // 2 < h[1]) for seg in segments}
        needed = [h for h in hosts if h in windows or h in home.values()]
        n_out = len(windows) + len(segments)
        logits = np.zeros((n_out, self.model.config.num_emotions), dtype=np.float32)
        probs = np.zeros((n_out, self.model.config.num_emotions), dtype=np.float32)
        dims = np.zeros((n_out, len(self.model.config.dims)), dtype=np.float32)
        row_of_window = {w: i for i, w in enumerate(windows)}
        done = 0
        for idx in self._batches([h[1] - h[0] for h in needed], self._batch_size(o), o.context):
            batch = [needed[i] for i in idx]
            with self._lock, torch.inference_mode():
                hidden = self._encode([wav[h0:h1] for h0, h1 in batch], o.context)
                rows, pooled = [], []
                for b, host in enumerate(batch):
                    if host in row_of_window:  # the window's own reading, from the same pass
                        rows.append(row_of_window[host])
                        pooled.append(self.model.embed(hidden[b : b + 1].to(self.dtype)))
                    for j, seg in enumerate(segments):
                        if home[seg] != host:
                            continue
                        f0 = (max(seg[0], host[0]) - host[0]) // _SAMPLES_PER_FRAME  # clipped to the host
                        f1 = -(-(min(seg[1], host[1]) - host[0]) // _SAMPLES_PER_FRAME)
                        rows.append(len(windows) + j)
                        pooled.append(self.model.embed(hidden[b : b + 1, f0:f1].to(self.dtype)))
                out = self.model.heads(torch.cat(pooled))
                logits[rows] = out.logits.float().cpu().numpy()
                probs[rows] = self._softmax(out.logits).cpu().numpy()
                dims[rows] = out.dims.float().cpu().numpy()
            done += len(idx)
            if progress is not None:
                progress(done, len(needed))
        return _finite(logits, probs, dims)

    @property
    def batch_size(self) -> int:
        """Windows per forward pass with the recognizer's options (unless they say: 1 on the CPU, 8 on a GPU)."""
        return self._batch_size(self.options)

    def _batch_size(self, o: AnalysisOptions) -> int:
        if o.batch_size is not None:
            return o.batch_size
        return 1 if self.device.type == "cpu" else 8

    def _batches(self, lengths: list[int], batch_size: int, context: Context) -> list[list[int]]:
        """Index batches. Trimmed windows are batched only with windows of the same frame count, so
        that no window sees another's padding and results do not depend on the batch."""
        if context == "padded":
            return [list(range(i, min(i + batch_size, len(lengths)))) for i in range(0, len(lengths), batch_size)]
        groups: dict[int, list[int]] = {}
        for i, n in enumerate(lengths):
            groups.setdefault(self._frames(n), []).append(i)
        return [g[i : i + batch_size] for g in groups.values() for i in range(0, len(g), batch_size)]

    def _frames(self, n_samples: int) -> int:
        """Encoder frames that cover `n_samples` (1500 for 30 s)."""
        return min(self.model.config.max_source_positions, -(-n_samples // _SAMPLES_PER_FRAME))

    def _encode(self, chunks: list[np.ndarray], context: Context) -> torch.Tensor:
        """Encoder states (B, T, d_model): T = 1500 for padded windows, the chunks' own frames when trimmed.

        Features are always computed on the 30-s padded waveform, so a trimmed window's frames equal
        the padded window's first frames; only the encoder's context differs.
        """
        cfg = self.model.config.features
        batch = np.stack([pad_or_trim(c, cfg.n_samples) for c in chunks])
        feats = log_mel_spectrogram(torch.from_numpy(batch).to(self.device), cfg)
        if context == "trimmed":
            feats = feats[..., : 2 * max(self._frames(len(c)) for c in chunks)]
        return self.model.whisper.encoder(feats.to(self._encoder_dtype))

    def _detector(self, options: VadOptions) -> SpeechDetector:
        with self._lock:
            if self._vad is None or self._vad_options != options:
                self._vad = SpeechDetector(options)
                self._vad_options = options
            return self._vad

    def __repr__(self) -> str:
        note = ", random weights" if self.random_weights else ""
        point = f", operating_point={self.operating_point()!r}"
        cal = f", calibration={self._calibration_note.source!r}" if self._calibration_note else ""
        return f"EmotionRecognizer({self.model_id!r}, device={self.device}{point}{cal}{note})"


_PRECISION_OF = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def _warn_if_slow(precision: str, device: torch.device) -> None:
    """Half precision on a CPU without the matching units works, only slower than fp32: say so."""
    if device.type != "cpu":
        return
    import warnings

    features = cpu_features()
    if precision == "bf16" and not features.fast_bf16:
        warnings.warn(
            f"this CPU has no bf16 matrix units ({features.describe()}): the bf16 encoder works but may be "
            "slower than fp32; use operating point 'published' or 'int8' here",
            stacklevel=3,
        )
    elif precision == "fp16" and not features.avx512_fp16:
        warnings.warn(
            f"this CPU has no fp16 arithmetic units ({features.describe()}): the fp16 encoder runs slowly; "
            "use 'bf16' (if the CPU has bf16 units) or 'int8' on the CPU",
            stacklevel=3,
        )


def _quantize(model: MERaLiONSER, kind: Quantization) -> MERaLiONSER:
    """Dynamic int8 quantization of every nn.Linear (weights int8, activations quantized per batch)."""
    if kind != "int8":
        raise ValueError(f"unknown quantization {kind!r}; the one available is 'int8'")
    import warnings

    # torch marks torch.ao.quantization deprecated in favour of torchao (not a dependency here); the
    # API still works in the torch releases this project supports.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # In place: a copy would hold the fp32 and the int8 weights at once (peak memory about doubled).
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def _finite(logits: np.ndarray, probs: np.ndarray, dims: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The network's outputs, refused when any is not finite: no NaN reading is ever returned or kept."""
    if not (np.isfinite(logits).all() and np.isfinite(probs).all() and np.isfinite(dims).all()):
        raise AudioError(
            "non_finite",
            "the model's output for this audio is not finite (NaN or infinite), so it is not read; check the "
            "audio's level (float samples lie within ±1) and, on a GPU in float16, try --dtype bfloat16 or float32",
        )
    return logits, probs, dims

