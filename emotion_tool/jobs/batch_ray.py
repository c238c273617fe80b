"""Batch analysis on a Ray cluster (Ray Data): the same items, rows and table as `emotion_tool.jobs.batch`.

Ray Data reads the items, decodes audio in CPU tasks, and runs `EmotionRecognizer.analyze_batch` in a
pool of actors that each load the model once (one per GPU, or a configured number of CPU actors). The rows
stream back to this process and are written by the same `TableWriter`, in parts, so the table, its
resumption and its per-item errors are those of a local run; no shared file system is needed.

Requires the `ray` extra: pip install 'emotion-tool[ray]'.

Layer 4, jobs (`emotion_tool.jobs`).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from emotion_tool.jobs.batch import (
    BatchOptions,
    BatchSummary,
    Loader,
    TableWriter,
    ThroughputBar,
    _arrow_schema,
    _decode_or_error,
    analyze_items,
    pending_items,
)
from emotion_tool.science.data import ManifestItem

__all__ = ["RayOptions", "run_batch_ray"]


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a Ray run goes."""

    address: str | None = None  # a running cluster ("auto", "host:6379", "ray://host:10001"); None starts a local one on 127.0.0.1
    actors: int | None = None  # model actors; None: one per GPU of the cluster, or 1 on a cluster without GPUs
    cpus_per_actor: float = 1.0  # CPUs each actor reserves (its torch threads follow Ray's OMP_NUM_THREADS)
    gpus_per_actor: float | None = None  # None: 1 when the cluster has GPUs, else 0
    local_cpus: int | None = None  # CPUs of a local instance started here (None: all of this machine's)
    items_per_actor_call: int = 8  # recordings handed to an actor at once

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise ValueError(f"actors must be at least 1 (or None for one per GPU), got {self.actors}")
        if self.cpus_per_actor <= 0 or self.items_per_actor_call < 1:
            raise ValueError("cpus_per_actor must be positive and items_per_actor_call at least 1")


_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray advertises and binds 127.0.0.1, as on macOS


def _ray(*, local: bool = False):
    if local and "ray" not in sys.modules:
        # Read once when Ray is imported; without it Ray swaps 127.0.0.1 for the machine's
        # reachable address and a local instance listens on the network.
        os.environ.setdefault(_LOOPBACK_ENV, "0")
    try:
        import ray
    except ImportError as e:
        raise RuntimeError("--ray requires Ray Data; pip install 'emotion-tool[ray]'") from e
    return ray


