"""The spool encrypted as it is written: an open segment is never plaintext on disk.

The muxer (PyAV) writes a segment through a Python file object while it is open, for up to
TC_RECORDING_SEGMENT_S, and the file stays until the segment is stored and indexed; a killed
node leaves it for recovery. That object is `SpoolFile`: AES-256-CTR under a data key of its own,
wrapped by the master key in the file's header, so recovery on the restarted node (or with the
same TC_RECORDING_KEY) reads it back without any key but the deployment's.

    magic "TCSPL1" | IV (16) | master key id length (1) | master key id | wrapped data key (60)
    AES-256-CTR(data key, IV) of the plaintext, byte for byte

CTR and not the stored segments' chunked GCM because the file must stay readable when cut
anywhere (a killed process), and because the muxer writes at any offset: it seeks back at the
end to fill in sizes and the duration (measured: about 4 writes a second, one seek back, at
close). Rewriting those few header bytes reuses their keystream, which tells someone holding
both versions of the file the XOR of a placeholder and a size; no media byte is ever rewritten.
The spool has no integrity tag: it lives minutes, on the node's own disk, and what is stored
from it is sealed (GCM) and hashed into the event log.

A file without the magic is read as plaintext: a spool file left by a node from before this
format, recovered after the upgrade.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .keys import WRAPPED_BYTES, KeyRing, WrappedKey, new_data_key, unwrap, wrap

MAGIC = b"TCSPL1"
_IV = 16


def _header(iv: bytes, wrapped: WrappedKey) -> bytes:
    kid = wrapped.kek_id.encode("ascii")
    return MAGIC + iv + bytes([len(kid)]) + kid + wrapped.blob


class SpoolFile(io.RawIOBase):
    """A seekable binary file whose bytes on disk are encrypted; offsets are the plaintext's.

    `create` makes a new one (header written at once, so a kill leaves a readable file); `open`
    reads one, sealed or (an old spool file) plain."""

    def __init__(self, f: io.BufferedRandom | io.BufferedReader, header_len: int,
                 dek: bytes | None, iv: bytes) -> None:
        super().__init__()
        self._f = f
        self._base = header_len
        self._dek = dek
        self._iv = int.from_bytes(iv, "big") if iv else 0
        self._pos = 0

    @classmethod
    def create(cls, path: Path, keys: KeyRing) -> SpoolFile:
        iv = os.urandom(_IV)
        dek = new_data_key()
        header = _header(iv, wrap(keys, dek, MAGIC + iv))
        f = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600), "w+b")
        f.write(header)
        f.flush()
        return cls(f, len(header), dek, iv)

    @classmethod
    def open(cls, path: Path, keys: KeyRing) -> SpoolFile:
        """KeyMissing when the master key it was written under is not here; ValueError for a
        header cut short."""
        f = open(path, "rb")
        try:
            head = f.read(len(MAGIC) + _IV + 1 + 255 + WRAPPED_BYTES)
            if not head.startswith(MAGIC):
                return cls(f, 0, None, b"")
            iv = head[len(MAGIC):len(MAGIC) + _IV]
            at = len(MAGIC) + _IV
            if len(head) <= at:
                raise ValueError("spool file header is truncated")
            n = head[at]
            kid = head[at + 1:at + 1 + n].decode("ascii")
            blob = head[at + 1 + n:at + 1 + n + WRAPPED_BYTES]
            if len(blob) != WRAPPED_BYTES:
                raise ValueError("spool file header is truncated")
            dek = unwrap(keys, WrappedKey(kid, blob), MAGIC + iv)
            return cls(f, at + 1 + n + WRAPPED_BYTES, dek, iv)
        except BaseException:
            f.close()
            raise

    @property
    def sealed(self) -> bool:
        return self._dek is not None

    @property
    def size(self) -> int:
        """Plaintext bytes in the file."""
        return max(0, os.fstat(self._f.fileno()).st_size - self._base)

    def _xor(self, data: bytes, pos: int) -> bytes:
        if self._dek is None:
            return data
        block, skip = divmod(pos, 16)
        counter = ((self._iv + block) % (1 << 128)).to_bytes(16, "big")
        ctx = Cipher(algorithms.AES(self._dek), modes.CTR(counter)).encryptor()
        if skip:
            ctx.update(bytes(skip))
        return ctx.update(data)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return self._f.writable()

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += self.size
        if offset < 0:
            raise ValueError("negative seek position")
        self._pos = offset
        return offset

    def read(self, size: int = -1) -> bytes:
        self._f.seek(self._base + self._pos)
        data = self._f.read() if size is None or size < 0 else self._f.read(size)
        plain = self._xor(data, self._pos)
        self._pos += len(data)
        return plain

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    def write(self, data) -> int:  # type: ignore[no-untyped-def]
        data = bytes(data)
        self._f.seek(self._base + self._pos)
        self._f.write(self._xor(data, self._pos))
        self._f.flush()  # to the OS at once: a killed process loses nothing written
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


def spool_size(path: Path, keys: KeyRing) -> int:
    with SpoolFile.open(path, keys) as f:
        return f.size
