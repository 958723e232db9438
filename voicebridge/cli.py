"""The `voicebridge` command: answer Twilio calls with a speech-to-speech model, and its tools."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Protocol

from voicebridge import __version__, demo, serve
from voicebridge.call import command as call
from voicebridge.doctor import command as doctor
from voicebridge.errors import ConfigError
from voicebridge.fake_realtime import command as fake_realtime
from voicebridge.replay import command as replay

__all__ = ["COMMANDS", "Command", "main"]


class Command(Protocol):
    """A subcommand module: its name, its options, and what it does with them."""

    NAME: str

    def add_parser(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...

    def run(self, args: argparse.Namespace) -> int:
        """The exit status; ``ConfigError`` is turned into status 2 by :func:`main`."""
        ...


# In the order ``voicebridge --help`` lists them.
COMMANDS: tuple[Command, ...] = (serve, call, fake_realtime, demo, replay, doctor)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--env-file",
        default=None,  # .env when present; a file named here must exist
        help="dotenv file to read (default: .env in the working directory, if there is one)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = next(c for c in COMMANDS if c.NAME == args.command)
    try:
        return command.run(args)
    except ConfigError as exc:
        print(f"voicebridge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
