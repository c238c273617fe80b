"""Live microphone demo: how you sound, utterance by utterance, and how the empathic agent answers.

    python -m demos.microphone                               # the default input device
    python -m demos.microphone --device 2 --save session/     # another device; keep trace and plot
    python -m demos.microphone --input-file speech.wav        # no microphone: replay a file in real time
    python -m demos.microphone --llm openai:gpt-4o-mini       # replies from a chat model

Audio flows: input callback -> `StreamingAnalyzer.feed` -> (worker) silero-vad utterances -> readings
-> the agent (on its own thread) -> the terminal. `--input-file` drives the same callback from a
thread that sleeps each block's duration, so it exercises exactly the microphone's path.
q or Enter (in a terminal) or Ctrl-C ends the session; the last utterance is then read and answered.

The parts: `sources` (microphone and file replay), `responder` (the agent), `view` (the terminal),
`saving` (session.json and its plot), `records` (what a session holds) and `app` (the loop, the CLI).
"""

from .app import main, run
from .records import AgentTurn, DemoError, SessionRecord
from .responder import Responder
from .saving import plot_session, save_session
from .sources import FileSource, InputMonitor, open_microphone

__all__ = ["main", "run", "SessionRecord", "AgentTurn", "DemoError", "Responder", "FileSource", "InputMonitor", "open_microphone", "plot_session", "save_session"]
