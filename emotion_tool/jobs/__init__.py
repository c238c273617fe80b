"""Jobs: long work over many recordings.

Layer 4, above science: `batch` (archives to Parquet or JSON Lines tables, resumable), `batch_ray`
(the same on Ray Data) and `train` (fine-tuning with the MERaLiON-SER recipe, export in the
published layout). It imports the layers below; the command line (`emotion_tool.cli`) drives it.
"""

__all__: list[str] = []  # import from the modules: emotion_tool.jobs.batch, emotion_tool.jobs.train, ...
