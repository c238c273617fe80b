"""Speech-to-text through a real transformers pipeline, on a tiny random Whisper built here (no download).

Its transcripts are random characters; the tests check the plumbing, not the words.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from agents import build_empathic_agent
from agents.stt import WhisperTranscriber
from emotion_tool import load_audio

SPECIAL_TOKENS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random Whisper checkpoint (d_model 16, one layer each side) with a printable-ASCII vocabulary."""
    transformers = pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("whisper")
    vocab = {chr(c): i for i, c in enumerate(range(33, 127))}  # byte-level BPE maps printable ASCII to itself
    vocab.update({tok: len(vocab) + i for i, tok in enumerate(SPECIAL_TOKENS)})
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.WhisperTokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    eot, sot = vocab["<|endoftext|>"], vocab["<|startoftranscript|>"]
    config = transformers.WhisperConfig(
        vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_target_positions=64,
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
    )  # fmt: skip
    model = transformers.WhisperForConditionalGeneration(config)
    model.generation_config.decoder_start_token_id = sot
    model.generation_config.no_timestamps_token_id = vocab["<|notimestamps|>"]
    model.save_pretrained(d)
    processor = transformers.WhisperProcessor(feature_extractor=transformers.WhisperFeatureExtractor(), tokenizer=tokenizer)
    processor.save_pretrained(d)
    return d


def test_whisper_transcriber_runs_the_pipeline_lazily(tiny_whisper, speech_wav):
    stt = WhisperTranscriber(str(tiny_whisper), device="cpu", max_new_tokens=6)
    assert stt._pipe is None  # nothing loads before the first transcription
    wav = load_audio(speech_wav)
    text = stt(wav)
    assert isinstance(text, str) and text == text.strip()
    assert stt(wav) == text  # greedy decoding: the same words again
    with pytest.raises(ValueError, match=r"mono samples of shape \(N,\)"):
        stt(np.stack([wav, wav]))


def test_agent_transcribes_turns_that_arrive_without_words(recognizer, tiny_whisper, speech_wav):
    stt = WhisperTranscriber(str(tiny_whisper), device="cpu", max_new_tokens=6)
    expected = stt(load_audio(speech_wav)) or None
    graph = build_empathic_agent(recognizer, checkpointer=InMemorySaver(), transcriber=stt)
    out = graph.invoke({"audio": str(speech_wav)}, config={"configurable": {"thread_id": "stt"}})
    assert out["emotion_history"][-1].transcript == expected
