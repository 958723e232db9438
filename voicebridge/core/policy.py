"""How the conversation is steered beyond the session's own settings (``CallPolicy``)."""

from __future__ import annotations

from dataclasses import dataclass

from voicebridge.core.local_barge_in import LocalSettings

__all__ = ["CallPolicy"]


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """How the conversation is steered beyond the session's own settings."""

    greeting_instructions: str = ""  # non-empty: the model speaks first, like this
    idle_reprompts: int = 2  # unanswered idle re-prompts before the call is ended
    apology_instructions: str = "Apologise briefly for a technical problem."
    # Caller audio forwarded beyond real time is dropped past this credit (ms; inf: never).
    caller_burst_ms: float = 2000.0
    # LOCAL_BARGE_IN: the bridge hears the caller itself and pauses the assistant (None: off).
    local_barge_in: LocalSettings | None = None
    resume_instructions: str = (
        "The line dropped for a moment. Tell the caller in a few words that you are back, "
        "then continue where you left off."
    )
    # A caller silent past the re-prompts hears this, then the call ends.
    idle_goodbye_instructions: str = "Say that you will hang up now, and say goodbye."
    # A renewal that had to cut an answer: carry on without the caller noticing.
    renew_resume_instructions: str = (
        "Continue your last answer from where it was cut off, without greeting the caller."
    )
    # Closes the re-seed of every fresh session that takes over the call.
    continuation: str = (
        "The call continues in a new session; the conversation so far is above. Do not "
        "greet the caller again: carry on where it left off."
    )