def connect(options: RayOptions) -> bool:
    """Joins the cluster at `options.address` or starts a local one (loopback only, no dashboard).
    Returns True when this call started Ray (the caller shuts it down)."""
    ray = _ray(local=not options.address)
    if ray.is_initialized():
        return False
    if options.address:
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(num_cpus=options.local_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    return True


_DECODE_MEMORY_BYTES = 256 * 2**20  # a decoding task holds one recording: an hour at 16 kHz float32 is 230 MB
_ITEM_FIELDS = ("audio", "start_s", "end_s", "label", "line")


def _item_of(row: dict[str, Any]) -> ManifestItem:
    return ManifestItem(
        audio=Path(row["audio"]), start_s=row["start_s"], end_s=row["end_s"], label=row["label"], line=row["line"]
    )


def _decode_row(row: dict[str, Any], *, max_duration_s: float) -> dict[str, Any]:
    """A CPU task: the item's waveform as float32 bytes, or its decoding error."""
    decoded = _decode_or_error(_item_of(row), max_duration_s)
    if isinstance(decoded, str):
        return {**row, "wav": b"", "decode_error": decoded}
    return {**row, "wav": decoded.astype(np.float32).tobytes(), "decode_error": None}


class _Analyzer:
    """A Ray actor: loads the recognizer once, turns batches of decoded items into table rows (their
    windows read together, in batches of the recognizer's batch size)."""

    def __init__(self, loader: Loader):
        self.rec = loader()
        self.schema = _arrow_schema(self.rec.labels)

    def __call__(self, batch):
        import pyarrow as pa

        decoded = [
            (_item_of(row), row["decode_error"] if row["decode_error"] is not None else np.frombuffer(row["wav"], dtype=np.float32))
            for row in batch.to_pylist()
        ]  # fmt: skip
        rows = [r for item_rows in analyze_items(self.rec, decoded) for r in item_rows]
        return pa.Table.from_pylist(rows, schema=self.schema)


def run_batch_ray(
    loader: Loader,
    items: Sequence[ManifestItem],
    out: str | os.PathLike,
    *,
    labels: Sequence[str],
    model_id: str,
    operating_point: str,
    calibration: str | None = None,
    max_duration_s: float,
    ray_options: RayOptions = RayOptions(),
    options: BatchOptions = BatchOptions(),
) -> BatchSummary:
    """Analyses every item not yet in `out` on a Ray cluster and appends its rows.

    Args:
        loader: builds the recognizer; it is pickled to each actor (give paths the actors can read).
        items: from `collect_items`.
        out: the table, .parquet or .jsonl, written by this process.
        labels, model_id, operating_point, calibration: those of the recognizer `loader` builds (the
            table's columns, and the check that a resumed table holds the same model, operating point and
            calibration; `calibration` is `emotion_tool.jobs.batch.calibration_name` of it).
        max_duration_s: longer recordings are refused before decoding.
        ray_options: cluster address and actor pool.
        options: part size and progress (workers and prefetch are Ray's to decide here).
    """
    ray = _ray(local=not ray_options.address)
    started = time.perf_counter()
    writer = TableWriter(out, labels=labels, rows_per_part=options.rows_per_part)
    started_ray = False
    try:
        writer.check_compatible(model_id=model_id, operating_point=operating_point, calibration=calibration)
        todo, total, skipped = pending_items(items, writer)
        failed, audio_s = 0, 0.0
        if todo:
            started_ray = connect(ray_options)
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False  # ours counts recordings and audio hours
            ctx.enable_operator_progress_bars = False
            gpus = ray.cluster_resources().get("GPU", 0)
            gpus_per_actor = ray_options.gpus_per_actor if ray_options.gpus_per_actor is not None else (1.0 if gpus else 0.0)
            actors = ray_options.actors or (max(1, int(gpus // gpus_per_actor)) if gpus_per_actor else 1)
            source = [{k: getattr(it, k) if k != "audio" else str(it.audio) for k in _ITEM_FIELDS} for it in todo]
            # A block per actor call: decoding tasks then hand the actors whole batches.
            ds = ray.data.from_items(source, override_num_blocks=-(-len(source) // ray_options.items_per_actor_call))
            # A memory reservation of its own keeps decoding in CPU tasks: Ray Data would otherwise fuse it
            # into the actors, which would then decode and compute in turn.
            ds = ds.map(_decode_row, fn_kwargs={"max_duration_s": max_duration_s}, num_cpus=1, memory=_DECODE_MEMORY_BYTES)
            ds = ds.map_batches(
                _Analyzer,
                fn_constructor_kwargs={"loader": loader},
                batch_size=ray_options.items_per_actor_call,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=ray_options.cpus_per_actor,
                num_gpus=gpus_per_actor,
            )
            bar = ThroughputBar(len(todo), skipped, enabled=options.progress)
            held: dict[str, list[dict[str, Any]]] = {}
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                for row in batch.to_pylist():
                    held.setdefault(row["key"], []).append(row)
                    if row["kind"] != "recording":
                        continue
                    writer.write(held.pop(row["key"]))  # segments, then the recording row
                    failed += row["error"] is not None
                    audio_s += row["duration_s"] or 0.0
                    bar.advance(row["duration_s"] or 0.0)
            bar.close()
    finally:
        writer.close()
        if started_ray:
            ray.shutdown()
    return BatchSummary(
        out=Path(out), items=total, skipped=skipped, written=len(todo), failed=failed, audio_s=audio_s,
        wall_s=time.perf_counter() - started,
    )  # fmt: skip

