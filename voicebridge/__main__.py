"""``python -m voicebridge`` is the ``voicebridge`` command."""

import sys

from voicebridge.cli import main

sys.exit(main())
