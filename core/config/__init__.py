"""All configuration, read once from the environment.

Every setting has a documented default so that `make run` works with nothing set: SQLite under
./data, in-process live state, recordings under ./data/recordings and no ICE servers (aiortc would
otherwise reach a public STUN server).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path

from aiortc import RTCIceServer

from ..logs import parse_levels
from .identity import IdentityConfig
from .photos import PhotoLimits
from .presence import PresenceConfig
from .recording_store import StoreConfig
from .turn import TURN_SCHEMES, TurnConfig


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _ice_servers(raw: str) -> list[RTCIceServer]:
    """TC_ICE_SERVERS: JSON, `[{"urls": "stun:stun.example.org:3478"}]`: STUN servers only.

    Every entry is handed to every page as it is, so an entry with a password (a static TURN
    credential) is refused rather than published: TURN is TC_TURN_URLS with TC_TURN_SECRET, whose
    credentials are minted per participant (core/config/turn.py).
    """
    if not raw.strip():
        return []
    servers = []
    for item in json.loads(raw):
        urls = [item["urls"]] if isinstance(item["urls"], str) else list(item["urls"])
        if item.get("username") or item.get("credential") or any(
                u.startswith(TURN_SCHEMES) for u in urls):
            raise ValueError(
                f"TC_ICE_SERVERS: {urls}: only STUN servers here (an entry's credential would be "
                "shown to every page); give TURN as TC_TURN_URLS with TC_TURN_SECRET")
        servers.append(RTCIceServer(urls=item["urls"]))
    return servers


def _turn() -> TurnConfig:
    """TC_TURN_URLS, TC_TURN_SECRET (from the environment only, never a file), TC_TURN_TTL."""
    return TurnConfig(
        urls=tuple(_split(_env("TC_TURN_URLS", ""))),
        secret=os.environ.get("TC_TURN_SECRET", ""),
        ttl_s=int(_env("TC_TURN_TTL", str(4 * 3600))),
    ).checked()


def _optional_path(name: str) -> Path | None:
    value = os.environ.get(name, "")
    return Path(value) if value else None


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


FEEDBACK_DAYS = 30
MAX_FEEDBACK_DAYS = 365


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    data_dir: Path = Path("data")
    database_url: str = ""
    redis_url: str | None = None
    node_id: str = field(default_factory=socket.gethostname)
    token_secret: str = ""
    token_ttl_s: int = 4 * 3600
    # Days after a consultation that a guardian who wrote a question or complaint can still
    # read the answers (server/quality/feedback_token.py).
    feedback_days: int = FEEDBACK_DAYS
    ice_servers: list[RTCIceServer] = field(default_factory=list)  # STUN only
    turn: TurnConfig = field(default_factory=TurnConfig)  # issue 11: per-participant credentials
    tls_cert: Path | None = None  # with tls_key: the node serves https and wss itself
    tls_key: Path | None = None
    ice_host_addresses: list[str] = field(default_factory=list)
    rejoin_grace_s: float = 60.0
    stats_interval_s: float = 5.0
    loop_watch_s: float = 0.5  # how often the event loop's lag is sampled (core/metrics.py)
    event_loop: str = "uvloop"  # or "asyncio" (see server/event_loop.py)
    video_max_kbps: int = 1700
    heartbeat_s: float = 2.0
    node_ttl_s: float = 6.0
    json_logs: bool = True
    max_message_bytes: int = 64 * 1024
    body_timeout_s: float = 10.0  # an HTTP body must arrive within this after its headers
    retention_years: int = 3
    identity: IdentityConfig = field(default_factory=IdentityConfig)  # issue 3
    presence: PresenceConfig = field(default_factory=PresenceConfig)  # issue 4
    log_level: str = "INFO"
    recording_enabled: bool = True
    recording_segment_s: float = 60.0
    recording_key: str = ""  # the master key, base64 of 32 bytes; see recorder/keys.py
    recording_key_from_file: bool = False  # TC_RECORDING_KEY unset: this node's own key
    recording_old_keys: list[str] = field(default_factory=list)
    purge_interval_s: float = 3600.0
    # A segment the store would not take is tried again after 1 s, then twice as long each
    # time up to this (recorder/uploads.py).
    recording_retry_max_s: float = 30.0
    store: StoreConfig = field(default_factory=StoreConfig)  # issue 12: local folder or S3

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def ice_servers_json(self) -> list[dict]:
        """The STUN servers, in the browser's RTCConfiguration form (TURN: `turn.ice_servers`)."""
        return [{"urls": s.urls} for s in self.ice_servers]


