"""`python -m emotion_tool.cli`: the same as `emotion-tool`.

Layer 5, the command line (`emotion_tool.cli`).
"""

import sys

from emotion_tool.cli.main import main

sys.exit(main())
