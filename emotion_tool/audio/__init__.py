"""Audio in: every way audio enters the package, and where speech is in it.

Layer 1, above the foundation (`emotion_tool.config`, `emotion_tool.errors`) and below everything
else; it imports nothing else from the package. `decode` reads files, bytes, base64, data URLs, raw
PCM and live chunks into 16-kHz mono float32 (checks first, never blocking, memory bounded); `vad`
finds speech with silero-vad. The names below are `decode`'s.
"""

from emotion_tool.audio.decode import (
    BYTES_PER_SAMPLE,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    AudioError,
    AudioInput,
    AudioProblem,
    PcmEncoding,
    audio_info,
    check_chunk,
    check_path_text,
    decode_base64,
    decode_data_url,
    decode_pcm,
    encode_wav,
    load_audio,
    load_channels,
    open_regular_file,
    read_frames,
    sniff_container,
)

__all__ = ["load_audio", "load_channels", "AudioError", "AudioInput", "check_chunk", "check_path_text", "decode_pcm", "read_frames", "open_regular_file"]
