"""Continuous assurance during the call: is the registered doctor still the one on camera?

As the call starts (nobody looked between `verified` and the accept), then every `recheck_s`
(30 s), `recheck_frames` (3) frames a third of a second apart are taken (a fresh subscription
starts at a key frame, so a few decodes, no decoder kept running) and their distances fused
(fusion.py), so one frame smeared by motion or loss does not raise an alarm and one lucky frame
does not clear one. Frames are encoded one by one and the check stops once the fused decision
cannot change: two agreeing frames (~0.5 s of a worker) decide almost every check, under 2% of a
core per consultation (bench.identity). While something is wrong the cadence shortens to
`grace_recheck_s`; once it has been wrong for `grace_s` the doctor (notice) and ops (alert) are
told and it is recorded; `mismatch_action` decides what else happens: "alert" (default),
"pause" (the patient side stops receiving the doctor's picture and sound until the registered
doctor is back) or "end" (the consultation is terminated with a referral to the booking
hospital, reason `doctor_identity_lost`). Every check is an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

from core import calls
from core.auth import Role

from ..faces.frames import DecodeCost, grab_frames
from .frame_checks import classify
from .fusion import fused_distance, fused_verdict
from .texts import ASSURANCE_TEXT, PAUSED_TEXT, RESUMED_TEXT

if TYPE_CHECKING:
    from core.calls import CallRoom

    from ..faces.host import CheckHost

log = logging.getLogger(__name__)

GRAB_TIMEOUT_S = 5.0
IDENTITY_LOST_NOTE = ("接诊医生身份无法确认，本次问诊已终止，请到院就诊。"
                      "The doctor's identity could not be confirmed, so this consultation was "
                      "ended: please visit the hospital.")


class Assurance:
    def __init__(self, host: CheckHost, room: CallRoom, doctor_id: str,
                 encoding: list[float]) -> None:
        self.host = host
        self.room = room
        self.cid = room.consultation_id
        self.doctor_id = doctor_id
        self.encoding = encoding
        self.task = asyncio.create_task(self._run(), name=f"assure-{self.cid}")

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("continuous identity checks of %s stopped", self.cid)

    async def check_once(self) -> tuple[str | None, dict]:
        """One re-check: (None or the reason it failed, the facts for the event).

        Several faces in two frames is `several_faces`; otherwise the frames with one face
        decide by their fused distance; none with a face: the most frequent reason."""
        cfg = self.host.config
        source = self.room.participants[Role.DOCTOR].sources["video"]
        decode = DecodeCost()
        worker_s = 0.0
        distances: list[float] = []
        reasons: Counter[str] = Counter()
        faces: list[int] = []
        try:
            async with contextlib.aclosing(grab_frames(source, GRAB_TIMEOUT_S,
                                                       cfg.recheck_frames, cost=decode)) as frames:
                async for rgb in frames:
                    result = await self.host.pool.analyse(rgb, known=self.encoding)
                    worker_s += result.cpu_s
                    faces.append(result.faces)
                    if result.faces == 1 and result.distance is not None:
                        distances.append(result.distance)
                        still = cfg.recheck_frames - len(faces)
                        if fused_verdict(distances, cfg.threshold, still) is not None:
                            break  # the rest could not change it: not decoded, not encoded
                    else:
                        reasons[classify(result, cfg.threshold) or "no_face"] += 1
        except TimeoutError:
            return "no_video", {"frames": 0}
        decode_s = decode.seconds
        fused = fused_distance(distances) if distances else None
        if reasons["several_faces"] >= min(2, len(faces)):
            reason: str | None = "several_faces"
        elif fused is not None:
            reason = None if fused <= cfg.threshold else "not_registered"
        else:
            reason = reasons.most_common(1)[0][0]
        return reason, {
            "frames": len(faces), "faces": faces,
            "distance": None if fused is None else round(fused, 4),
            "worker_cpu_s": round(worker_s, 4), "decode_cpu_s": round(decode_s, 4)}

    async def _loop(self) -> None:
        cfg = self.host.config
        events = self.host.events
        bad_since: float | None = None
        alerted = False
        first = True
        while True:
            # The first check at once, then the cadence of the checks (not a synchronisation).
            if not first:
                await asyncio.sleep(cfg.grace_recheck_s if bad_since is not None
                                    else cfg.recheck_s)
            first = False
            reason, facts = await self.check_once()
            await events.append(self.cid, "identity.recheck", "system",
                                {"ok": reason is None, "reason": reason, **facts})
            now = time.monotonic()
            if reason is None:
                if alerted:
                    await events.append(self.cid, "identity.recovered", "system", {})
                    await self.room.send(Role.DOCTOR, calls.notice(
                        "identity_recovered", "已重新确认医生本人",
                        "The registered doctor is back on camera"))
                    await self._hold(False)
                bad_since, alerted = None, False
                continue
            if bad_since is None:
                bad_since = now
            if alerted or now - bad_since < cfg.grace_s:
                continue
            alerted = True
            data = {"doctor": self.doctor_id, "reason": reason,
                    "for_s": round(now - bad_since, 1), "action": cfg.mismatch_action}
            await events.append(self.cid, "identity.alert", "system", data)
            await self.host.alert(self.cid, "identity.alert",
                                 f"通话中医生身份异常 The doctor on camera is in doubt ({reason}, "
                                 f"{data['for_s']} s)", data)
            await self.host.status(self.cid, "mismatch")
            zh, en = ASSURANCE_TEXT[reason]
            await self.room.send(Role.DOCTOR, calls.notice(f"identity_{reason}", zh, en))
            if cfg.mismatch_action == "pause":
                await self._hold(True)
            elif cfg.mismatch_action == "end":
                # The same termination-and-referral flow as the doctor's own, system reason.
                await self.host.end(self.cid, "doctor_identity_lost", IDENTITY_LOST_NOTE)
                return

    async def _hold(self, on: bool) -> None:
        """`pause`: the patient neither sees nor hears who is on the doctor's camera until the
        registered doctor is back; recording and these checks still get the doctor's media."""
        sources = self.room.participants[Role.DOCTOR].sources.values()
        if all(source.held == on for source in sources):
            return
        for source in sources:
            source.held = on
        await self.host.events.append(self.cid, "identity.paused" if on else
                                         "identity.resumed", "system", {})
        zh, en = PAUSED_TEXT if on else RESUMED_TEXT
        await self.room.broadcast(calls.notice("doctor_paused" if on else "doctor_resumed",
                                                  zh, en))

    async def stop(self) -> None:
        if asyncio.current_task() is self.task:  # ending the call from inside the check loop
            return
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
