"""Guardian presence in pediatric consultations (issue 4): sampling, gate, alerts, timeline.

For each pediatric consultation with its patient side connected, a `Monitor` keeps one VP8
decoder fed from the guardian's encoded video (identity.faces.frames.FrameTap: ~1 ms a frame, the
only way to decode an arbitrary later frame without asking the sender for key frames) and once per
`sample_interval_s` sends the newest frame to a face worker (identity's pool: dlib holds the GIL).
The pure `PresenceMachine` turns samples into present/absent without flapping; every change is an
event with its evidence (distance, face count, how long unseen), so the audit timeline shows the
guardian's presence over the whole consultation.

What a change does: the pages get a `presence` message (the banner), live state gets
`{"guardian": "absent"|"present"}` for the ops page, an absence during the call is an ops alert,
and an absence past `absent_limit_s` asks the doctor to decide or ends the consultation with a
referral (TC_GUARDIAN_ABSENT_ACTION). The accept gate "guardian_present" waits for `present`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from core import calls, referral
from core.alerts import Alert, publish_alert
from core.auth import Role
from core.config.presence import PresenceConfig
from core.context import NodeContext
from core.lifecycle import Gate, State, Transition
from core.live import LiveStateUnavailable
from core.store import records

from ..faces.frames import FrameTap
from ..faces.host import FaceDesk
from ..faces.pool import FacePool
from . import presence_worker
from .guardians import consultation_ages, guardian_encodings
from .presence_policy import Change, Observation, PresenceMachine, Track

if TYPE_CHECKING:
    from core.calls import CallRoom

log = logging.getLogger(__name__)

TEXT = {
    "absent": ("请监护人回到镜头前", "Guardian, please return to the camera"),
    "present": ("监护人已在镜头前", "The guardian is on camera"),
    "limit": ("监护人离开镜头过久，请医生决定是否继续或终止并转诊",
              "The guardian has been away too long: continue, or terminate and refer"),
}


# Every this many samples the whole picture is searched (new faces, the count of faces); in
# between only around the guardian's face while it is matched (presence_worker).
FULL_DETECTION_EVERY = 5


@dataclass
class Stats:
    """Samples taken on this node, and how many needed an encoding (tracking saves most)."""

    samples: int = 0
    encoded: int = 0


# What the ops page shows for each guardian alert: an absence, the return from one, the limit.
_ALERT_TEXT = {
    "guardian.absent": "监护人不在画面中 The guardian is not on camera",
    "guardian.present": "监护人回到画面 The guardian is back on camera",
    "guardian.absent_limit": "监护人离开超时 The guardian has been away past the limit",
}

# How a monitor reports a change of the guardian's presence (PresenceService.on_change).
Report = Callable[["Monitor", Change], Awaitable[None]]


class Monitor:
    """The sampling loop of one consultation's patient-side video: samples in a face worker of
    `pool`, counts them in `stats`, and hands every change to `report`."""

    def __init__(self, room: CallRoom, patient_id: str, guardians: dict[str, list[float]],
                 cfg: PresenceConfig, pool: FacePool, threshold: float, stats: Stats,
                 report: Report) -> None:
        self.cfg = cfg
        self.pool = pool
        self.threshold = threshold
        self.stats = stats
        self.report = report
        self.room = room
        self.cid = room.consultation_id
        self.patient_id = patient_id
        self.guardians = guardians
        self.machine = PresenceMachine(cfg.absent_after_s, cfg.present_after, cfg.absent_limit_s,
                                       slack_s=min(0.2, cfg.sample_interval_s / 4))
        self.tracks: list[Track] = []
        self.samples = 0
        self.changed = asyncio.Condition()
        self.task = asyncio.create_task(self._run(), name=f"presence-{self.cid}")

    @property
    def state(self) -> str:
        return self.machine.state

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("guardian presence checks of %s stopped", self.cid)

    async def _loop(self) -> None:
        cfg = self.cfg
        encodings = list(self.guardians.values())
        tap = FrameTap(self.room.participants[Role.GUARDIAN].sources["video"])
        try:
            due = time.monotonic()
            while not self.room.closed:
                # The sampling cadence (not a synchronisation): one frame per interval at most.
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                due = max(due + cfg.sample_interval_s, time.monotonic())
                try:
                    rgb, at = await tap.next_frame(cfg.sample_interval_s)
                except TimeoutError:
                    obs = Observation(time.monotonic(), False, 0, None, video=False)
                else:
                    full = self.samples % FULL_DETECTION_EVERY == 0
                    result = await self.pool.run(
                        presence_worker.sample, rgb, encodings, self.tracks, at, self.threshold,
                        cfg.refresh_s, full)
                    self.samples += 1
                    self.tracks = result.tracks
                    self.stats.samples += 1
                    self.stats.encoded += result.encoded
                    obs = Observation(at, result.matched, result.faces, result.distance)
                for change in self.machine.observe(obs):
                    await self.report(self, change)
                async with self.changed:
                    self.changed.notify_all()
        finally:
            await tap.close()

    async def wait_for(self, state: str, timeout: float) -> None:
        """Until the machine is in `state` (tests and the bench); TimeoutError."""
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: self.machine.state == state)

    async def stop(self) -> None:
        if asyncio.current_task() is self.task:
            return
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class PresenceService:
    def __init__(self, config: PresenceConfig, ctx: NodeContext, faces: FaceDesk,
                 room_of: Callable[[str], CallRoom | None]) -> None:
        self.config = config
        self.ctx = ctx
        self.room_of = room_of
        self.faces = faces
        self.monitors: dict[str, Monitor] = {}
        self.stats = Stats()
        # Consultations whose room closed under their monitor (everyone left): watched again as
        # soon as the guardian is back (issue 17).
        self._paused: set[str] = set()

    async def emptied(self, room: CallRoom) -> None:
        """Everyone left before the consultation ended: the monitor watched the closed room's
        video and ends with it; the guardian's next join starts one on the new room."""
        cid = room.consultation_id
        monitor = self.monitors.get(cid)
        if monitor is None or monitor.room is not room:
            return
        del self.monitors[cid]
        self._paused.add(cid)
        await monitor.stop()
        await self.ctx.events.append(cid, "guardian.presence.stopped", "system", {
            "state": monitor.state, "reason": "every participant left"})

    async def rejoined(self, room: CallRoom, role: Role) -> None:
        """A page that (re)joins shows the guardian's current presence (the banner, say)."""
        if role == Role.GUARDIAN and room.consultation_id in self._paused and not room.closed:
            self._paused.discard(room.consultation_id)
            await self.ensure_monitor(room.consultation_id)
        monitor = self.monitors.get(room.consultation_id)
        if monitor is not None and monitor.state in ("present", "absent"):
            zh, en = TEXT[monitor.state]
            await room.send(role, calls.presence(monitor.state, zh, en))

    async def close(self) -> None:
        for monitor in list(self.monitors.values()):
            await monitor.stop()
        self.monitors.clear()

    def gate(self) -> Gate:
        async def guardian_present(cid: str) -> str | None:
            ages = await consultation_ages(self.ctx.db, cid, self.config)
            if ages is None or not ages.pediatric:
                return None
            monitor = self.monitors.get(cid) or await self.ensure_monitor(cid)
            if monitor is None:
                return "no guardian of this child has an enrolled photo (or no patient video)"
            if monitor.state != "present":
                return "the guardian has not been seen on the patient's camera yet"
            return None

        return guardian_present

    async def ensure_monitor(self, cid: str) -> Monitor | None:
        """Start checking a pediatric consultation's patient video, if not already."""
        if cid in self.monitors:
            return self.monitors[cid]
        room = self.room_of(cid)
        consultation = await records.get_consultation(self.ctx.db, cid)
        if room is None or consultation is None:
            return None
        ages = await consultation_ages(self.ctx.db, cid, self.config)
        if ages is None or not ages.pediatric:
            return None
        guardians = await guardian_encodings(self.ctx.db, consultation.patient_id)
        if cid in self.monitors:  # another caller started it while we read the database
            return self.monitors[cid]
        if not guardians:
            await self.ctx.events.append(cid, "guardian.presence.unavailable", "system", {
                "reason": "no enrolled guardian photo for this patient"})
            return None
        monitor = self.monitors[cid] = Monitor(
            room, consultation.patient_id, guardians, self.config, self.faces.pool,
            self.faces.config.threshold, self.stats, self.on_change)
        await self.ctx.events.append(cid, "guardian.presence.started", "system", {
            "guardians": sorted(guardians), "sample_interval_s": self.config.sample_interval_s,
            "absent_after_s": self.config.absent_after_s,
            "present_after": self.config.present_after,
            "threshold": self.faces.config.threshold})
        return monitor

    async def resume(self, room: CallRoom, state: State) -> None:
        """A consultation re-homed here (failover): watch the patient's video here now."""
        await self.ensure_monitor(room.consultation_id)

    async def on_transition(self, change: Transition) -> None:
        cid = change.consultation_id
        if change.state.final:
            self._paused.discard(cid)
            monitor = self.monitors.pop(cid, None)
            if monitor is not None:
                await monitor.stop()
                await self.ctx.events.append(cid, "guardian.presence.stopped", "system", {
                    "state": monitor.state})
            return
        if change.state in (State.WAITING, State.VERIFYING, State.ACTIVE):
            await self.ensure_monitor(cid)

    async def on_change(self, monitor: Monitor, change: Change) -> None:
        """One presence change: timeline event, pages, live state, ops alert, limit action."""
        cid = monitor.cid
        at = datetime.now(UTC) - timedelta(seconds=max(0.0, time.monotonic() - change.at))
        evidence = {"previous": change.previous, "unseen_s": change.unseen_s,
                    "faces": change.faces, "distance": change.distance,
                    "threshold": self.faces.config.threshold, "streak": change.streak,
                    "at": at.isoformat()}
        state = await self.ctx.lifecycle.state(cid)
        active = state == State.ACTIVE
        if change.kind == "limit":
            await self._limit(monitor, evidence, active)
            return
        await self.ctx.events.append(cid, "guardian.presence", "system",
                                     {"state": change.kind, **evidence})
        zh, en = TEXT[change.kind]
        await monitor.room.broadcast(calls.presence(change.kind, zh, en, change.faces,
                                                       at.isoformat()))
        try:
            await self.ctx.live.put_consultation(cid, {"guardian": change.kind})
        except LiveStateUnavailable:
            log.warning("live state unavailable: guardian %s of %s not published",
                        change.kind, cid)
        if active and (change.kind == "absent" or change.previous == "absent"):
            await self._alert(cid, f"guardian.{change.kind}", evidence)

    async def _alert(self, cid: str, kind: str, data: dict[str, Any]) -> None:
        text = f"{_ALERT_TEXT[kind]} ({data.get('unseen_s', 0)} s)"
        await publish_alert(self.ctx.live, Alert(kind, text, self.ctx.settings.node_id, cid, data))

    async def _limit(self, monitor: Monitor, evidence: dict[str, Any], active: bool) -> None:
        cid, action = monitor.cid, self.config.absent_action
        await self.ctx.events.append(cid, "guardian.absent_limit", "system", {
            "limit_s": self.config.absent_limit_s, "action": action if active else "none",
            **evidence})
        if not active:
            return
        await self._alert(cid, "guardian.absent_limit", {"action": action, **evidence})
        if action == "ask_doctor":
            zh, en = TEXT["limit"]
            await monitor.room.send(Role.DOCTOR, calls.notice("guardian_absent_limit", zh, en))
            return
        await referral.refer_to_own_hospital(
            self.ctx, cid, "guardian_absent",
            f"监护人离开镜头超过 {self.config.absent_limit_s:.0f} 秒，问诊自动终止；请携带患儿"
            f"由监护人陪同到院就诊。The guardian was off camera for over "
            f"{self.config.absent_limit_s:.0f} s; please visit the hospital with the child.")


PRESENCE_KEY = web.AppKey("presence", PresenceService)  # set only where presence is on
