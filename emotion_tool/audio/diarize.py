"""Who speaks when in one-channel audio: speaker turns from a voice encoder's d-vectors, clustered.

The voice encoder is Resemblyzer's (a 3-layer LSTM trained with the GE2E loss on VoxCeleb and
LibriSpeech; 256-dimensional d-vectors from 1.6-s windows of 40-band mel spectra). Its weights come
from the `resemblyzer` wheel on PyPI (`pip install 'emotion-tool[diarize]'`), so nothing is downloaded
at run time; the network and its mel front end are run here (the package's own audio module imports
webrtcvad and librosa, which it only needs for its preprocessing), and give its numbers to within float
rounding.

How turns are found: each speech span of the voice activity detector is read as 1.6-s windows every
0.2 s (a shorter span repeated to fill one), and the windows' d-vectors clustered (average linkage over cosine distance), into the number of speakers
where it is given, else into the number whose clusters stand apart best (silhouette) among those whose
speakers are at least `threshold` apart (one speaker where none is); each 10-ms frame takes the
speaker whose windows over it are most alike, runs shorter than `min_turn_s` inside a speech span join a
neighbour (a short span between pauses keeps its own speaker), and a speaker's turns closer than
`join_gap_s` become one. One speaker per moment: speech of two people at
once is given to one of them (this backend finds no overlaps).

Layer 1, audio in (`emotion_tool.audio`).
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from emotion_tool.config import SAMPLE_RATE

__all__ = ["DiarizeOptions", "Diarizer", "SpeakerTurn", "DiarizerUnavailable", "check_available", "speaker_names"]

Span = tuple[int, int]

INSTALL = "pip install 'emotion-tool[diarize]'"
_HOP = 160  # samples per mel frame (10 ms)
_WINDOW_FRAMES = 160  # frames per d-vector window (1.6 s), as the encoder was trained
_STEP_FRAMES = 20  # frames between windows (0.2 s)
_MAX_CLUSTERED = 1500  # windows clustered at once; the rest join the nearest cluster (memory stays bounded)
_TARGET_DBFS = -30.0  # the encoder's training loudness


class DiarizerUnavailable(RuntimeError):
    """The diarizer's backend is not installed; the message says how to install it."""


@dataclass(frozen=True)
class DiarizeOptions:
    """How speaker turns are found in one-channel audio."""

    num_speakers: int | None = None  # None: found (at most max_speakers)
    max_speakers: int = 8
    threshold: float = 0.15  # when the number is found: the least cosine distance between two speakers' mean d-vectors
    min_turn_s: float = 0.5  # shorter runs of one speaker are given to a neighbour
    join_gap_s: float = 2.0  # a speaker's turns with less silence between them (and no one else) are one turn

    def __post_init__(self) -> None:
        n = self.num_speakers
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.max_speakers):
            raise ValueError(f"num_speakers must be a whole number from 1 to {self.max_speakers}, or None to find it; got {n!r}")
        if not 0 < self.threshold < 2:
            raise ValueError(f"threshold is a cosine distance in (0, 2), got {self.threshold!r}")
        if self.min_turn_s < 0 or self.join_gap_s < 0:
            raise ValueError(f"min_turn_s and join_gap_s must not be negative, got {self.min_turn_s}, {self.join_gap_s}")


@dataclass(frozen=True)
class SpeakerTurn:
    """One stretch of one speaker's speech, in samples at 16 kHz; speakers are numbered from 0 in order of first speech."""

    start: int
    end: int
    speaker: int


def speaker_names(count: int) -> list[str]:
    """The names given to diarized speakers: "speaker 1", "speaker 2", ... in order of first speech."""
    return [f"speaker {k + 1}" for k in range(count)]


def _weights_path() -> Path:
    """The voice encoder's weights in the installed `resemblyzer` package, found without importing it."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise DiarizerUnavailable(f"diarization needs the voice encoder that the resemblyzer package ships; {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        raise DiarizerUnavailable(f"the resemblyzer package has no pretrained.pt at {path}; reinstall it: {INSTALL}")
    return path


def check_available() -> Path:
    """The voice encoder's weights; raises `DiarizerUnavailable`, with the install line, unless they and scikit-learn are installed."""
    path = _weights_path()
    if importlib.util.find_spec("sklearn") is None:
        raise DiarizerUnavailable(f"diarization clusters the voice encoder's d-vectors with scikit-learn; {INSTALL}")
    return path


def backend_name() -> str:
    """What finds the turns, for results: the encoder's package and version, and the clustering."""
    from importlib import metadata

    try:
        version = metadata.version("resemblyzer")
    except metadata.PackageNotFoundError:
        version = "?"
    return f"resemblyzer {version} voice encoder (GE2E d-vectors) + average-linkage clustering"


