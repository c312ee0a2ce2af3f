"""A call participant in its own process, for a test to SIGKILL: a browser tab or phone that
dies mid-call, with no close frame on its socket and no DTLS close on its media.

    python -m tests.vanishing_client URL TOKEN

Joins, sends its media (small synthetic VP8 + Opus), gives consent when it is the guardian,
prints `ready` once it receives the other side's video, then waits to be killed.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp

from bench.client import CallClient
from bench.clip import encode_opus, encode_vp8
from core.consent import CURRENT_VERSION
from signaling import ice


async def main(url: str, token: str) -> None:
    ice.use_host_addresses(["127.0.0.1"])
    clips = {"video": encode_vp8(320, 240, fps=30, seconds=2.0, bitrate=300_000),
             "audio": encode_opus(1.0)}
    async with aiohttp.ClientSession() as session:
        client = CallClient(url, token, clips, session)
        joined = await client.connect()
        await client.start_media()
        if joined["you"]["role"] == "guardian":
            await client.send({"type": "consent", "version": CURRENT_VERSION})
        await client.wait_frames("video", 10, timeout=30)
        print("ready", flush=True)
        await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
