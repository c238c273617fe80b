"""Shared fixtures: tiny random checkpoints and real speech (made by `helpers`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import SENTENCES, speak, speak_with_pauses

@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audio")


@pytest.fixture(scope="session")
def speech_wav(audio_dir: Path) -> Path:
    """About 3 s of English speech, 16 kHz mono WAV."""
    return speak("I am really not happy about how this went today.", audio_dir / "speech.wav")


@pytest.fixture(scope="session")
def sentences_wav(audio_dir: Path) -> tuple[Path, list[tuple[float, float]]]:
    """Three sentences with 1-s pauses, and where each sentence sounds."""
    return speak_with_pauses(SENTENCES, audio_dir / "sentences.wav")


@pytest.fixture(scope="session")
def sentences(sentences_wav) -> tuple:
    """The three sentences as 16-kHz float32 samples, and where each sentence sounds."""
    import soundfile as sf

    path, bounds = sentences_wav
    wav, sr = sf.read(path, dtype="float32")
    assert sr == 16000
    return wav, bounds


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight checkpoint in the published layout."""
    from emotion_tool.engine.testing import save_random_checkpoint

    return save_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def recognizer(tiny_checkpoint: Path):
    """An EmotionRecognizer on the tiny checkpoint, on the CPU."""
    from emotion_tool import EmotionRecognizer

    return EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu")


# --- the quick tier -------------------------------------------------------------------------------
# `-m "not integration"` is the check before a commit: unit-level tests in this process only. The
# integration tier is everything that starts child processes, servers (MCP over HTTP, LangGraph
# Server), the voice frameworks' pipelines, third-party clients, a browser, Ray, or runs README's blocks.
_INTEGRATION_MARKS = {"subprocess", "clients", "ray", "slow"}
_INTEGRATION_FILES = {
    "test_readme.py",
    "test_mcp_transports.py",
    "test_mcp_hostile_wire.py",
    "test_mcp_clients.py",
    "test_mcp_app_view.py",
    "test_mcp_registry.py",
    "test_mcp_langchain.py",
    "test_mcp_langgraph.py",
    "test_agents_server.py",
    "test_integrations_pipecat.py",
    "test_integrations_livekit.py",
    "test_integrations_realtime.py",
    "test_integrations_demos.py",
    "test_microphone.py",
    "test_benchmarks.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in _INTEGRATION_FILES or _INTEGRATION_MARKS & {m.name for m in item.iter_markers()}:
            item.add_marker(pytest.mark.integration)
