"""`voicebridge doctor` lists the profiles and HTTP tools, or fails naming the bad key."""

from __future__ import annotations

import io
from pathlib import Path

from voicebridge.config import Secret, Settings
from voicebridge.doctor.business import check_business
from voicebridge.doctor.report import Report

PROFILES = """\
[profiles.default]
tools = ["book"]

[profiles.bistro]
numbers = ["+18005550100", "+18005550101"]
voice = "cedar"
say_language = "fr-FR"

[tools.book]
url = "https://backend.example.com/book?key=secret-in-the-url-0123456789"
timeout_s = 3
"""


def run(settings: Settings) -> tuple[Report, str]:
    out = io.StringIO()
    report = Report(out)
    check_business(report, settings)
    return report, out.getvalue()


def test_the_profiles_and_tools_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(PROFILES)
    settings = Settings(
        profiles_file=str(path),
        signing_secret=Secret("s" * 32),
        call_events_url="https://backend.example.com/events",
    )
    report, text = run(settings)
    assert report.failed == 0
    assert f"2 profile(s) from PROFILES_FILE={path}:" in text
    assert "default: every other number; voice marin; <Say> language Twilio's default" in text
    assert "bistro: +18005550100, +18005550101; voice cedar; <Say> language fr-FR" in text
    assert "tools: end_call, book" in text
    assert "HTTP tool book: POST https://backend.example.com/book" in text
    assert "secret-in-the-url" not in text  # the URL's query is masked
    assert "call events: POST https://backend.example.com/events, signed" in text


def test_a_wrong_key_fails_naming_the_file_profile_and_key(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text('[profiles.bistro]\nnumbers = ["+18005550100"]\nvoice = 3\n')
    report, text = run(Settings(profiles_file=str(path)))
    assert report.failed == 1
    assert "profile 'bistro', key 'voice': 3 is not a voice name" in text
