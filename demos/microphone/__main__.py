"""`python -m demos.microphone`."""

import sys

from .app import main

sys.exit(main())
