"""μ-law 8 kHz ⇄ PCM16 24 kHz conversion keeps a tone's frequency and level."""

from __future__ import annotations

import array
import base64
import math

import pytest

from voicebridge.core.audio import audioop
from voicebridge.core.transcode import CallerToModel, ModelToCaller, ulaw_silence


def tone(freq: float, rate: int, ms: int, amplitude: float = 8000.0) -> bytes:
    n = rate * ms // 1000
    return array.array(
        "h", (int(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(n))
    ).tobytes()


def frequency(pcm: bytes, rate: int) -> float:
    """Estimated from upward zero crossings."""
    samples = array.array("h", pcm)
    ups = [i for i in range(1, len(samples)) if samples[i - 1] < 0 <= samples[i]]
    return (len(ups) - 1) * rate / (ups[-1] - ups[0])


def frames(data: bytes, size: int) -> list[str]:
    return [base64.b64encode(data[i : i + size]).decode() for i in range(0, len(data), size)]


# audioop.ratecv interpolates linearly, which rolls off towards 4 kHz: about -3 dB at 3 kHz
# each way (sinc^2). Speech energy sits mostly below 1 kHz, where the loss is under 0.5 dB.
@pytest.mark.parametrize(("freq", "tolerance"), [(300.0, 0.02), (1000.0, 0.06), (3000.0, 0.35)])
def test_tone_survives_both_directions(freq: float, tolerance: float) -> None:
    """A tone through caller->model and model->caller keeps its frequency and level."""
    ulaw = audioop.lin2ulaw(tone(freq, 8000, 1000), 2)
    up = CallerToModel()
    pcm24 = b"".join(base64.b64decode(up.convert(f)) for f in frames(ulaw, 160))
    assert len(pcm24) == pytest.approx(48000, abs=12)  # 1 s at 24 kHz, 16-bit
    assert frequency(pcm24, 24000) == pytest.approx(freq, rel=0.01)
    level_in = audioop.rms(audioop.ulaw2lin(ulaw, 2), 2)
    assert audioop.rms(pcm24, 2) == pytest.approx(level_in, rel=tolerance)
    down = ModelToCaller()
    # The model's deltas come in odd sizes: 100 ms plus a few bytes, even mid-sample.
    back = b"".join(base64.b64decode(down.convert(f)) for f in frames(pcm24, 4801))
    pcm8 = audioop.ulaw2lin(back, 2)
    assert len(back) == pytest.approx(8000, abs=8)
    assert frequency(pcm8, 8000) == pytest.approx(freq, rel=0.01)
    assert audioop.rms(pcm8, 2) == pytest.approx(level_in, rel=tolerance)


def test_frames_join_without_clicks() -> None:
    """Converting 20 ms frames one by one equals converting the whole signal at once."""
    ulaw = audioop.lin2ulaw(tone(440.0, 8000, 500), 2)
    whole = base64.b64decode(CallerToModel().convert(base64.b64encode(ulaw).decode()))
    up = CallerToModel()
    pieces = b"".join(base64.b64decode(up.convert(f)) for f in frames(ulaw, 160))
    assert pieces == whole
    down_whole = ModelToCaller().convert(base64.b64encode(whole).decode())
    down = ModelToCaller()
    down_pieces = b"".join(base64.b64decode(down.convert(f)) for f in frames(whole, 999))
    assert down_pieces == base64.b64decode(down_whole)


def test_silence_frame() -> None:
    """The silence fed during media gaps is 20 ms of μ-law zero level."""
    data = base64.b64decode(ulaw_silence(20))
    assert len(data) == 160 and audioop.rms(audioop.ulaw2lin(data, 2), 2) == 0
