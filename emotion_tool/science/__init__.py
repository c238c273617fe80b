"""Science: how good the readings are, and what they mean for a conversation.

Layer 3, above the engine: labelled manifests (`data`), scores with intervals (`metrics`), the
MERaLiON-SER evaluation protocol (`evaluate`), calibration fitting and reliability (`calibration`;
the file it writes is the engine's `emotion_tool.engine.calibrated`), how far the fast operating
points move readings (`agreement`), the empathy rulebook that turns readings into a dialogue plan
(`empathy`) and every figure (`plot`). It imports the foundation, `emotion_tool.audio` and
`emotion_tool.engine`, never the command line: commands live in `emotion_tool.cli`.
"""

__all__: list[str] = []  # import from the modules: emotion_tool.science.evaluate, .calibration, ...
