"""Check 7: the business connection — profiles per number, HTTP tools, call events.

The files load as ``voicebridge serve`` loads them (a wrong key is a failed check naming the
file, the profile and the key); then each profile is listed with its numbers, voice, language
and tools, each HTTP tool with its URL and timeout. Nothing is sent to the backend: a tool
call has effects.
"""

from __future__ import annotations

from voicebridge.config import Settings
from voicebridge.doctor.report import Report
from voicebridge.errors import ConfigError
from voicebridge.logs import mask_url
from voicebridge.server.connect import Connect
from voicebridge.server.twilio_rest import rest_auth

__all__ = ["check_business"]


def check_business(report: Report, settings: Settings) -> None:
    try:
        connect = Connect(settings)
    except ConfigError as exc:
        report.fail(
            f"the profiles or tools do not load: {exc}",
            "correct the file (`voicebridge serve` refuses to start too)",
        )
        return
    profiles = connect.profiles
    source = f"PROFILES_FILE={profiles.source}" if profiles.source else "the environment"
    # Listed, not counted as a check: it passes whenever the settings load.
    report.note(f"{len(profiles.all())} profile(s) from {source}:")
    for profile in profiles.all():
        s = profile.settings
        numbers = ", ".join(profile.numbers) or "every other number"
        tools = ", ".join(profile.tool_names()) or "none"
        language = s.say_language or "Twilio's default"
        report.note(
            f"  {profile.name}: {numbers}; voice {s.voice}; <Say> language {language}; "
            f"tools: {tools}"
        )
    seen: set[str] = set()
    for profile in profiles.all():
        for tool in profile.toolbox.http.values():
            if tool.name not in seen:
                seen.add(tool.name)
                report.note(
                    f"HTTP tool {tool.name}: POST {mask_url(tool.spec.url)}, "
                    f"timeout {tool.spec.timeout_s:g} s, signed (X-Voicebridge-Signature)"
                )
    if settings.call_events_url:
        report.note(f"call events: POST {mask_url(settings.call_events_url)}, signed")
    else:
        report.note("call events: off (CALL_EVENTS_URL is not set)")
    auth = rest_auth(settings)
    if auth is not None:
        kind = "an API key" if auth[0].startswith("SK") else "the Auth Token"
        report.note(f"Twilio REST calls authenticate with {kind}")
