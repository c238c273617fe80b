"""`python -m emotion_tool.cli`: the same as `emotion-tool`."""

import sys

from emotion_tool.cli.main import main

sys.exit(main())
