"""The profile an outbound call runs with: the one its request named, listening first.

The callee speaks first ("Hello?", or a voicemail greeting), so there is no greeting, and the
bridge asks for each answer itself (``create_response`` off) so that answers can wait for
the answering-machine verdict (``CallCore.hold_answers``). The request's own instructions,
when it gave some and its webhook reached this instance, replace the profile's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from voicebridge.core import twilio as tw
from voicebridge.core.context import Template
from voicebridge.core.outbound import OUTBOUND_PARAMETER, OutboundRequest
from voicebridge.server.profiles import Profile, Profiles

__all__ = ["outbound_profile", "voicemail_line"]

NO_GREETING = Template(())


def outbound_profile(
    profiles: Profiles,
    start: tw.Start,
    lookup: Callable[[str], OutboundRequest | None],
) -> Profile:
    name = start.custom_parameters.get(OUTBOUND_PARAMETER, "")
    profile = next((p for p in profiles.all() if p.name == name), profiles.default)
    request = lookup(start.call_sid)
    instructions = profile.instructions
    if request is not None and request.instructions:
        instructions = Template.parse(request.instructions)  # checked when the call was placed
    return dataclasses.replace(
        profile,
        settings=dataclasses.replace(profile.settings, create_response=False),
        greeting=NO_GREETING,
        instructions=instructions,
    )


def voicemail_line(message: str) -> str:
    """The closing instructions that make the model leave ``message`` on a voicemail."""
    return (
        "You reached a voicemail box and its beep has sounded. Say this message exactly, "
        f"word for word, then stop: {message}"
    )
