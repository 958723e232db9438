"""Profiles per called number: what a ``PROFILES_FILE`` may say, checked without I/O.

A profile overrides some settings for the numbers it lists; ``[profiles.default]`` applies to
every other number, and the named profiles build on it. The file is TOML::

    [profiles.default]
    instructions = "You answer for Trattoria Roma. The caller's number is {caller}."
    tools = ["check_table"]

    [profiles.bistro]
    numbers = ["+14155550123"]
    voice = "cedar"
    say_language = "de-DE"
    transfer_destinations = { kitchen = "+14155550100" }

:func:`parse_profiles` turns the ``profiles`` table into :class:`ProfileSpec`\\ s whose
``overrides`` are keyed by the :class:`~voicebridge.config.Settings` field they replace; a
wrong key or value raises :class:`ProfileError` naming the profile and the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from voicebridge.core.realtime import NOISE_REDUCTION_TYPES, TURN_DETECTION_TYPES, VAD_EAGERNESS

__all__ = ["DEFAULT", "PROFILE_KEYS", "ProfileError", "ProfileSpec", "parse_profiles"]

DEFAULT = "default"
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_LANGUAGE = re.compile(r"[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*")  # en-US, de-DE, cmn-CN, …
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ProfileError(ValueError):
    """A profile key is unknown or its value is wrong; the message names both."""


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _flag(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _whole(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _fraction(v: Any) -> float | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1
    return float(v) if ok else None


def _choice(allowed: tuple[str, ...]) -> Any:
    return lambda v: v if v in allowed else None


def _language(v: Any) -> str | None:
    return v if isinstance(v, str) and (v == "" or _LANGUAGE.fullmatch(v)) else None


def _names(v: Any) -> tuple[str, ...] | None:
    ok = isinstance(v, list) and all(isinstance(n, str) and _NAME.fullmatch(n) for n in v)
    return tuple(v) if ok else None


def _destinations(v: Any) -> str | None:
    """``{name = "+1…" | "sip:…"}`` as TRANSFER_DESTINATIONS writes it."""
    if not isinstance(v, dict):
        return None
    for name, target in v.items():
        if not (_NAME.fullmatch(name) and isinstance(target, str)):
            return None
        if not (E164.fullmatch(target) or target.startswith("sip:")):
            return None
    return ",".join(f"{name}={target}" for name, target in v.items())


# key -> (Settings field, checker returning the value or None, what a good value is)
PROFILE_KEYS: dict[str, tuple[str, Any, str]] = {
    "instructions": ("instructions", _text, "a string (may name {caller}, {called}, …)"),
    "greeting": ("greeting_instructions", _text, "a string: the model speaks first"),
    "voice": ("voice", _text, "a voice name, e.g. marin or cedar"),
    "welcome_say": ("welcome_say", _text, "a string Twilio says before connecting"),
    "failure_say": ("failure_say", _text, "a string"),
    "busy_say": ("busy_say", _text, "a string"),
    "voicemail_message": ("voicemail_message", _text, "a string said after a voicemail's beep"),
    "say_language": ("say_language", _language, "a language tag such as en-US or de-DE"),
    "tools": ("", _names, "a list of tool names"),
    "end_call_tool": ("end_call_tool", _flag, "true or false"),
    "transfer_destinations": (
        "transfer_destinations",
        _destinations,
        'a table of name = "+E164" or "sip:…"',
    ),
    "turn_detection": (
        "turn_detection",
        _choice(TURN_DETECTION_TYPES),
        "server_vad or semantic_vad",
    ),
    "vad_threshold": ("vad_threshold", _fraction, "a number from 0 to 1"),
    "vad_prefix_padding_ms": ("vad_prefix_padding_ms", _whole, "a whole number of ms"),
    "vad_silence_ms": ("vad_silence_ms", _whole, "a whole number of ms"),
    "vad_eagerness": ("vad_eagerness", _choice(VAD_EAGERNESS), "low, medium, high or auto"),
    "interrupt_response": ("interrupt_response", _flag, "true or false"),
    "create_response": ("create_response", _flag, "true or false"),
    "idle_timeout_ms": ("idle_timeout_ms", _whole, "a whole number of ms, 0 for off"),
    "idle_reprompts": ("idle_reprompts", _whole, "a whole number"),
    "noise_reduction": (
        "noise_reduction",
        _choice((*NOISE_REDUCTION_TYPES, "off")),
        "near_field, far_field or off",
    ),
}


@dataclass(frozen=True)
class ProfileSpec:
    """One profile as written: its numbers and the settings it overrides."""

    name: str
    numbers: tuple[str, ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)  # Settings field -> value
    tools: tuple[str, ...] | None = None  # None: the tools of the default (or all of them)


def _parse_one(name: str, table: Any) -> ProfileSpec:
    where = f"profile {name!r}"
    if not isinstance(table, dict):
        raise ProfileError(f"{where} must be a table ([profiles.{name}])")
    numbers: tuple[str, ...] = ()
    overrides: dict[str, Any] = {}
    tools: tuple[str, ...] | None = None
    for key, value in table.items():
        if key == "numbers":
            if name == DEFAULT:
                raise ProfileError(
                    f"{where}, key 'numbers': the default answers every other number"
                )
            if not (isinstance(value, list) and value and all(isinstance(n, str) for n in value)):
                raise ProfileError(f"{where}, key 'numbers' must be a list of E.164 numbers")
            for number in value:
                if not E164.fullmatch(number):
                    raise ProfileError(
                        f"{where}, key 'numbers': {number!r} is not E.164 (+ country code "
                        "and number, digits only, e.g. +14155550123)"
                    )
            numbers = tuple(value)
            continue
        if key not in PROFILE_KEYS:
            raise ProfileError(
                f"{where}: unknown key {key!r} (known: numbers, {', '.join(PROFILE_KEYS)})"
            )
        target, check, good = PROFILE_KEYS[key]
        checked = check(value)
        if checked is None:
            raise ProfileError(f"{where}, key {key!r}: {value!r} is not {good}")
        if key == "tools":
            tools = checked
        else:
            overrides[target] = checked
    if name != DEFAULT and not numbers:
        raise ProfileError(f'{where} lists no numbers: add numbers = ["+1…"]')
    return ProfileSpec(name, numbers, overrides, tools)


def parse_profiles(table: Any) -> list[ProfileSpec]:
    """The ``profiles`` table of a profiles file, the default first.

    Raises:
        ProfileError: a profile, key or value is wrong, or a number is in two profiles.
    """
    if not isinstance(table, dict):
        raise ProfileError("'profiles' must be a table of profiles ([profiles.NAME])")
    specs = []
    owner: dict[str, str] = {}
    for name, body in table.items():
        if not _NAME.fullmatch(name):
            raise ProfileError(f"profile {name!r}: names are letters, digits, _ and - only")
        spec = _parse_one(name, body)
        for number in spec.numbers:
            if number in owner:
                raise ProfileError(
                    f"profile {name!r}, key 'numbers': {number} is already in profile "
                    f"{owner[number]!r}"
                )
            owner[number] = name
        specs.append(spec)
    specs.sort(key=lambda s: s.name != DEFAULT)
    return specs