def _token_secret(data_dir: Path) -> str:
    """TC_TOKEN_SECRET, or for a local demo a random secret kept in the data dir (not the repo)."""
    secret = os.environ.get("TC_TOKEN_SECRET", "")
    if secret:
        return secret
    path = data_dir / "token-secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(secret)
    path.chmod(0o600)
    return secret


def _off(raw: str) -> bool:
    return raw.lower() in ("0", "false", "no", "off")


def _steps(value: str) -> tuple[int, int]:
    """TC_FACE_CHALLENGE_STEPS: "3" (always three actions) or "2-3" (two or three, at random)."""
    low, _, high = value.partition("-")
    return int(low), int(high or low)


def _identity() -> IdentityConfig:
    """TC_IDENTITY_REQUIRED and TC_FACE_*: the doctor's face verification (config/identity.py)."""
    return IdentityConfig(
        required=not _off(_env("TC_IDENTITY_REQUIRED", "1")),
        threshold=float(_env("TC_FACE_THRESHOLD", "0.61")),
        challenge=_env("TC_FACE_CHALLENGE", "random"),
        challenge_steps=_steps(_env("TC_FACE_CHALLENGE_STEPS", "2-3")),
        challenge_time_s=float(_env("TC_FACE_CHALLENGE_S", "8")),
        dark_luma=float(_env("TC_FACE_DARK_LUMA", "30")),
        recheck_s=float(_env("TC_FACE_RECHECK_S", "30")),
        grace_s=float(_env("TC_FACE_GRACE_S", "10")),
        mismatch_action=_env("TC_FACE_MISMATCH_ACTION", "alert"),
        max_photo_bytes=int(_env("TC_FACE_MAX_PHOTO_BYTES", str(5 * 1024 * 1024))),
        photo=PhotoLimits(
            max_side=int(_env("TC_FACE_MAX_PHOTO_SIDE", "4096")),
            max_pixels=int(_env("TC_FACE_MAX_PHOTO_PIXELS", str(4096 * 4096))),
            min_side=int(_env("TC_FACE_MIN_PHOTO_SIDE", "64")),
            max_aspect=float(_env("TC_FACE_MAX_PHOTO_ASPECT", "4"))),
        workers=int(_env("TC_FACE_WORKERS", "1")),
        detector=_env("TC_FACE_DETECTOR", "blazeface"),
    ).checked()


def _presence() -> PresenceConfig:
    """TC_GUARDIAN_*: the guardian on camera in pediatric consultations (presence_config.py)."""
    return PresenceConfig(
        enabled=not _off(_env("TC_GUARDIAN_PRESENCE", "1")),
        pediatric_age=int(_env("TC_PEDIATRIC_AGE", "18")),
        prescribe_guardian_age=int(_env("TC_PRESCRIBE_GUARDIAN_AGE", "6")),
        sample_interval_s=1.0 / float(_env("TC_GUARDIAN_SAMPLE_FPS", "1")),
        absent_after_s=float(_env("TC_GUARDIAN_ABSENT_S", "5")),
        present_after=int(_env("TC_GUARDIAN_PRESENT_N", "2")),
        absent_limit_s=float(_env("TC_GUARDIAN_ABSENT_LIMIT_S", "60")),
        absent_action=_env("TC_GUARDIAN_ABSENT_ACTION", "ask_doctor"),
        refresh_s=float(_env("TC_GUARDIAN_REFRESH_S", "5")),
    ).checked()


def _store() -> StoreConfig:
    """TC_RECORDING_STORE and TC_S3_*: where recordings and identity's files are kept
    (core/config/recording_store.py). The credentials come from the environment only."""
    return StoreConfig(
        kind=_env("TC_RECORDING_STORE", "local"),
        endpoint=_env("TC_S3_ENDPOINT", ""),
        bucket=_env("TC_S3_BUCKET", ""),
        region=_env("TC_S3_REGION", "us-east-1"),
        prefix=_env("TC_S3_PREFIX", ""),
        multipart_mb=int(_env("TC_S3_MULTIPART_MB", "64")),
        checksum=_env("TC_S3_CHECKSUM", "when_supported"),
        connect_timeout_s=float(_env("TC_S3_CONNECT_TIMEOUT", "5")),
        read_timeout_s=float(_env("TC_S3_READ_TIMEOUT", "15")),
        max_attempts=int(_env("TC_S3_MAX_ATTEMPTS", "3")),
        access_key_id=os.environ.get("TC_S3_ACCESS_KEY_ID", ""),
        secret_access_key=os.environ.get("TC_S3_SECRET_ACCESS_KEY", ""),
    ).checked()


