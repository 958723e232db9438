"""The profiles this instance answers with, read once at start-up (``PROFILES_FILE``,
``TOOLS_FILE``), each with its own settings, instruction templates and tools.

Without ``PROFILES_FILE`` there is one profile, ``default``: the environment's settings. With
it, ``[profiles.default]`` overrides the environment for every number, and each named profile
overrides the default for the numbers it lists (the keys: :mod:`voicebridge.core.profiles`).
HTTP tools are ``[tools.NAME]`` tables in either file; a profile's ``tools`` picks among
them and ``CUSTOM_TOOLS`` (all of them when no profile says). Every error is a start-up
error naming the file, the profile or tool, and the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from voicebridge.config import Settings
from voicebridge.core import realtime as rt
from voicebridge.core.call import CallPolicy
from voicebridge.core.context import CallContext, Template, TemplateError
from voicebridge.core.profiles import DEFAULT, ProfileError, ProfileSpec, parse_profiles
from voicebridge.errors import ConfigError
from voicebridge.server.http_client import OutboundHttp
from voicebridge.server.http_tools import HttpTool, HttpToolSpec, parse_tool_specs
from voicebridge.server.session import call_policy, session_config
from voicebridge.server.tool_calls import ToolMetrics
from voicebridge.server.tools import Tool, Toolbox

__all__ = ["Profile", "Profiles", "load_profiles"]


@dataclass(frozen=True)
class Profile:
    """One profile: the settings its calls run with, and the tools they declare."""

    name: str
    numbers: tuple[str, ...]
    settings: Settings
    toolbox: Toolbox
    instructions: Template
    greeting: Template

    def session(self, context: CallContext) -> tuple[rt.SessionConfig, CallPolicy]:
        """The session and policy of a call, its context quoted into the templates."""
        settings = dataclasses.replace(
            self.settings,
            instructions=self.instructions.render(context),
            greeting_instructions=self.greeting.render(context),
        )
        return session_config(settings, self.toolbox.declarations()), call_policy(settings)

    def tool_names(self) -> list[str]:
        return [str(d["name"]) for d in self.toolbox.declarations()]


@dataclass(frozen=True)
class Profiles:
    default: Profile
    named: tuple[Profile, ...] = ()
    source: str = ""  # PROFILES_FILE, or "" for the environment alone

    def for_number(self, called: str) -> Profile:
        """The profile answering ``called`` (the webhook's and ``start``'s ``To``)."""
        for profile in self.named:
            if called in profile.numbers:
                return profile
        return self.default

    def all(self) -> tuple[Profile, ...]:
        return (self.default, *self.named)


def _read_toml(name: str, path: str, allowed: Iterable[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{name}={path!r} cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}={path!r} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{name}={path!r}: unknown key {unknown[0]!r} (known: {', '.join(allowed)})"
        )
    return data


def _template(text: str, where: str) -> Template:
    try:
        return Template.parse(text)
    except TemplateError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_profiles(
    settings: Settings, custom: list[Tool], http: OutboundHttp, metrics: ToolMetrics
) -> Profiles:
    """Read and check the profiles and HTTP tools.

    Raises:
        ConfigError: a file, profile, tool, key or template is wrong (the message names it).
    """
    specs: list[HttpToolSpec] = []
    profile_specs: list[ProfileSpec] = []
    if settings.tools_file:
        where = f"TOOLS_FILE={settings.tools_file!r}"
        data = _read_toml("TOOLS_FILE", settings.tools_file, ("tools",))
        specs += parse_tool_specs(data.get("tools", {}), where, settings.tool_timeout_s)
    if settings.profiles_file:
        where = f"PROFILES_FILE={settings.profiles_file!r}"
        data = _read_toml("PROFILES_FILE", settings.profiles_file, ("profiles", "tools"))
        specs += parse_tool_specs(data.get("tools", {}), where, settings.tool_timeout_s)
        try:
            profile_specs = parse_profiles(data.get("profiles", {}))
        except ProfileError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    names = [t.name for t in custom]
    for spec in specs:
        if spec.name in names:
            raise ConfigError(f"tool {spec.name!r} is defined twice (files or CUSTOM_TOOLS)")
        names.append(spec.name)
    if specs and not settings.signing_secret:
        raise ConfigError(
            "HTTP tools are defined but SIGNING_SECRET is not set: their requests are signed "
            "with it (X-Voicebridge-Signature); set 32+ random characters, the same value "
            "your backend verifies with"
        )
    http_tools = [HttpTool(s, http, settings.signing_secret) for s in specs]
    source = settings.profiles_file
    by_name = {s.name: s for s in profile_specs}
    base = by_name.pop(DEFAULT, ProfileSpec(DEFAULT))
    default = _build(base, settings, None, custom, http_tools, metrics, source)
    named = tuple(
        _build(spec, default.settings, base.tools, custom, http_tools, metrics, source)
        for spec in by_name.values()
    )
    return Profiles(default, named, source)


def _build(
    spec: ProfileSpec,
    parent: Settings,
    parent_tools: tuple[str, ...] | None,
    custom: list[Tool],
    http_tools: list[HttpTool],
    metrics: ToolMetrics,
    source: str,
) -> Profile:
    where = f"PROFILES_FILE={source!r}: profile {spec.name!r}" if source else "the settings"
    settings = dataclasses.replace(parent, **spec.overrides)
    if spec.overrides:  # the environment's own were checked when they loaded
        try:
            settings.validate()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    chosen = spec.tools if spec.tools is not None else parent_tools
    if chosen is not None:
        known = {t.name for t in custom} | {t.name for t in http_tools}
        for name in chosen:
            if name not in known:
                raise ConfigError(
                    f"{where}, key 'tools': no tool named {name!r} (defined: "
                    f"{', '.join(sorted(known)) or 'none'}; end_call and transfer_call follow "
                    "end_call_tool and transfer_destinations)"
                )
    toolbox = Toolbox(
        settings,
        [t for t in custom if chosen is None or t.name in chosen],
        [t for t in http_tools if chosen is None or t.name in chosen],
        metrics,
    )

    def label(key: str, field: str, env: str) -> str:
        return f"{where}, key {key!r}" if field in spec.overrides else env

    instructions = _template(
        settings.instructions, label("instructions", "instructions", "INSTRUCTIONS")
    )
    greeting = _template(
        settings.greeting_instructions,
        label("greeting", "greeting_instructions", "GREETING_INSTRUCTIONS"),
    )
    return Profile(spec.name, spec.numbers, settings, toolbox, instructions, greeting)
