"""Command line: `python -m server run|seed-demo|token|day-link|verify-chain|verify-recordings|
rewrap-recordings`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from aiohttp import web

from core import logs
from core.auth import Role, Tokens
from core.config import Settings, load_settings
from core.store import Database, EventLog
from server.access_log import RedactingAccessLogger
from server.app import create_app
from server.day_token import MAX_HOURS, DayTokenRefused, issue_day_link
from server.demo import seed
from server.event_loop import new_event_loop
from server.tls import TlsError, server_context


def _tokens(settings: Settings) -> Tokens:
    return Tokens(settings.token_secret, settings.token_ttl_s)


async def _seed(settings: Settings) -> None:
    db = await Database.open(settings.database_url)
    try:
        booking = await seed(db, settings, _tokens(settings))
        day = await issue_day_link(db, EventLog(db), _tokens(settings), settings.public_url,
                                   booking.doctor_id, 12, "system:demo")
    finally:
        await db.close()
    tokens = _tokens(settings)
    base = settings.public_url
    admin = tokens.issue(Role.ADMIN, "demo-admin")
    print(f"demo consultation {booking.consultation_id}")
    print(f"  doctor   (医生):     {booking.doctor_link}")
    print(f"  guardian (监护人):   {booking.guardian_link}")
    print(f"  worklist (今日接诊): {day.link}")
    print(f"  report   (进展报告): {base}/report#token={admin}")
    print(f"  ops      (运维):     {base}/ops#token={tokens.issue(Role.OPS, 'demo-ops')}")
    print(f"  auditor  (审计):     {base}/replay#token={tokens.issue(Role.AUDITOR, 'demo-audit')}")
    print(f"  registry (医生注册): {base}/admin/doctors#token={admin}")
    quality = tokens.issue(Role.QUALITY, "demo-quality")
    print(f"  quality  (质控):     {base}/quality#token={quality}")
    print("Before the doctor can accept: enroll the doctor's face photo on the registry page")
    print("(identity check), and the guardian's, for this child's consultation:")
    print(f"  curl -X PUT --data-binary @photo.jpg -H 'Content-Type: image/jpeg' \\\n"
          f"       -H 'Authorization: Bearer {admin}' \\")
    print(f"       {base}/api/admin/guardians/{booking.guardian_id}/face")
    print("To look around without faces: TC_IDENTITY_REQUIRED=0 TC_GUARDIAN_PRESENCE=0 make run")


async def _day_link(settings: Settings, doctor_id: str, hours: int) -> int:
    """Issue 15: a doctor's worklist link (a day token), logged as issued from the command line."""
    db = await Database.open(settings.database_url)
    try:
        day = await issue_day_link(db, EventLog(db), _tokens(settings), settings.public_url,
                                   doctor_id, hours, "system:cli")
    except (DayTokenRefused, ValueError) as exc:
        print(f"teleconsult: no day link: {exc}", file=sys.stderr)
        return 1
    finally:
        await db.close()
    print(f"worklist (今日接诊) until {day.expires_at.isoformat()}: {day.link}")
    return 0


async def _verify(settings: Settings, chain: str) -> int:
    db = await Database.open(settings.database_url)
    try:
        report = await EventLog(db).verify(chain)
    finally:
        await db.close()
    print(json.dumps({"chain": chain, "ok": report.ok, "count": report.count,
                      "problems": report.problems}, ensure_ascii=False, indent=2))
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the node (settings from TC_* environment variables)")
    run.add_argument("--demo", action="store_true", help="seed a demo consultation and print links")
    sub.add_parser("seed-demo", help="create a demo consultation and print its join links")
    token = sub.add_parser("token", help="issue an access token")
    token.add_argument("--role", required=True, choices=[r.value for r in Role])
    token.add_argument("--subject", required=True)
    token.add_argument("--consultation")
    token.add_argument("--ttl", type=int, help="seconds (default TC_TOKEN_TTL)")
    day = sub.add_parser("day-link", help="a doctor's worklist link for the day (issue 15)")
    day.add_argument("doctor", help="the doctor's id in the registry")
    day.add_argument("--hours", type=int, default=12, help=f"1..{MAX_HOURS}, default 12")
    recordings = sub.add_parser("verify-recordings",
                                help="re-hash a consultation's recording segments (issue 5)")
    recordings.add_argument("consultation")
    rewrap = sub.add_parser("rewrap-recordings",
                            help="rewrap stored segments' data keys under TC_RECORDING_KEY "
                                 "(master key rotation; the media are not rewritten)")
    rewrap.add_argument("consultations", nargs="*", help="only these (default: all)")
    verify = sub.add_parser("verify-chain", help="check a consultation's audit hash chain")
    verify.add_argument("chain", help="consultation id, or 'system'")
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except ValueError as exc:  # a setting out of its range, or TURN/TLS half configured
        print(f"teleconsult: bad configuration: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.node_id, settings.json_logs)
    if args.command == "token":
        print(_tokens(settings).issue(Role(args.role), args.subject, args.consultation, args.ttl))
        return 0
    if args.command == "day-link":
        return asyncio.run(_day_link(settings, args.doctor, args.hours))
    if args.command == "seed-demo":
        asyncio.run(_seed(settings))
        return 0
    if args.command == "verify-recordings":
        from recorder.cli import verify_recordings

        return asyncio.run(verify_recordings(settings, args.consultation))
    if args.command == "rewrap-recordings":
        from recorder.cli import rewrap

        return asyncio.run(rewrap(settings, args.consultations))
    if args.command == "verify-chain":
        return asyncio.run(_verify(settings, args.chain))
    ssl_context = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        try:
            ssl_context = server_context(settings.tls_cert, settings.tls_key)
        except TlsError as exc:
            print(f"teleconsult node not started: {exc}", file=sys.stderr)
            return 2
    if args.demo:
        asyncio.run(_seed(settings))
    web.run_app(create_app(settings), host=settings.host, port=settings.port,
                loop=new_event_loop(settings.event_loop),
                ssl_context=ssl_context, access_log_class=RedactingAccessLogger,
                print=lambda msg: print(f"teleconsult node listening on {settings.public_url}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
