"""voicebridge: answer Twilio phone calls with a speech-to-speech model."""

__version__ = "0.1.0"
