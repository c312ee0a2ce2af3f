"""The node's own TLS (TC_TLS_CERT, TC_TLS_KEY): https for the pages and wss for signaling.

Browsers give a page its camera only in a secure context, so anything but 127.0.0.1 needs https.
Media is not affected: it is DTLS-SRTP between each browser and the node either way.
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsError(Exception):
    """The certificate or key cannot be used; the message names the file and why."""


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context with the certificate chain and key: TLS 1.2 or newer, Python's ciphers."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for name, path in (("TC_TLS_CERT", cert), ("TC_TLS_KEY", key)):
        try:
            path.read_bytes()
        except OSError as exc:
            raise TlsError(f"{name}={path}: cannot read it ({exc.strerror})") from None
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise TlsError(f"TC_TLS_CERT={cert}, TC_TLS_KEY={key}: not a usable PEM certificate "
                       f"chain and matching private key ({exc.reason or exc})") from None
    return context
