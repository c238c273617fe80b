"""Manifests, their validation, lazy reading, class balance and augmentation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotion_tool import AudioError
from emotion_tool.science import data as data_module
from emotion_tool.science.data import (
    Augmentation,
    ManifestDataset,
    ManifestError,
    ManifestOptions,
    class_balance,
    collate_clips,
    list_noise_files,
    read_item_audio,
    read_manifest,
)

SR = 16000


def _tone(path: Path, seconds: float, *, rate: int = SR, channels: int = 1, freq: float = 220.0) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    sf.write(path, np.stack([wave] * channels, axis=1) if channels > 1 else wave, rate, subtype="PCM_16")
    return path


@pytest.fixture()
def clips(tmp_path: Path) -> Path:
    audio = tmp_path / "audio"
    audio.mkdir()
    _tone(audio / "a.wav", 3.0)
    _tone(audio / "b.wav", 2.0, rate=22050, channels=2)  # resampled and mixed down when read
    _tone(audio / "c.flac", 4.0, rate=8000, freq=440.0)
    return tmp_path


def _csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


def test_csv_manifest_reads_every_field(clips: Path):
    m = _csv(
        clips / "train.csv",
        """
audio,start_s,end_s,label,valence,arousal,dominance,language,speaker
audio/a.wav,0.5,2.5,angry,0.1,0.9,0.8,en,spk1
audio/b.wav,,,Happy,,,,ms,
audio/c.flac,1,,ang,0.5,,,en,spk2
""",
    )
    manifest = read_manifest(m)
    assert len(manifest) == 3 and manifest.dropped == 0
    assert manifest.sha256 == hashlib.sha256(m.read_bytes()).hexdigest()
    a, b, c = manifest.items
    assert a.audio == (clips / "audio/a.wav").resolve() and (a.start_s, a.end_s) == (0.5, 2.5)
    assert a.label == "angry" and a.dims == (0.1, 0.9, 0.8) and a.language == "en" and a.speaker == "spk1"
    assert b.label == "happy" and b.dims == (None, None, None) and b.start_s is None and b.speaker is None
    assert c.label == "angry" and c.dims == (0.5, None, None)  # "ang" is a common alias
    assert [it.line for it in manifest.items] == [2, 3, 4]


def test_jsonl_manifest_with_a_label_map_and_a_dimension_scale(clips: Path):
    rows = [
        {"audio": "audio/a.wav", "label": "exc", "valence": 5, "arousal": 1, "dominance": 3},
        {"audio": "audio/b.wav", "label": "oth"},
        {"audio": str((clips / "audio/c.flac").resolve()), "label": "neu", "language": "ta"},
    ]
    m = clips / "dev.jsonl"
    m.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    manifest = read_manifest(m, options=ManifestOptions(label_map={"exc": "happy", "oth": None}, dim_scale=(1.0, 5.0)))
    assert [it.label for it in manifest.items] == ["happy", "neutral"]
    assert manifest.dropped == 1
    assert manifest.items[0].dims == (1.0, 0.0, 0.5)
    assert manifest.items[1].group == "ta"


def test_every_bad_row_is_named_with_what_to_fix(clips: Path):
    m = _csv(
        clips / "bad.csv",
        """
