"""The face workers log as their node does (issue 17, finding 8): one JSON object a line, warnings
included. Pillow's DecompressionBombWarning came out of a worker as two lines of plain text in the
middle of the node's JSON log.

The pool runs in a child Python whose stderr the test reads: the forkserver, and so every worker,
inherits the stderr of the process that first starts it, which in pytest would be whichever test
came first.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A real pool with the node's log settings: a 20 KB PNG of 13000x13000 (Pillow warns when it
# reads the header; the worker then refuses it), a stray warning and a stray log line.
SCRIPT = """
import asyncio, logging, warnings
from core.config.photos import PhotoLimits
from identity.faces.pool import FacePool
from core.logs import LogSettings
from tests.hostile_images import blank_png

async def main():
    pool = FacePool(1, LogSettings("INFO", "node-logs"))
    try:
        result = await pool.enroll(blank_png(13000, 13000), 80, PhotoLimits())
        await pool.run(warnings.warn, "a stray warning")
        await pool.run(logging.getLogger("stray").warning, "a stray log line")
        print(result.error)
    finally:
        pool.close()

asyncio.run(main())
"""


async def test_face_worker_warnings_and_logs_are_json_lines() -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRIPT, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(child.communicate(), timeout=120)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert child.returncode == 0, err.decode()
    assert out.decode().split() == ["image_too_large"]
    lines = [line for line in err.decode().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\nstderr:\n{err.decode()}") from None
    assert all(r["node"] == "node-logs" and r["at"] and r["level"] for r in records), records
    warned = [r for r in records if r["logger"] == "py.warnings"]
    assert any("DecompressionBombWarning" in r["msg"] for r in warned), records
    assert any("a stray warning" in r["msg"] for r in warned), records
    assert {"logger": "stray", "level": "warning", "msg": "a stray log line"}.items() <= next(
        r for r in records if r["logger"] == "stray").items()
