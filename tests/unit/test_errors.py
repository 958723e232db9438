"""The exception tree: every project error is a VoiceBridgeError."""

from __future__ import annotations

import pytest

from voicebridge.core.admission import TokenError
from voicebridge.errors import VoiceBridgeError
from voicebridge.server.queues import QueueOverflow
from voicebridge.server.twilio_rest import TwilioRestError


@pytest.mark.parametrize("error", [TokenError("busy"), QueueOverflow("9"), TwilioRestError("x")])
def test_raised_outside_errors_py_still_in_the_tree(error: Exception) -> None:
    """Errors raised by admission, the queues and the REST client are caught as VoiceBridgeError."""
    with pytest.raises(VoiceBridgeError):
        raise error
