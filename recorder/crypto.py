"""Segments encrypted at rest: AES-256-GCM in fixed-size chunks, so a byte range decrypts alone.

File layout, version 2 (every segment stored since envelope encryption; integers little-endian):

    magic "TCREC2" | chunk size (4) | base nonce (12)
    chunk 0 ciphertext+tag | chunk 1 ciphertext+tag | ...

Each segment has its own random data key (DEK). The stored object holds no key at all: the DEK,
wrapped by the deployment's master key (recorder/keys.py), is kept beside it, in the segment's
index row (`wrapped_key`, with the master key's id in `key_id`). So the media object is written
once and never again, which a bucket with Object Lock requires anyway, its SHA-256 in the event
log stays true, and rotating the master key (`python -m server rewrap-recordings`) rewrites a
60-byte row value per segment, not the media. The wrapped DEK is bound to this header (its
random base nonce), so a wrapped key moved onto another row does not open.

Chunk i is sealed with nonce = base nonce with its last 8 bytes XOR i, and with associated data
= header + i + "is last chunk" flag, so chunks cannot be reordered, swapped between files, or
cut off at a chunk boundary without the tag failing. Playback with HTTP Range decrypts only the
chunks the range touches.

Version 1 (segments stored before; still read): "TCREC1" | kid length (1) | kid | chunk size |
base nonce, the chunks sealed directly with the master key named by kid. Those cannot be
rewrapped (their key is the master key): they open as long as that key is in
TC_RECORDING_OLD_KEYS.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .keys import (
    KeyMissing,
    KeyRing,
    WrappedKey,
    WrappedKeyInvalid,
    key_id,
    new_data_key,
    unwrap,
    wrap,
)

__all__ = ["CHUNK", "Decryptor", "Header", "KeyMissing", "KeyRing", "WrappedKey",
           "WrappedKeyInvalid", "key_id", "seal"]

MAGIC1 = b"TCREC1"
MAGIC2 = b"TCREC2"
CHUNK = 64 * 1024
TAG = 16
HEADER2_LEN = len(MAGIC2) + 4 + 12
HEADER_MAX = len(MAGIC1) + 1 + 255 + 16


@dataclass(frozen=True)
class Header:
    version: int
    chunk: int
    nonce: bytes
    raw: bytes
    kid: str | None = None  # version 1 only: the master key that sealed the chunks

    @classmethod
    def parse(cls, data: bytes) -> Header:
        if data.startswith(MAGIC2):
            if len(data) < HEADER2_LEN:
                raise ValueError("encrypted segment is truncated")
            chunk, = struct.unpack_from("<I", data, len(MAGIC2))
            return cls(2, chunk, data[len(MAGIC2) + 4:HEADER2_LEN], data[:HEADER2_LEN])
        if data.startswith(MAGIC1):
            n = data[len(MAGIC1)]
            start = len(MAGIC1) + 1
            kid = data[start:start + n].decode("ascii")
            chunk, = struct.unpack_from("<I", data, start + n)
            nonce = data[start + n + 4:start + n + 16]
            return cls(1, chunk, nonce, data[:start + n + 16], kid)
        raise ValueError("not an encrypted recording segment")

    @classmethod
    def new(cls, chunk: int = CHUNK) -> Header:
        nonce = os.urandom(12)
        return cls(2, chunk, nonce, MAGIC2 + struct.pack("<I", chunk) + nonce)


def _nonce(base: bytes, index: int) -> bytes:
    return base[:4] + (int.from_bytes(base[4:], "little") ^ index).to_bytes(8, "little")


def _aad(header: Header, index: int, last: bool) -> bytes:
    return header.raw + struct.pack("<QB", index, 1 if last else 0)


def seal(src: BinaryIO, size: int, dst: Path, keys: KeyRing) -> WrappedKey:
    """Encrypt `size` bytes read from `src` into `dst` under a new data key (written whole,
    then renamed, so `dst` is never half a file); returns that key wrapped."""
    header = Header.new()
    dek = new_data_key()
    wrapped = wrap(keys, dek, header.raw)
    aes = AESGCM(dek)
    count = max(1, -(-size // header.chunk))
    tmp = dst.with_name(dst.name + ".tmp")
    with open(tmp, "wb") as fout:
        fout.write(header.raw)
        for i in range(count):
            plain = src.read(header.chunk)
            fout.write(aes.encrypt(_nonce(header.nonce, i), plain,
                                   _aad(header, i, i == count - 1)))
        fout.flush()
        os.fsync(fout.fileno())
    tmp.replace(dst)
    return wrapped


def read_header(read_at: ReadAt, stored_size: int) -> Header:
    return Header.parse(read_at(0, min(HEADER_MAX, stored_size)))


def data_key(header: Header, keys: KeyRing, wrapped: WrappedKey | None) -> bytes:
    """The key that seals this segment's chunks: unwrapped (version 2) or the master key
    itself (version 1). KeyMissing, WrappedKeyInvalid when it cannot be had."""
    if header.version == 1:
        assert header.kid is not None
        return keys.get(header.kid)
    if wrapped is None:
        raise WrappedKeyInvalid("the index holds no wrapped data key for this segment")
    return unwrap(keys, wrapped, header.raw)


ReadAt = Callable[[int, int], bytes]  # (offset, length) -> bytes of the stored object


class Decryptor:
    """Plaintext view of one stored segment, read through `read_at` chunk by chunk."""

    def __init__(self, read_at: ReadAt, stored_size: int, keys: KeyRing,
                 wrapped: WrappedKey | None = None) -> None:
        self.header = read_header(read_at, stored_size)
        self._read_at = read_at
        self._aes = AESGCM(data_key(self.header, keys, wrapped))
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
