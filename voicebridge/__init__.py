"""voicebridge: answer Twilio phone calls with a speech-to-speech model."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    # pyproject.toml's version is the only one; an installed package (editable too) reports it.
    __version__ = version("voicebridge")
except PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"
