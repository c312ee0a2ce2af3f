"""The verification of the doctor before accepting: one matching face, then a sequence of actions.

Why this order: matching first (with encodings, 156 ms each) makes sure the registered doctor is
in front of the camera; the actions then only need landmarks (3.5 ms) per frame, so they can be
sampled fast enough to see a blink. Frames come from the node's own copy of the doctor's video
(FrameTap), never from anything the page sends.

1. Match: `match_frames` frames with exactly one usable face; their fused distance (fusion.py,
   the median of the best 3) decides, so one blurred frame neither passes nor fails the doctor.
2. Actions: a random sequence (liveness.py), each announced on its own (`verify` step
   `challenge` with `index` of `of`) and judged only on frames that arrived after its
   announcement, within its own `challenge_time_s`.
3. After the last action the frames where each action was seen, and one more, are encoded and
   fused: the actions were done by the registered doctor, not by someone who stepped in.

Counted towards the lock (`max_attempts`, counted in the database, so leaving and rejoining does
not reset them) are only what an impostor or a replay produces: `not_registered` (the fused
distance is over the threshold) and `challenge_wrong` (another action completed before the asked
one: a clip doing its own actions in its own order). Everything a camera, a room or a slow
reaction causes (no face, several faces, too dark, face too small, the action not seen in time,
no video) is guidance: the page is told what to fix (`verify` step `guidance`), the attempt is
retried with a new sequence, and it is an `identity.guidance` event, not a failure.
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

from core import calls, metrics
from core.auth import Role
from core.store.faces import FaceVerification

from ..faces.frames import FrameTap
from ..faces.geometry import Pose, pose_from_landmarks
from ..faces.worker import FrameResult
from .frame_checks import frame_problem
from .fusion import fused_distance, fused_verdict
from .liveness import DONE, WRONG, StepJudge, challenge_sequence
from .texts import CHALLENGE_TEXT, FAILURE_TEXT, GUIDANCE_TEXT, STEP_TEXT

if TYPE_CHECKING:
    from core.calls import CallRoom
    from core.config.identity import IdentityConfig

    from ..faces.host import CheckHost

log = logging.getLogger(__name__)

FIRST_FRAME_TIMEOUT_S = 120.0
FRAME_TIMEOUT_S = 5.0
DECISIVE_FRAMES = 2  # consecutive frames with the same problem before the page is told of it
COUNTED = ("not_registered", "challenge_wrong")  # the only outcomes that count towards the lock


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
    challenge_seen_at: float | None = None  # when the frame showing the last action arrived
    steps_done: int = 0
    early_frames: int = 0  # frames that arrived before their step was announced (not judged)
    rival: str | None = None  # the action seen instead of the asked one (challenge_wrong)
    reasons: Counter[str] = field(default_factory=Counter)

    def note(self, result: FrameResult) -> None:
        self.frames += 1
        self.cpu_s += result.cpu_s


class Verification:
    """One consultation's verification while it is `verifying`; `state` is what the gate reads."""

    def __init__(self, host: CheckHost, room: CallRoom, doctor_id: str) -> None:
        self.host = host
        self.room = room
        self.cid = room.consultation_id
        self.doctor_id = doctor_id
        self.state = "running"  # running | verified | locked | not_enrolled | stopped
        self.poses_seen = 0  # challenge frames judged so far (the bench paces a turn by it)
        self.pose: Pose | None = None  # the last one judged (a browser test paces a turn by it)
        self.said: dict[str, Any] | None = None  # the last step told: again to a rejoining page
        self.last: Attempt | None = None
        self.task = asyncio.create_task(self._run(), name=f"verify-{self.cid}")

    @property
    def cfg(self) -> IdentityConfig:
        return self.host.config

    async def say(self, step: str, **fields: Any) -> None:
        status = step if step in ("verified", "failed", "locked") else "verifying"
        if status != "verifying":
            metrics.VERIFICATIONS.labels(fields.get("reason") or status).inc()
        await self.host.status(self.cid, status)  # for the ops view
        zh, en = fields.pop("text", None) or STEP_TEXT.get(step, ("", ""))
        self.said = calls.verify(step, zh, en, **fields)
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
        enrollment = await self.host.enrollment(self.doctor_id)
        if enrollment is None:
            self.state = "not_enrolled"
            await self.host.events.append(self.cid, "identity.not_enrolled", "system",
                                             {"doctor": self.doctor_id})
            await self.say("failed", reason="not_enrolled", text=FAILURE_TEXT["not_enrolled"])
            return
        failures = await self._failures_so_far()
        if failures >= self.cfg.max_attempts:
            await self._lock(failures, notify_ops=False)
            return
        tap = FrameTap(self.room.participants[Role.DOCTOR].sources["video"])
        last_guidance = None
        try:
            await self.say("waiting_video")
            await tap.next_frame(FIRST_FRAME_TIMEOUT_S)
            while True:
                attempt = await self._attempt(tap, enrollment.encoding, failures + 1)
                self.last = attempt
                remaining = self.cfg.max_attempts - failures
                if attempt.outcome in GUIDANCE_TEXT:
                    if attempt.outcome != last_guidance:  # a camera left off: one event, not one
                        await self._guidance_event(attempt)  # every attempt_time_s
                    last_guidance = attempt.outcome
                    await self.say("guidance", reason=attempt.outcome, attempt=attempt.number,
                                   remaining=remaining, text=GUIDANCE_TEXT[attempt.outcome])
                    await asyncio.sleep(self.cfg.retry_pause_s)  # pacing: read it, then retry
                    continue
                last_guidance = None
                await self._record(attempt)
                if attempt.outcome == "verified":
                    self.state = "verified"
                    await self.say("verified", distance=attempt.distance)
                    return
                failures += 1
                remaining -= 1
                await self.say("failed", reason=attempt.outcome, attempt=attempt.number,
                               remaining=max(0, remaining), text=FAILURE_TEXT[attempt.outcome])
                if remaining <= 0:
                    await self._lock(failures, notify_ops=True)
                    return
                # Leave the message on screen a moment before asking again (pacing, not a wait).
                await asyncio.sleep(self.cfg.retry_pause_s)
        except TimeoutError:  # no first frame at all
            await self.say("failed", reason="no_video", text=FAILURE_TEXT["no_video"])
            self.state = "stopped"
        finally:
            await tap.close()

    async def _analyse(self, tap: FrameTap, attempt: Attempt, **kwargs: Any
                       ) -> tuple[np.ndarray, float, FrameResult]:
        rgb, arrived = await tap.next_frame(FRAME_TIMEOUT_S)
        result = await self.host.pool.analyse(rgb, **kwargs)
        attempt.note(result)
        return rgb, arrived, result

    async def _attempt(self, tap: FrameTap, known: list[float], number: int) -> Attempt:
        attempt = Attempt(number)
        await self.say("looking", attempt=number, max_attempts=self.cfg.max_attempts)
        try:
            if not await self._match(tap, known, attempt):
                return attempt
            action_frames = await self._actions(tap, attempt)
            if action_frames is None:
                return attempt
            await self._final_check(tap, known, attempt, action_frames)
        except TimeoutError:
            attempt.outcome = "no_video"
        return attempt

    async def _hint(self, attempt: Attempt, problem: str | None, hinted: str | None) -> str | None:
        """Tell the page what to fix while a problem lasts (once per change); back to "looking"
        when it is fixed. Returns what the page now shows."""
        if problem == hinted:
            return hinted
        if problem is None:
            await self.say("looking", attempt=attempt.number, max_attempts=self.cfg.max_attempts)
        else:
            await self.say("guidance", reason=problem, attempt=attempt.number,
                           text=GUIDANCE_TEXT[problem])
        return problem

    async def _match(self, tap: FrameTap, known: list[float], attempt: Attempt) -> bool:
        """1. The registered doctor, alone, in front of the camera: fused over usable frames."""
        cfg = self.cfg
        deadline = time.monotonic() + cfg.attempt_time_s
        distances: list[float] = []
        streak, last_problem, hinted = 0, None, None
        while True:
            verdict = (fused_verdict(distances, cfg.threshold, cfg.match_frames - len(distances))
                       if distances else None)
            if verdict is not None:
                attempt.distance = fused_distance(distances)
                if not verdict:
                    attempt.outcome = "not_registered"
                return verdict
            if time.monotonic() > deadline:
                attempt.outcome = (attempt.reasons.most_common(1)[0][0] if attempt.reasons
                                   else "no_face")
                return False
            _, _, result = await self._analyse(tap, attempt, known=known)
            problem = frame_problem(result, cfg.min_face_px, cfg.dark_luma)
            if problem is None and result.distance is not None:
                distances.append(result.distance)
                streak, last_problem = 0, None
                hinted = await self._hint(attempt, None, hinted)
                continue
            problem = problem or "no_face"
            attempt.reasons[problem] += 1
            streak = streak + 1 if problem == last_problem else 1
            last_problem = problem
            if streak >= DECISIVE_FRAMES:
                hinted = await self._hint(attempt, problem, hinted)

    async def _actions(self, tap: FrameTap, attempt: Attempt) -> list[np.ndarray] | None:
        """2. The actions, one at a time, judged from landmarks only; the frames that showed
        them, or None when the attempt ended (its outcome set)."""
        cfg = self.cfg
        sequence = cfg.pinned() or challenge_sequence(
            cfg.challenges, random.SystemRandom().randint(*cfg.challenge_steps))
        attempt.challenge = ",".join(sequence)
        frames: list[np.ndarray] = []
        for index, action in enumerate(sequence, 1):
            await self.say("challenge", challenge=action, index=index, of=len(sequence),
                           attempt=attempt.number, seconds=cfg.challenge_time_s,
                           text=CHALLENGE_TEXT[action])
            step = StepJudge(action, time.monotonic())  # after the announcement went out
            deadline = step.announced_at + cfg.challenge_time_s
            problems: Counter[str] = Counter()
            several = 0
            while step.verdict is None and time.monotonic() <= deadline:
                rgb, arrived, result = await self._analyse(tap, attempt, landmarks=True)
                several = several + 1 if result.faces > 1 else 0
                if several >= DECISIVE_FRAMES:
                    attempt.outcome = "several_faces"
                    return None
                problem = frame_problem(result, cfg.min_face_px, cfg.dark_luma)
                if arrived <= step.announced_at:
                    step.early += 1
                    continue
                if problem is not None or result.landmarks is None:
                    problems[problem or "no_face"] += 1
                    continue
                self.poses_seen += 1
                self.pose = pose_from_landmarks(result.landmarks)
                if step.add(self.pose, arrived) == DONE:
                    frames.append(rgb)
                    attempt.challenge_seen_at = arrived
            attempt.early_frames += step.early
            if step.verdict == WRONG:
                attempt.outcome, attempt.rival = "challenge_wrong", step.rival
                return None
            if step.verdict is None:
                # Hardly a usable frame all along: say what to fix rather than "not done".
                attempt.outcome = (problems.most_common(1)[0][0]
                                   if problems and len(step.poses) < DECISIVE_FRAMES
                                   else "challenge_not_done")
                return None
            attempt.steps_done = index
        return frames

    async def _final_check(self, tap: FrameTap, known: list[float], attempt: Attempt,
                           action_frames: list[np.ndarray]) -> None:
        """3. The frames showing the actions, and one after the last, are the registered doctor:
        fused (the last frames first, stopping once the decision cannot change)."""
        rgb, _ = await tap.next_frame(FRAME_TIMEOUT_S)
        frames = [rgb, *reversed(action_frames)]
        distances: list[float] = []
        for i, frame in enumerate(frames):
            result = await self.host.pool.analyse(frame, known=known, thumbnail=True)
            attempt.note(result)
            if result.faces == 1 and result.distance is not None:
                distances.append(result.distance)
                if attempt.thumbnail is None:
                    attempt.thumbnail = result.thumbnail
                if fused_verdict(distances, self.cfg.threshold, len(frames) - i - 1) is not None:
                    break
        if not distances:
            attempt.outcome = "no_face"
            return
        attempt.distance = fused_distance(distances)
        attempt.outcome = ("verified" if attempt.distance <= self.cfg.threshold
                           else "not_registered")

    async def _failures_so_far(self) -> int:
        async with self.host.db.session() as session:
            return int(await session.scalar(
                select(func.count()).select_from(FaceVerification).where(
                    FaceVerification.consultation_id == self.cid,
                    FaceVerification.outcome.in_(COUNTED))) or 0)

    async def _guidance_event(self, attempt: Attempt) -> None:
        """An attempt that ended in guidance: in the audit trail, not in the attempts' index."""
        await self.host.events.append(self.cid, "identity.guidance", "system", {
            "doctor": self.doctor_id, "attempt": attempt.number, "reason": attempt.outcome,
            "frames": attempt.frames, "challenge": attempt.challenge,
            "steps_done": attempt.steps_done, "early_frames": attempt.early_frames,
            "seconds": round(time.monotonic() - attempt.started, 3),
            "reasons": dict(attempt.reasons)})

    async def _record(self, attempt: Attempt) -> None:
        """The attempt as an event (the audit trail) and a row (the index), with its evidence."""
        thumb_path = thumb_sha = None
        if attempt.thumbnail is not None:
            try:
                thumb_path, thumb_sha = await self.host.store.put(f"evidence/{self.cid}",
                                                                 attempt.thumbnail, ".jpg")
            except OSError as exc:  # a full disk costs the thumbnail, never the attempt's record
                log.error("evidence thumbnail of %s not stored: %s", self.cid, exc)
        seconds = time.monotonic() - attempt.started
        await self.host.events.append(self.cid, "identity.attempt", "system", {
            "doctor": self.doctor_id, "attempt": attempt.number, "outcome": attempt.outcome,
            "distance": None if attempt.distance is None else round(attempt.distance, 4),
            "threshold": self.cfg.threshold, "frames": attempt.frames,
            "challenge": attempt.challenge, "seconds": round(seconds, 3),
            "steps_done": attempt.steps_done, "early_frames": attempt.early_frames,
            "rival": attempt.rival, "counted": attempt.outcome in COUNTED,
            "reasons": dict(attempt.reasons), "evidence_sha256": thumb_sha,
        })
        async with self.host.db.session() as session, session.begin():
            session.add(FaceVerification(
                consultation_id=self.cid, doctor_id=self.doctor_id, attempt=attempt.number,
                outcome=attempt.outcome, challenge=attempt.challenge, distance=attempt.distance,
                frames=attempt.frames, thumbnail_path=thumb_path, thumbnail_sha256=thumb_sha))

    async def _lock(self, failures: int, notify_ops: bool) -> None:
        self.state = "locked"
        if notify_ops:
            data = {"doctor": self.doctor_id, "failures": failures}
            await self.host.events.append(self.cid, "identity.locked", "system", data)
            await self.host.alert(self.cid, "identity.locked",
                                 f"医生身份核验已锁定 Doctor verification locked after "
                                 f"{failures} failed attempts", data)
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
