"""The node serving https and wss itself (TC_TLS_CERT, TC_TLS_KEY), with a throwaway CA.

The node is a real process (`python -m server run`), so the TLS set-up under test is the one
production runs. Chromium trusts exactly the test server's key
(`--ignore-certificate-errors-spki-list`, not a blanket `ignore_https_errors`); the aiortc doctor
and the health checks trust the test CA.
"""

from __future__ import annotations

import http.client
import ssl
import time
from pathlib import Path

import aiohttp
import pytest

from bench.chromium import launch_chromium, remote_video_progress, wait_for_body_data
from bench.faces import ADULT_A, make_y4m
from core.config import load_settings
from server.tls import server_context

from .node_fixtures import SECRET
from .node_process import NodeProcess, booked_node, free_port
from .tls_certs import make_test_pki

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "https"


@pytest.mark.browser
async def test_guardian_joins_over_https_and_signals_over_wss(tmp_path: Path, clips) -> None:
    pki = make_test_pki(tmp_path / "pki")
    camera = make_y4m(tmp_path / "guardian.y4m", ADULT_A, seconds=4)
    trusted = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=pki.ca))
    async with booked_node(tmp_path / "node", SECRET, ca=pki.ca, TC_TLS_CERT=str(pki.cert),
                           TC_TLS_KEY=str(pki.key)) as booked, \
            aiohttp.ClientSession(connector=trusted) as session, \
            launch_chromium(camera, ARTIFACTS / "guardian", extra_args=[
                f"--ignore-certificate-errors-spki-list={pki.spki_sha256}"]) as browser:
        base = booked.node.url
        assert base.startswith("https://127.0.0.1:")
        page = await browser.new_page("guardian")
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        token = booked.booking.guardian_link.split("#token=")[1]
        await page.goto(f"{base}/call#token={token}")
        assert await page.evaluate("window.isSecureContext && location.protocol") == "https:"
        await page.check("#consent-check")
        await page.click("#join-btn")
        await wait_for_body_data(page, "state", "waiting")

        doctor = booked.client("doctor", clips, session)
        try:
            await doctor.connect()
            await doctor.start_media()
            await doctor.wait_connected(timeout=20)
            await wait_for_body_data(page, "media", "connected", timeout_s=20)
            await remote_video_progress(page, timeout_s=20)  # the doctor's picture, relayed
            await doctor.wait_frames("video", 20, timeout=20)  # and the guardian's camera back
        finally:
            await doctor.close()
        assert sockets and all(u.startswith(f"wss://127.0.0.1:{booked.node.port}/ws?")
                               for u in sockets), sockets


async def test_plain_http_on_the_tls_port_is_refused_at_once(tmp_path: Path) -> None:
    """No page is ever served in the clear, and the client is not left hanging: the TLS handshake
    fails on the plain request and the node closes the connection at once."""
    pki = make_test_pki(tmp_path / "pki")
    async with booked_node(tmp_path / "node", SECRET, ca=pki.ca, TC_TLS_CERT=str(pki.cert),
                           TC_TLS_KEY=str(pki.key)) as booked:
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", booked.node.port, timeout=10)
        try:
            with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
                connection.request("GET", "/healthz")
                connection.getresponse()
        finally:
            connection.close()
        assert time.monotonic() - started < 5, "plain http hung instead of being refused"


@pytest.mark.parametrize("broken, message", [
    ("missing", "TC_TLS_CERT=.*cannot read it"),
    ("garbage", "not a usable PEM certificate chain"),
])
def test_node_refuses_to_start_with_an_unusable_certificate(
        tmp_path: Path, broken: str, message: str) -> None:
    pki = make_test_pki(tmp_path / "pki")
    cert = tmp_path / "nope.pem"
    if broken == "garbage":
        cert.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
    node = NodeProcess(tmp_path / "node", free_port(), SECRET, ca=pki.ca,
                       TC_TLS_CERT=str(cert), TC_TLS_KEY=str(pki.key))
    try:
        with pytest.raises(RuntimeError, match=message) as refused:
            node.start(timeout=30)
    finally:
        node.stop()
    assert "node exited with 2" in str(refused.value)


def test_settings_want_both_tls_files_and_then_make_https_links(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path / "pki")
    for name in ("TC_HOST", "TC_PUBLIC_URL", "TC_TLS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TC_PORT", "8443")
    monkeypatch.setenv("TC_TLS_CERT", str(pki.cert))
    with pytest.raises(ValueError, match="TC_TLS_CERT and TC_TLS_KEY go together"):
        load_settings(data_dir=tmp_path, token_secret=SECRET)
    monkeypatch.setenv("TC_TLS_KEY", str(pki.key))
    settings = load_settings(data_dir=tmp_path, token_secret=SECRET)
    assert settings.public_url == "https://127.0.0.1:8443"
    assert server_context(pki.cert, pki.key).minimum_version == ssl.TLSVersion.TLSv1_2
