"""signaling/media.py as a unit: one source fanned out to subscribers that never wait on each
other, key-frame requests coalesced, one continuous timeline across reconnects."""

from __future__ import annotations

import asyncio

import av
import pytest
from aiortc.mediastreams import MediaStreamError

from signaling import media
from signaling.media import MediaSource

KEY, DELTA = b"\x00key", b"\x01delta"  # the VP8 frame tag's low bit: 0 for a key frame


def frame(data: bytes, pts: int) -> av.Packet:
    packet = av.Packet(data)
    packet.pts = packet.dts = pts
    return packet


class Upstream:
    """Stands for the receiver's PLI: counts the key frames asked for."""

    def __init__(self) -> None:
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        return True


def video() -> tuple[MediaSource, Upstream]:
    source, upstream = MediaSource("video", "guardian.video"), Upstream()
    source.attach(upstream)
    return source, upstream


def queued(sub: media.Subscription) -> list[bytes]:
    return [bytes(p) for p, *_ in sub._queue]


def test_a_subscriber_starts_on_a_key_frame_and_asks_for_one_once() -> None:
    source, upstream = video()
    sub = source.subscribe()
    for pts in range(3):  # inter frames cannot be decoded without the key frame before them
        source.publish(frame(DELTA, pts * 3000))
    assert queued(sub) == [] and sub.dropped == 3
    assert upstream.asked == 1 and source.requests_coalesced == 3  # one request stands
    source.publish(frame(KEY, 9000))
    source.publish(frame(DELTA, 12000))
    assert queued(sub) == [KEY, DELTA]


def test_a_slow_subscriber_drops_to_the_next_key_frame_and_others_go_on() -> None:
    source, _ = video()
    slow, fast = source.subscribe(maxsize=4), source.subscribe(maxsize=64)
    source.publish(frame(KEY, 0))
    for pts in range(1, 8):
        source.publish(frame(DELTA, pts * 3000))
    assert queued(slow) == [] and slow.dropped == 4 + 3  # a full queue, then what depended on it
    assert len(queued(fast)) == 8 and fast.dropped == 0
    source.publish(frame(KEY, 24000))
    assert queued(slow) == [KEY]


def test_key_frame_requests_are_coalesced_around_a_key_frame(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr(media.time, "monotonic", lambda: now[0])
    source, upstream = video()
    source.publish(frame(KEY, 0))
    source.request_keyframe()  # just after a key frame: that one is still being repaired
    assert upstream.asked == 0
    now[0] += media.KEYFRAME_REQUEST_INTERVAL_S
    source.request_keyframe()
    source.request_keyframe()
    assert upstream.asked == 1 and source.requests_coalesced == 2


def test_a_relay_asks_when_its_sender_starts_not_at_the_offer(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr(media.time, "monotonic", lambda: now[0])
    source, upstream = video()
    recorder = source.subscribe()  # asks for one; its key frame comes
    source.publish(frame(KEY, 0))
    assert upstream.asked == 1
    relay = source.subscribe(relay=True)  # at the participant's offer: ICE and DTLS to come
    now[0] += 0.3
    for pts in range(1, 4):
        source.publish(frame(DELTA, pts * 6000))
    assert queued(relay) == [] and upstream.asked == 1  # dormant: takes nothing, asks nothing
    now[0] += 0.2
    relay.start()  # DTLS is up, 0.5 s after a key frame that went to the recorder only
    assert upstream.asked == 2
    relay.start()  # a second start while that request waits for its key frame: it stands
    recorder.resync()
    assert upstream.asked == 2
    source.publish(frame(KEY, 30000))
    source.publish(frame(DELTA, 36000))
    assert queued(relay) == [KEY, DELTA]


def test_audio_is_never_asked_for_key_frames_nor_held_for_them() -> None:
    source, upstream = MediaSource("audio", "doctor.audio"), Upstream()
    source.attach(upstream)
    sub = source.subscribe(maxsize=2)
    for pts in range(3):
        source.publish(frame(DELTA, pts * 960))
    assert upstream.asked == 0
    assert queued(sub) == [DELTA]  # a full queue is cleared and audio goes on at once


def test_a_new_upstream_continues_the_timeline(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr(media.time, "monotonic", lambda: now[0])
    source, _ = video()
    sub = source.subscribe()
    source.publish(frame(KEY, 900_000))  # the timeline starts at zero, whatever the sender's
    source.publish(frame(DELTA, 903_000))
    now[0] += 2.0
    source.attach(Upstream())  # the participant reconnected: its new sender starts elsewhere
    source.publish(frame(KEY, 5))
    assert [p.pts for p, *_ in sub._queue] == [0, 3000, 3000 + 2 * 90_000]


def test_held_relays_skip_and_resume_on_a_whole_picture() -> None:
    source, _ = video()
    relay, recorder = source.subscribe(relay=True), source.subscribe()
    relay.start()
    source.publish(frame(KEY, 0))
    assert queued(relay) == [KEY]  # not yet taken by the relay's sender ...
    source.held = True  # identity pause: the other side sees nothing; the recorder sees all
    assert queued(relay) == []  # ... and now never: nothing more once the pause is announced
    source.publish(frame(DELTA, 3000))
    source.held = False
    source.publish(frame(DELTA, 6000))
    assert queued(relay) == [] and queued(recorder) == [KEY, DELTA, DELTA]
    source.publish(frame(KEY, 9000))
    assert queued(relay) == [KEY]


def test_sender_time_follows_the_latest_report_of_the_attached_upstream() -> None:
    source, _ = video()
    upstream = source.upstream
    assert source.sender_time(0, upstream) is None
    source.publish(frame(KEY, 0))
    source.sender_report(upstream, 10 << 32, 0)  # frame time 0 captured at 10 s (NTP)
    assert source.sender_time(90_000, upstream) == pytest.approx(11.0)
    assert source.sender_time(90_000, upstream + 1) is None  # another upstream's frames


async def test_closing_wakes_a_waiting_subscriber() -> None:
    source, _ = video()
    sub = source.subscribe()
    waiting = asyncio.create_task(sub.get())
    await asyncio.sleep(0)  # let it start waiting
    sub.close()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiting, 1)
    source.publish(frame(KEY, 0))
    assert queued(sub) == []  # no longer subscribed