def _recording_key(data_dir: Path) -> tuple[str, bool]:
    """TC_RECORDING_KEY, or for a local demo a random key kept in the data dir (not the repo);
    and whether it is that node-local one (the recorder warns about it on a node of several)."""
    key = os.environ.get("TC_RECORDING_KEY", "")
    if key:
        return key, False
    path = data_dir / "recording-key"
    if path.exists():
        return path.read_text().strip(), True
    data_dir.mkdir(parents=True, exist_ok=True)
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    path.write_text(key)
    path.chmod(0o600)
    return key, True


def _feedback_days(raw: str) -> int:
    days = int(raw)
    if not 1 <= days <= MAX_FEEDBACK_DAYS:
        raise ValueError(f"TC_FEEDBACK_DAYS must be 1..{MAX_FEEDBACK_DAYS} (days), not {raw}")
    return days


def _log_level(raw: str) -> str:
    """TC_LOG_LEVEL: a level, then optional `logger=LEVEL` parts (core/logs.configure)."""
    parse_levels(raw)
    return raw


EVENT_LOOPS = ("uvloop", "asyncio")


def event_loop_setting() -> str:
    """TC_EVENT_LOOP: "uvloop" (the default) or "asyncio"."""
    name = _env("TC_EVENT_LOOP", EVENT_LOOPS[0])
    if name not in EVENT_LOOPS:
        raise ValueError(f"TC_EVENT_LOOP: {name!r}: one of {', '.join(EVENT_LOOPS)}")
    return name


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment; keyword overrides win (tests and the CLI use them)."""
    data_dir = Path(str(overrides.pop("data_dir", _env("TC_DATA_DIR", "data"))))
    host = _env("TC_HOST", "127.0.0.1")
    port = int(_env("TC_PORT", "8080"))
    tls_cert, tls_key = _optional_path("TC_TLS_CERT"), _optional_path("TC_TLS_KEY")
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("TC_TLS_CERT and TC_TLS_KEY go together: set both for https, or neither")
    scheme = "https" if tls_cert else "http"
    values: dict[str, object] = dict(
        host=host,
        port=port,
        public_url=_env("TC_PUBLIC_URL", f"{scheme}://{host}:{port}"),
        tls_cert=tls_cert,
        tls_key=tls_key,
        data_dir=data_dir,
        database_url=_env("DATABASE_URL", f"sqlite+aiosqlite:///{data_dir.resolve()}/teleconsult.db"),
        redis_url=os.environ.get("REDIS_URL") or None,
        node_id=_env("TC_NODE_ID", socket.gethostname()),
        token_ttl_s=int(_env("TC_TOKEN_TTL", str(4 * 3600))),
        feedback_days=_feedback_days(_env("TC_FEEDBACK_DAYS", str(FEEDBACK_DAYS))),
        ice_servers=_ice_servers(_env("TC_ICE_SERVERS", "")),
        ice_host_addresses=_split(_env("TC_ICE_HOST_ADDRESSES", "")),
        rejoin_grace_s=float(_env("TC_REJOIN_GRACE", "60")),
        stats_interval_s=float(_env("TC_STATS_INTERVAL", "5")),
        loop_watch_s=max(0.001, float(_env("TC_LOOP_WATCH_MS", "500")) / 1000),
        event_loop=event_loop_setting(),
        video_max_kbps=max(100, int(_env("TC_VIDEO_MAX_KBPS", "1700"))),
        body_timeout_s=float(_env("TC_BODY_TIMEOUT", "10")),
        heartbeat_s=float(_env("TC_HEARTBEAT", "2")),
        node_ttl_s=float(_env("TC_NODE_TTL", "6")),
        json_logs=_env("TC_LOG_FORMAT", "json") == "json",
        max_message_bytes=int(_env("TC_MAX_MESSAGE_BYTES", str(64 * 1024))),
        retention_years=max(3, int(_env("TC_RETENTION_YEARS", "3"))),
        log_level=_log_level(_env("TC_LOG_LEVEL", "INFO")),
        recording_enabled=not _off(_env("TC_RECORDING", "1")),
        recording_segment_s=float(_env("TC_RECORDING_SEGMENT_S", "60")),
        recording_old_keys=_split(_env("TC_RECORDING_OLD_KEYS", "")),
        purge_interval_s=float(_env("TC_PURGE_INTERVAL_S", "3600")),
        recording_retry_max_s=float(_env("TC_RECORDING_RETRY_MAX_S", "30")),
    )
    if "identity" not in overrides:
        values["identity"] = _identity()
    if "presence" not in overrides:
        values["presence"] = _presence()
    if "turn" not in overrides:
        values["turn"] = _turn()
    if "store" not in overrides:
        values["store"] = _store()
    values.update(overrides)
    if "token_secret" not in values:
        values["token_secret"] = _token_secret(data_dir)
    if "recording_key" not in values:
        values["recording_key"], values["recording_key_from_file"] = _recording_key(data_dir)
    return Settings(**values)  # type: ignore[arg-type]
