"""Segments encrypted at rest: AES-256-GCM in fixed-size chunks, so a byte range decrypts alone.

File layout (all integers little-endian):

    magic "TCREC1" | kid length (1) | kid (ascii) | chunk size (4) | base nonce (12)
    chunk 0 ciphertext+tag | chunk 1 ciphertext+tag | ...

Chunk i is sealed with nonce = base nonce with its last 8 bytes XOR i, and with associated data
= header + i + "is last chunk" flag, so chunks cannot be reordered, swapped between files, or
cut off at a chunk boundary without the tag failing. Playback with HTTP Range decrypts only the
chunks the range touches.

Key rotation: the header names its key by id (the first 16 hex digits of SHA-256 of the key).
Set a new TC_RECORDING_KEY and move the old one into TC_RECORDING_OLD_KEYS (comma-separated):
new segments use the new key, old segments still open with theirs. Re-encrypting old segments
under the new key (then dropping the old key) is a re-write of each file plus an index update.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"TCREC1"
CHUNK = 64 * 1024
TAG = 16


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


class KeyRing:
    """The current key (used to write) and older keys (still accepted to read), by key id."""

    def __init__(self, current_b64: str, old_b64: list[str] | None = None) -> None:
        self.current = _decode_key(current_b64)
        self.current_id = key_id(self.current)
        self._keys = {key_id(k): k for k in [_decode_key(o) for o in old_b64 or []]}
        self._keys[self.current_id] = self.current

    def get(self, kid: str) -> bytes:
        try:
            return self._keys[kid]
        except KeyError:
            raise KeyError(
                f"no recording key with id {kid}: add it to TC_RECORDING_OLD_KEYS") from None


def _decode_key(raw: str) -> bytes:
    key = base64.b64decode(raw.strip(), validate=True)
    if len(key) != 32:
        raise ValueError("a recording key must be base64 of 32 bytes (AES-256)")
    return key


@dataclass(frozen=True)
class Header:
    kid: str
    chunk: int
    nonce: bytes
    raw: bytes

    @classmethod
    def parse(cls, data: bytes) -> Header:
        if not data.startswith(MAGIC):
            raise ValueError("not an encrypted recording segment")
        n = data[len(MAGIC)]
        start = len(MAGIC) + 1
        kid = data[start:start + n].decode("ascii")
        chunk, = struct.unpack_from("<I", data, start + n)
        nonce = data[start + n + 4:start + n + 16]
        return cls(kid, chunk, nonce, data[:start + n + 16])

    @classmethod
    def new(cls, kid: str, chunk: int = CHUNK) -> Header:
        nonce = os.urandom(12)
        raw = MAGIC + bytes([len(kid)]) + kid.encode("ascii") + struct.pack("<I", chunk) + nonce
        return cls(kid, chunk, nonce, raw)


HEADER_MAX = len(MAGIC) + 1 + 255 + 16


def _nonce(base: bytes, index: int) -> bytes:
    return base[:4] + (int.from_bytes(base[4:], "little") ^ index).to_bytes(8, "little")


def _aad(header: Header, index: int, last: bool) -> bytes:
    return header.raw + struct.pack("<QB", index, 1 if last else 0)


def encrypt_file(src: Path, dst: Path, keys: KeyRing) -> None:
    """Encrypt `src` into `dst` (written whole, then renamed, so `dst` is never half a file)."""
    header = Header.new(keys.current_id)
    aes = AESGCM(keys.current)
    size = src.stat().st_size
    count = max(1, -(-size // header.chunk))
    tmp = dst.with_name(dst.name + ".tmp")
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        fout.write(header.raw)
        for i in range(count):
            plain = fin.read(header.chunk)
            fout.write(aes.encrypt(_nonce(header.nonce, i), plain,
                                   _aad(header, i, i == count - 1)))
        fout.flush()
        os.fsync(fout.fileno())
    tmp.replace(dst)


ReadAt = Callable[[int, int], bytes]  # (offset, length) -> bytes of the stored object


class Decryptor:
    """Plaintext view of one stored segment, read through `read_at` chunk by chunk."""

    def __init__(self, read_at: ReadAt, stored_size: int, keys: KeyRing) -> None:
        self.header = Header.parse(read_at(0, min(HEADER_MAX, stored_size)))
        self._read_at = read_at
        self._aes = AESGCM(keys.get(self.header.kid))
        body = stored_size - len(self.header.raw)
        step = self.header.chunk + TAG
        self.chunks = max(1, -(-body // step))
        last = body - (self.chunks - 1) * step - TAG
        if last < 0:
            raise ValueError("encrypted segment is truncated")
        self.size = (self.chunks - 1) * self.header.chunk + last

    def _chunk(self, i: int) -> bytes:
        step = self.header.chunk + TAG
        sealed = self._read_at(len(self.header.raw) + i * step, step)
        return self._aes.decrypt(_nonce(self.header.nonce, i), sealed,
                                 _aad(self.header, i, i == self.chunks - 1))

    def read(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Plaintext bytes [start, end) in pieces; raises InvalidTag if anything was altered."""
        end = self.size if end is None else min(end, self.size)
        chunk = self.header.chunk
        for i in range(start // chunk, -(-end // chunk) if end > start else start // chunk):
            data = self._chunk(i)
            lo = max(start - i * chunk, 0)
            hi = min(end - i * chunk, len(data))
            yield data[lo:hi]
