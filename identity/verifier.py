"""The verification of the doctor before accepting: one matching face, then a liveness challenge.

Why this order: matching first (with encodings, 156 ms each) makes sure the registered doctor is
in front of the camera; the challenge then only needs landmarks (3.5 ms) per frame, so it can be
sampled fast enough to see a blink; the frame where the action is seen is encoded again, so the
action was done by the registered doctor and not by someone who stepped in. Frames come from the
node's own copy of the doctor's video (FrameTap), never from anything the page sends.
Up to `max_attempts` attempts per consultation (counted in the database, so leaving and
rejoining does not reset them); then the doctor is locked out of it and ops are alerted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select

from server import metrics
from server.auth import Role

from .frames import FrameTap
from .geometry import Pose, challenge_done, pose_from_landmarks
from .models import FaceVerification
from .texts import CHALLENGE_TEXT, FAILURE_TEXT, STEP_TEXT
from .worker import FrameResult

if TYPE_CHECKING:
    from signaling.room import Room

    from .service import IdentityService

log = logging.getLogger(__name__)

FIRST_FRAME_TIMEOUT_S = 120.0
FRAME_TIMEOUT_S = 5.0
DECISIVE_FRAMES = 2  # this many consecutive frames of "several faces" or "not him" end an attempt


@dataclass
class Attempt:
    number: int
    outcome: str = "no_video"
    frames: int = 0
    distance: float | None = None
    challenge: str | None = None
    thumbnail: bytes | None = None
    cpu_s: float = 0.0
    started: float = field(default_factory=time.monotonic)
    challenge_seen_at: float | None = None  # when the frame showing the action arrived
    reasons: Counter[str] = field(default_factory=Counter)

    def note(self, result: FrameResult) -> None:
        self.frames += 1
        self.cpu_s += result.cpu_s


def classify(result: FrameResult, threshold: float) -> str | None:
    """None when the frame shows exactly one face that matches; else the reason it does not."""
    if result.faces == 0:
        return "no_face"
    if result.faces > 1:
        return "several_faces"
    if result.distance is not None and result.distance > threshold:
        return "not_registered"
    return None


class Verification:
    """One consultation's verification while it is `verifying`; `state` is what the gate reads."""

    def __init__(self, svc: IdentityService, room: Room, doctor_id: str) -> None:
        self.svc = svc
        self.room = room
        self.cid = room.consultation_id
        self.doctor_id = doctor_id
        self.state = "running"  # running | verified | locked | not_enrolled | stopped
        self.joined_at = time.monotonic()
        self.poses_seen = 0  # challenge frames judged so far (the bench paces a turn by it)
        self.said: dict[str, Any] | None = None  # the last step told: again to a rejoining page
        self.verified_at: float | None = None
        self.last: Attempt | None = None
        self.task = asyncio.create_task(self._run(), name=f"verify-{self.cid}")

    @property
    def cfg(self) -> Any:
        return self.svc.config

    async def say(self, step: str, **fields: Any) -> None:
        status = step if step in ("verified", "failed", "locked") else "verifying"
        if status != "verifying":
            metrics.VERIFICATIONS.labels(fields.get("reason") or status).inc()
        await self.svc.status(self.cid, status)  # for the ops view
        zh, en = fields.pop("text", None) or STEP_TEXT.get(step, ("", ""))
        self.said = {"type": "verify", "step": step, "zh": zh, "en": en, **fields}
        await self.room.send(Role.DOCTOR, self.said)

    async def _run(self) -> None:
        try:
            await self._verify()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("verification of %s failed", self.cid)
            self.state = "stopped"

    async def _verify(self) -> None:
        enrollment = await self.svc.enrollment(self.doctor_id)
        if enrollment is None:
            self.state = "not_enrolled"
            await self.svc.ctx.events.append(self.cid, "identity.not_enrolled", "system",
                                             {"doctor": self.doctor_id})
            await self.say("failed", reason="not_enrolled", text=FAILURE_TEXT["not_enrolled"])
            return
        failures = await self._failures_so_far()
        if failures >= self.cfg.max_attempts:
            await self._lock(failures, notify_ops=False)
            return
        tap = FrameTap(self.room.participants[Role.DOCTOR].sources["video"])
        try:
            await self.say("waiting_video")
            await tap.next_frame(FIRST_FRAME_TIMEOUT_S)
            while True:
                attempt = await self._attempt(tap, enrollment.encoding, failures + 1)
                self.last = attempt
                await self._record(attempt)
                if attempt.outcome == "verified":
                    self.state, self.verified_at = "verified", time.monotonic()
                    await self.say("verified", distance=attempt.distance)
                    return
                failures += 1
                remaining = self.cfg.max_attempts - failures
                await self.say("failed", reason=attempt.outcome, attempt=attempt.number,
                               remaining=max(0, remaining), text=FAILURE_TEXT[attempt.outcome])
                if remaining <= 0:
                    await self._lock(failures, notify_ops=True)
                    return
                # Leave the message on screen a moment before asking again (pacing, not a wait).
                await asyncio.sleep(self.cfg.retry_pause_s)
        except TimeoutError:
            await self.say("failed", reason="no_video", text=FAILURE_TEXT["no_video"])
            self.state = "stopped"
        finally:
            self.svc.stats.decode_s += tap.decode_s
            await tap.close()

    async def _analyse(self, tap: FrameTap, attempt: Attempt, **kwargs: Any
                       ) -> tuple[np.ndarray, float, FrameResult]:
        rgb, arrived = await tap.next_frame(FRAME_TIMEOUT_S)
        result = await self.svc.pool.analyse(rgb, **kwargs)
        attempt.note(result)
        return rgb, arrived, result

    async def _attempt(self, tap: FrameTap, known: list[float], number: int) -> Attempt:
        cfg = self.cfg
        attempt = Attempt(number)
        await self.say("looking", attempt=number, max_attempts=cfg.max_attempts)
        # 1. The registered doctor, alone, in front of the camera.
        deadline = time.monotonic() + cfg.attempt_time_s
        matched = streak = 0
        last_bad = None
        try:
            while matched < cfg.match_frames:
                if time.monotonic() > deadline:
                    attempt.outcome = (attempt.reasons.most_common(1)[0][0]
                                       if attempt.reasons else "no_video")
                    return attempt
                _, _, result = await self._analyse(tap, attempt, known=known)
                if result.distance is not None:
                    attempt.distance = result.distance
                bad = classify(result, cfg.threshold)
                if bad is None:
                    matched, streak = matched + 1, 0
                    continue
                attempt.reasons[bad] += 1
                streak = streak + 1 if bad == last_bad else 1
                last_bad = bad
                if bad in ("several_faces", "not_registered") and streak >= DECISIVE_FRAMES:
                    attempt.outcome = bad
                    return attempt
            # 2. The liveness challenge, judged from landmarks only.
            challenge = (random.choice(cfg.challenges) if cfg.challenge == "random"
                         else cfg.challenge)
            attempt.challenge = challenge
            await self.say("challenge", challenge=challenge, attempt=number,
                           seconds=cfg.challenge_time_s, text=CHALLENGE_TEXT[challenge])
            poses: list[Pose] = []
            deadline = time.monotonic() + cfg.challenge_time_s
            several = 0
            while time.monotonic() <= deadline:
                rgb, arrived, result = await self._analyse(tap, attempt, landmarks=True)
                several = several + 1 if result.faces > 1 else 0
                if several >= DECISIVE_FRAMES:
                    attempt.outcome = "several_faces"
                    return attempt
                if result.faces != 1 or result.landmarks is None:
                    continue
                poses.append(pose_from_landmarks(result.landmarks))
                self.poses_seen += 1
                if challenge_done(challenge, poses):
                    attempt.challenge_seen_at = arrived
                    # 3. The frame showing the action is the registered doctor's face.
                    final = await self.svc.pool.analyse(rgb, known=known, thumbnail=True)
                    attempt.note(final)
                    attempt.distance = final.distance
                    attempt.thumbnail = final.thumbnail
                    attempt.outcome = classify(final, cfg.threshold) or "verified"
                    return attempt
            attempt.outcome = "challenge_not_done"
            return attempt
        except TimeoutError:
            attempt.outcome = "no_video"
            return attempt

    async def _failures_so_far(self) -> int:
        async with self.svc.ctx.db.session() as session:
            return int(await session.scalar(
                select(func.count()).select_from(FaceVerification).where(
                    FaceVerification.consultation_id == self.cid,
                    FaceVerification.outcome != "verified")) or 0)

    async def _record(self, attempt: Attempt) -> None:
        """The attempt as an event (the audit trail) and a row (the index), with its evidence."""
        thumb_path = thumb_sha = None
        if attempt.thumbnail is not None:
            try:
                thumb_path, thumb_sha = await self.svc.store.put(f"evidence/{self.cid}",
                                                                 attempt.thumbnail, ".jpg")
            except OSError as exc:  # a full disk costs the thumbnail, never the attempt's record
                log.error("evidence thumbnail of %s not stored: %s", self.cid, exc)
        seconds = time.monotonic() - attempt.started
        await self.svc.ctx.events.append(self.cid, "identity.attempt", "system", {
            "doctor": self.doctor_id, "attempt": attempt.number, "outcome": attempt.outcome,
            "distance": None if attempt.distance is None else round(attempt.distance, 4),
            "threshold": self.cfg.threshold, "frames": attempt.frames,
            "challenge": attempt.challenge, "seconds": round(seconds, 3),
            "reasons": dict(attempt.reasons), "evidence_sha256": thumb_sha,
        })
        async with self.svc.ctx.db.session() as session, session.begin():
            session.add(FaceVerification(
                consultation_id=self.cid, doctor_id=self.doctor_id, attempt=attempt.number,
                outcome=attempt.outcome, challenge=attempt.challenge, distance=attempt.distance,
                frames=attempt.frames, thumbnail_path=thumb_path, thumbnail_sha256=thumb_sha))

    async def _lock(self, failures: int, notify_ops: bool) -> None:
        self.state = "locked"
        if notify_ops:
            data = {"doctor": self.doctor_id, "failures": failures}
            await self.svc.ctx.events.append(self.cid, "identity.locked", "system", data)
            await self.svc.alert(self.cid, "identity.locked", data)
        await self.say("locked", failures=failures)

    async def stop(self) -> None:
        if self.state == "running":
            self.state = "stopped"
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass

    def refusal(self) -> str | None:
        return {
            "verified": None,
            "running": "the doctor's identity has not been verified yet",
            "locked": "identity verification failed too many times: locked for this consultation",
            "not_enrolled": "the doctor has no enrolled face photo",
        }.get(self.state, "the doctor's identity could not be verified")
