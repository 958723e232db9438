"""Phone numbers as voicebridge writes them: masked the same in logs and recordings."""

from __future__ import annotations

import pytest

from voicebridge.logs import mask_number


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+14155550123", "+1415***0123"),
        ("+442071838750", "+4420***8750"),
        ("client:alice", "clien***lice"),
        ("+12345", "***"),  # too short to show any of it
        ("", ""),  # no number given: nothing invented
    ],
)
def test_mask_number(number: str, masked: str) -> None:
    assert mask_number(number) == masked


def test_a_masked_number_never_holds_the_full_digits() -> None:
    for n in ("+14155550123", "+4915112345678", "5551234"):
        assert n not in mask_number(n) and n[-4:] in mask_number(n)
