"""The encoder run by OpenVINO's CPU plugin (operating points "openvino" and "openvino+bf16").

The encoder is this package's own torch module (`model.WhisperEncoder`, LoRA merged), converted with
`openvino.convert_model` at shapes of any batch and length, so the padded (3000 mel frames) and the
trimmed contexts both run on one model. Pooling and heads stay in torch. The precision hint decides
the arithmetic: f32 for "openvino" (an exact path: its readings stay within 1e-4 of the published
ones, tested), bf16 for "openvino+bf16" (CPU bf16 units, named in every result like any other point).
Threads follow torch's thread count, with the latency hint (one request at a time).

The converted model is saved (weights uncompressed) in the user's cache, `<cache>/openvino/<key>/`,
keyed by the checkpoint's weights file (path, size, modification time) and OpenVINO's version, so a second load skips the conversion (compiling
it for the CPU takes a fraction of that). Each load ends with one padded window through the compiled
model, so the first utterance does not pay for OpenVINO's first-inference set-up. `pip install 'emotion-tool[openvino]'` installs OpenVINO.

Layer 2, the engine (`emotion_tool.engine`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from emotion_tool.engine.kernels import cache_dir

__all__ = ["OpenVinoEncoder", "openvino_available"]

log = logging.getLogger(__name__)
_HINTS = {"fp32": "f32", "bf16": "bf16"}


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class OpenVinoEncoder:
    """A callable standing for `encoder.forward`: mel features (B, n_mels, 2T) → states (B, T, d_model), fp32.

    Attributes:
        source: "converted" or "read from the cache <dir>", for `emotion-tool info` and logs.
        load_s: seconds the conversion (or reading) and compilation took.
    """

    def __init__(self, encoder: torch.nn.Module, *, precision: str, threads: int | None = None, cache_key: str | None = None):
        try:
            import openvino as ov
        except ImportError as e:
            raise RuntimeError(
                "operating point 'openvino' needs OpenVINO; pip install 'emotion-tool[openvino]' (or pip install openvino), "
                "or use a torch point such as 'published' or 'bf16'"
            ) from e
        if precision not in _HINTS:
            raise ValueError(f"the openvino runtime computes in fp32 or bf16, not {precision}")
        started = time.perf_counter()
        self.precision = precision
        self.threads = threads or torch.get_num_threads()
        core = ov.Core()
        where = None
        if cache_key is not None:
            where = cache_dir() / "openvino" / hashlib.sha256(f"{cache_key}|openvino {ov.__version__}".encode()).hexdigest()[:24]
        model, self.source = self._model(ov, core, encoder, where)
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": _HINTS[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": self.threads,
        }
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: calls from several threads take turns
        self.version = ov.__version__.split("-")[0]
        # One padded window now: OpenVINO's first inference sets up its kernels (about a second for the
        # medium size), which would otherwise land on the first utterance's latency.
        self(torch.zeros(1, encoder.conv1.in_channels, 2 * encoder.embed_positions.num_embeddings))
        self.load_s = time.perf_counter() - started
        log.info("OpenVINO encoder (%s, %s hint, %d threads) ready in %.1f s", self.source, _HINTS[precision], self.threads, self.load_s)

    @staticmethod
    def _model(ov: Any, core: Any, encoder: torch.nn.Module, where: Path | None) -> tuple[Any, str]:
        xml = where / "encoder.xml" if where is not None else None
        if xml is not None and xml.exists():
            try:
                return core.read_model(str(xml)), f"read from the cache {where}"
            except Exception as e:  # a damaged cache is converted again
                log.warning("ignoring the OpenVINO cache %s (%s); converting the encoder again", where, e)
        n_mels = encoder.conv1.in_channels
        frames = 2 * encoder.embed_positions.num_embeddings
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the converter traces with torch.jit, which torch deprecates
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the 30-s length check: shapes are checked before the call
            model = ov.convert_model(
                encoder.float().eval(),
                example_input=torch.zeros(1, n_mels, frames),
                input=[ov.PartialShape([-1, n_mels, -1])],  # any batch, any length up to 30 s
                share_weights=False,  # its own copy: the torch weights may be freed (or memory-mapped from a file)
            )
        if xml is None:
            return model, "converted"
        try:
            xml.parent.mkdir(parents=True, exist_ok=True)
            tmp = xml.with_name(f"encoder.{os.getpid()}.xml")
            ov.save_model(model, str(tmp), compress_to_fp16=False)  # the weights as they are: fp16 would change the numbers
            os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))
            os.replace(tmp, xml)
            (xml.parent / "about.json").write_text(json.dumps({"converted_unix_s": time.time(), "openvino": ov.__version__}) + "\n")
        except OSError as e:
            log.warning("could not cache the converted encoder in %s (%s); it is converted again next time", where, e)
        return model, "converted"

    def __call__(self, input_features: torch.Tensor) -> torch.Tensor:
        features = input_features.detach().to(torch.float32).cpu().contiguous().numpy()
        with self._lock:
            self._request.infer({0: features})
            states = self._request.get_output_tensor(0).data.copy()
        return torch.from_numpy(states)

    def describe(self) -> str:
        return f"OpenVINO {self.version}, CPU plugin, {_HINTS[self.precision]} hint, {self.threads} threads ({self.source})"


def checkpoint_cache_key(weights: Path) -> str | None:
    """What names a checkpoint's converted encoder: its weights file's path, size and modification time."""
    try:
        info = weights.stat()
    except OSError:
        return None
    return f"{weights.resolve()}|{info.st_size}|{info.st_mtime_ns}"