class Diarizer:
    """Finds speaker turns in 16 kHz mono audio, given its speech spans. Thread-safe; the encoder loads on first use."""

    def __init__(self, options: DiarizeOptions | None = None):
        self.options = options or DiarizeOptions()
        self._lock = threading.Lock()
        self._encoder = None
        self._mel = None

    @property
    def name(self) -> str:
        return backend_name()

    def _load(self):
        import torch

        with self._lock:
            if self._encoder is None:
                path = check_available()
                state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
                encoder = _VoiceEncoder()
                encoder.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")}, strict=True)
                self._mel = _mel_basis()
                self._encoder = encoder.eval()
        return self._encoder

    def embed(self, wav: np.ndarray) -> np.ndarray:
        """d-vectors (n, 256), L2-normalised, of `wav`'s 1.6-s windows every 0.2 s (one, of `wav` repeated, if shorter)."""
        import torch

        encoder = self._load()
        window = _WINDOW_FRAMES * _HOP
        if 0 < wav.shape[0] < window:  # shorter than a window (a "No!"): repeated to fill one, so the voice is not drowned in padding
            wav = np.tile(wav, -(-window // wav.shape[0]))[:window]
        mel = _mel_frames(wav, self._mel)
        starts = list(range(0, mel.shape[0] - _WINDOW_FRAMES + 1, _STEP_FRAMES))
        out = []
        with torch.inference_mode():
            for i in range(0, len(starts), 64):
                batch = np.stack([mel[s : s + _WINDOW_FRAMES] for s in starts[i : i + 64]])
                out.append(encoder(torch.from_numpy(batch)).numpy())
        return np.concatenate(out)

    def turns(self, wav: np.ndarray, speech: Sequence[Span], *, num_speakers: int | None = None) -> list[SpeakerTurn]:
        """The speaker turns of `wav` (16 kHz mono float32) within its `speech` spans (sorted, disjoint samples).

        Args:
            num_speakers: how many speakers there are; None: the options' number, else found.
        """
        o = self.options
        k = num_speakers if num_speakers is not None else o.num_speakers
        if k is not None:
            DiarizeOptions(num_speakers=k, max_speakers=max(o.max_speakers, k))  # the same check as the options'
        spans = [(int(s), int(e)) for s, e in speech if e > s]
        if not spans:
            return []
        voiced = np.concatenate([wav[s:e] for s, e in spans])
        rms = float(np.sqrt(np.mean(np.square(voiced, dtype=np.float64))))
        gain = 10 ** (_TARGET_DBFS / 20) / rms if rms > 0 else 1.0
        # Each speech span read on its own, so that no window mixes the voices on both sides of a pause.
        per_span = [self.embed((wav[s:e] * gain).astype(np.float32)) for s, e in spans]
        vectors = np.concatenate(per_span)
        centroids = _cluster(vectors, k, o)
        frame_labels = []
        for (s, e), v in zip(spans, per_span):  # each frame: the speaker whose windows over it are most alike
            n_frames = max(1, int(np.ceil((e - s) / _HOP)))
            scores = np.zeros((n_frames + 1, centroids.shape[0]))
            rows = v @ centroids.T
            for w, row in enumerate(rows):
                a = min(n_frames - 1, w * _STEP_FRAMES)
                end = n_frames if w == len(rows) - 1 else min(n_frames, a + _WINDOW_FRAMES)  # the last window covers the tail
                scores[a] += row
                scores[end] -= row
            frame_labels.append(np.cumsum(scores, axis=0)[:n_frames].argmax(axis=1))
        # Within a span a run too short for a turn joins a neighbour; a short span of its own (a "No!"
        # between pauses) keeps its speaker.
        min_run = max(1, int(round(o.min_turn_s * SAMPLE_RATE / _HOP)))
        smoothed = [_smooth(labels, min_run) for labels in frame_labels]
        return _to_turns(smoothed, spans, join_gap=int(round(o.join_gap_s * SAMPLE_RATE)))


def _cluster(vectors: np.ndarray, k: int | None, o: DiarizeOptions) -> np.ndarray:
    """The normalised centroids (speakers, 256) of the d-vectors' clusters."""
    from sklearn.cluster import AgglomerativeClustering

    n = vectors.shape[0]
    if n == 1 or k == 1:
        return _normalise(vectors.mean(axis=0, keepdims=True))
    picked = np.linspace(0, n - 1, min(n, _MAX_CLUSTERED)).round().astype(int)
    sample = vectors[picked]
    if k is not None:  # k clusters of at least 2 windows each, lone windows (outliers) set aside, where that can be had
        found = AgglomerativeClustering(n_clusters=min(k, len(sample)), metric="cosine", linkage="average").fit_predict(sample)
        for n_clusters in range(k + 1, min(len(sample), k + 8)):
            if np.bincount(found).min() >= 2:
                break
            labels = AgglomerativeClustering(n_clusters=n_clusters, metric="cosine", linkage="average").fit_predict(sample)
            big = [c for c in range(n_clusters) if (labels == c).sum() >= 2]
            if len(big) == k:
                centroids = _normalise(np.stack([sample[labels == c].mean(axis=0) for c in big]))
                found = (sample @ centroids.T).argmax(axis=1)
    else:
        found = _found_speakers(sample, o)
    centroids = _normalise(np.stack([sample[found == c].mean(axis=0) for c in np.unique(found)]))
    labels = (vectors @ centroids.T).argmax(axis=1)
    # One refinement step over all windows (those left out of the clustering included).
    kept = [c for c in range(centroids.shape[0]) if np.any(labels == c)]
    return _normalise(np.stack([vectors[labels == c].mean(axis=0) for c in kept]))


def _found_speakers(sample: np.ndarray, o: DiarizeOptions) -> np.ndarray:
    """Cluster labels when the number of speakers is not given.

    Each clustering into 2..max_speakers (average linkage, cosine distance), its lone windows given to
    the nearest cluster, is a candidate when no two clusters' centroids are closer than `threshold`; of the
    candidates, the one whose clusters stand apart best (silhouette), a smaller number preferred unless
    a larger one is clearly better (by 0.02). No candidate: one speaker."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import silhouette_score

    best, best_score = np.zeros(len(sample), dtype=int), -1.0
    for k in range(2, min(o.max_speakers, len(sample) - 1) + 1):
        labels = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(sample)
        sizes = np.bincount(labels)
        big = [c for c in range(k) if sizes[c] >= 2]
        if len(big) < 2:
            continue
        centroids = _normalise(np.stack([sample[labels == c].mean(axis=0) for c in big]))
        labels = (sample @ centroids.T).argmax(axis=1)  # a lone window (an outlier) joins the nearest cluster
        if len(np.unique(labels)) < len(big):
            continue
        apart = 1 - centroids @ centroids.T
        if apart[~np.eye(len(big), dtype=bool)].min() < o.threshold:
            continue
        score = silhouette_score(sample, labels, metric="cosine")
        if score > best_score + (0.02 if best_score > -1 else 0.0):
            best, best_score = labels, score
    return best


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _smooth(labels: np.ndarray, min_run: int) -> np.ndarray:
    """Runs shorter than `min_run` frames take the label of their longer neighbour, shortest runs first."""
    labels = labels.copy()
    while True:
        edges = np.flatnonzero(np.diff(labels)) + 1
        starts = np.concatenate([[0], edges])
        ends = np.concatenate([edges, [labels.shape[0]]])
        lengths = ends - starts
        if len(starts) == 1 or lengths.min() >= min_run:
            return labels
        i = int(lengths.argmin())
        left = lengths[i - 1] if i > 0 else -1
        right = lengths[i + 1] if i + 1 < len(starts) else -1
        labels[starts[i] : ends[i]] = labels[starts[i - 1]] if left >= right else labels[starts[i + 1]]


def _to_turns(frame_labels: Sequence[np.ndarray], spans: Sequence[Span], *, join_gap: int) -> list[SpeakerTurn]:
    """Turns in the recording's samples from each span's frame labels (10-ms frames from the span's start);
    speakers renumbered by first speech."""
    pieces: list[tuple[int, int, int]] = []
    for (s, e), labels in zip(spans, frame_labels):
        edges = np.flatnonzero(np.diff(labels)) + 1
        bounds = [0, *edges.tolist(), len(labels)]
        for a, b in zip(bounds, bounds[1:]):
            pieces.append((s + a * _HOP, min(e, s + b * _HOP), int(labels[a])))
    turns: list[list[int]] = []
    for s, e, label in pieces:
        if turns and turns[-1][2] == label and s - turns[-1][1] <= join_gap:
            turns[-1][1] = e
        elif e > s:
            turns.append([s, e, label])
    order: dict[int, int] = {}
    for _, _, label in turns:
        order.setdefault(label, len(order))
    return [SpeakerTurn(s, e, order[label]) for s, e, label in turns]


# --- the voice encoder and its front end ---------------------------------------------------------


def _mel_basis() -> np.ndarray:
    """40 Slaney mel bands over a 400-point FFT at 16 kHz (librosa's defaults, as the encoder was trained), (201, 40)."""
    from transformers.audio_utils import mel_filter_bank

    return mel_filter_bank(
        num_frequency_bins=201, num_mel_filters=40, min_frequency=0.0, max_frequency=SAMPLE_RATE / 2,
        sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney",
    ).astype(np.float32)  # fmt: skip


def _mel_frames(wav: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Mel power spectrogram (frames, 40) of 25-ms Hann windows every 10 ms, centred and zero-padded (librosa's melspectrogram)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    spec = torch.stft(x, n_fft=400, hop_length=_HOP, win_length=400, window=torch.hann_window(400), center=True, pad_mode="constant", return_complex=True)
    power = spec.abs().square().numpy()  # (201, frames)
    return (power.T @ basis).astype(np.float32)


def _VoiceEncoder():
    """Resemblyzer's network: LSTM(40 → 256, 3 layers), the last hidden state → linear → ReLU → L2 norm (torch imported on first use)."""
    import torch
    from torch import nn

    class VoiceEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(40, 256, 3, batch_first=True)
            self.linear = nn.Linear(256, 256)
            self.relu = nn.ReLU()

        def forward(self, mels: torch.Tensor) -> torch.Tensor:
            _, (hidden, _) = self.lstm(mels)
            raw = self.relu(self.linear(hidden[-1]))
            return raw / torch.norm(raw, dim=1, keepdim=True).clamp_min(1e-12)

    return VoiceEncoder()