audio,start_s,end_s,label,valence
audio/a.wav,,,calm,
audio/missing.wav,,,sad,
audio/a.wav,2,1,sad,
audio/a.wav,-1,,sad,
audio/a.wav,0,9,sad,
audio/a.wav,,,sad,1.5
audio/a.wav,x,,sad,
audio/a.wav,,,,
""",
    )
    with pytest.raises(ManifestError) as err:
        read_manifest(m)
    text = str(err.value)
    assert "8 problems" in text
    assert "line 2: unknown label 'calm'" in text and "label_map" in text and "neutral" in text
    assert "line 3: audio file" in text and "missing.wav does not exist" in text
    assert "line 4: end_s=1 is not after start_s=2" in text
    assert "line 5: start_s=-1 is negative" in text
    assert "line 6: end_s=9 is past the end of a.wav (3.00 s)" in text
    assert "line 7: valence=1.5 is outside the declared scale 0..1" in text and "dim_scale" in text
    assert "line 8: start_s='x' is not a number" in text
    assert "line 9: label is empty" in text
    assert len(err.value.problems) == 8


def test_whole_file_problems(clips: Path):
    with pytest.raises(ValueError, match="lacks the column"):
        read_manifest(_csv(clips / "nolabel.csv", "audio,emotion\naudio/a.wav,sad"))
    with pytest.raises(ValueError, match=r"must end in \.csv, \.tsv or \.jsonl"):
        read_manifest(_csv(clips / "m.txt", "audio,label\naudio/a.wav,sad"))
    with pytest.raises(ValueError, match="does not exist"):
        read_manifest(clips / "nowhere.csv")
    with pytest.raises(ValueError, match="no usable rows"):
        read_manifest(_csv(clips / "dropped.csv", "audio,label\naudio/a.wav,oth"), options=ManifestOptions(label_map={"oth": None}))
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        (clips / "broken.jsonl").write_text("{audio: a.wav}\n")
        read_manifest(clips / "broken.jsonl")
    (clips / "audio/noise.wav").write_bytes(b"RIFF....not audio")
    with pytest.raises(ManifestError, match="cannot decode"):
        read_manifest(_csv(clips / "undecodable.csv", "audio,label\naudio/noise.wav,sad"))
    with pytest.raises(ValueError, match="names that are not model labels"):
        ManifestOptions(label_map={"exc": "excited"})
    with pytest.raises(ValueError, match="dim_scale"):
        ManifestOptions(dim_scale=(5.0, 1.0))


def test_class_balance_per_language(clips: Path):
    m = _csv(
        clips / "bal.csv",
        """
audio,label,language
audio/a.wav,sad,en
audio/a.wav,sad,en
audio/b.wav,happy,en
audio/c.flac,happy,zh
audio/c.flac,angry,
""",
    )
    balance = class_balance(read_manifest(m).items)
    assert balance.counts["en"]["sad"] == 2 and balance.counts["en"]["happy"] == 1
    assert balance.counts["zh"]["happy"] == 1 and balance.counts["unspecified"]["angry"] == 1
    assert balance.total["happy"] == 2 and "fearful" in balance.missing
    table = balance.table().splitlines()
    assert table[0].split() == ["language", "neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised", "total"]
    assert table[1].split() == ["en", "0", "1", "2", "0", "0", "0", "0", "3"]
    assert table[-1].split() == ["all", "0", "2", "2", "1", "0", "0", "0", "5"]


def test_items_read_only_their_stretch_at_16khz_mono(clips: Path):
    m = _csv(clips / "m.csv", "audio,start_s,end_s,label\naudio/a.wav,0.5,2.0,sad\naudio/b.wav,,,sad\naudio/c.flac,1.0,,sad")
    a, b, c = read_manifest(m).items
    assert read_item_audio(a).shape == (int(1.5 * SR),)
    wave_b = read_item_audio(b)
    assert wave_b.dtype == np.float32 and wave_b.ndim == 1 and abs(wave_b.shape[0] - 2 * SR) <= 2
    assert abs(read_item_audio(c).shape[0] - 3 * SR) <= 2


def test_dataset_reads_audio_lazily_one_item_at_a_time(clips: Path, monkeypatch: pytest.MonkeyPatch):
    m = _csv(clips / "m.csv", "audio,label,valence\naudio/a.wav,sad,0.2\naudio/b.wav,happy,\naudio/c.flac,angry,")
    items = read_manifest(m).items
    reads = []
    real = data_module.read_item_audio
    monkeypatch.setattr(data_module, "read_item_audio", lambda item: reads.append(item.line) or real(item))
    ds = ManifestDataset(items, max_clip_s=2.5)
    assert reads == [] and len(ds) == 3
    wave, label, dims, index = ds[2]
    assert reads == [4] and label == 3 and index == 2  # angry is index 3
    assert wave.shape == (int(2.5 * SR),)  # cropped to max_clip_s
    assert np.isnan(dims).all()
    assert ds[0][2][0] == pytest.approx(0.2) and np.isnan(ds[0][2][1])


def test_training_randomness_depends_on_seed_epoch_and_index_only(clips: Path):
    m = _csv(clips / "m.csv", "audio,label\naudio/c.flac,sad")
    items = read_manifest(m).items
    aug = Augmentation(speed_factors=(0.9, 1.1))
    make = lambda seed: ManifestDataset(items, max_clip_s=1.0, augmentation=aug, random_crop=True, seed=seed)  # noqa: E731
    a, b = make(0), make(0)
    np.testing.assert_array_equal(a[0][0], b[0][0])
    seen = set()
    for epoch in range(8):
        a.set_epoch(epoch)
        seen.add(a[0][0].tobytes())
    assert len(seen) > 2  # crops and speeds change between epochs


def test_speed_perturbation_changes_length_and_pitch():
    wave = (0.3 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR)).astype(np.float32)
    rng = np.random.default_rng(0)
    fast = Augmentation(speed_factors=(1.1,)).apply(wave, rng)
    slow = Augmentation(speed_factors=(0.9,)).apply(wave, rng)
    assert abs(fast.shape[0] - SR / 1.1) < 3 and abs(slow.shape[0] - SR / 0.9) < 3

    def peak_hz(x: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        return float(np.argmax(spectrum) * SR / len(x))

    assert peak_hz(fast) == pytest.approx(220, abs=3) and peak_hz(slow) == pytest.approx(180, abs=3)


def test_noise_is_added_at_the_drawn_snr(tmp_path: Path):
    noise_dir = tmp_path / "noise"
    (noise_dir / "sub").mkdir(parents=True)
    sf.write(noise_dir / "sub" / "hum.wav", np.random.default_rng(1).normal(0, 0.1, 8000).astype(np.float32), 8000)
    (noise_dir / "notes.txt").write_text("not audio")
    files = list_noise_files(noise_dir)
    assert [f.name for f in files] == ["hum.wav"]
    wave = (0.3 * np.sin(2 * np.pi * 200 * np.arange(3 * SR) / SR)).astype(np.float32)
    aug = Augmentation(speed_factors=(1.0,), noise_files=files, noise_prob=1.0, snr_db=(10.0, 10.0))
    noisy = aug.apply(wave, np.random.default_rng(0))
    added = noisy - wave
    snr = 10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean(added.astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.1)
    assert np.array_equal(Augmentation(noise_files=files, noise_prob=0.0, speed_factors=(1.0,)).apply(wave, np.random.default_rng(0)), wave)
    with pytest.raises(ValueError, match="holds no audio files"):
        list_noise_files(_empty(tmp_path))
    with pytest.raises(ValueError, match="is not a folder"):
        list_noise_files(tmp_path / "absent")


def _empty(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_collate_pads_and_cuts_to_one_window():
    batch = [
        (np.ones(5, dtype=np.float32), 1, np.array([0.1, np.nan, 0.3], dtype=np.float32), 0),
        (np.ones(12, dtype=np.float32), 2, np.full(3, np.nan, dtype=np.float32), 1),
    ]
    b = collate_clips(batch, n_samples=8)
    assert b.waveforms.shape == (2, 8)
    assert b.waveforms[0].tolist() == [1] * 5 + [0] * 3 and b.waveforms[1].tolist() == [1] * 8
    assert b.labels.tolist() == [1, 2] and b.indices.tolist() == [0, 1]
    assert b.dims.isnan().tolist() == [[False, True, False], [True, True, True]]


def test_unreadable_audio_at_read_time_is_an_audio_error(clips: Path):
    m = _csv(clips / "m.csv", "audio,label\naudio/a.wav,sad")
    item = read_manifest(m).items[0]
    item.audio.write_bytes(b"")
    with pytest.raises(AudioError, match="manifest line 2"):
        read_item_audio(item)
