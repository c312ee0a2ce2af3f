"""The deployment's master keys and the data keys they wrap (envelope encryption, issue 12).

Every file the recorder writes (a stored segment, a spool file) is encrypted with its own random
32-byte data key (DEK). The DEK is kept only wrapped by a master key (KEK): TC_RECORDING_KEY,
the same on every node, with older master keys in TC_RECORDING_OLD_KEYS. A master key is named by
its id, the first 16 hex digits of its SHA-256, which is what the index and the event log keep.

Wrapping is AES-256-GCM, not AES key wrap (RFC 3394): GCM takes associated data, so a wrapped
DEK is bound to the KEK's id and to the one file it opens (its header, with a random nonce):
a wrapped key copied onto another segment's row is refused by name, not by a failed chunk tag
later. The 96-bit wrap nonce is random; one master key would have to wrap billions of DEKs
before that matters (a segment a minute per participant is about a million a year per site).
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

DEK_BYTES = 32
_WRAP_NONCE = 12
WRAPPED_BYTES = _WRAP_NONCE + DEK_BYTES + 16  # nonce | sealed DEK | GCM tag
_LABEL = b"teleconsult recording data key\0"


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


class KeyMissing(KeyError):
    """This node has no master key with the id a file was wrapped under."""

    def __init__(self, kid: str) -> None:
        super().__init__(
            f"no recording master key with id {kid} on this node: give every node the same "
            "TC_RECORDING_KEY, and keep older master keys in TC_RECORDING_OLD_KEYS until "
            "`python -m server rewrap-recordings` has moved every segment off them")
        self.kid = kid

    def __str__(self) -> str:  # KeyError's own would quote the message
        return str(self.args[0])


class WrappedKeyInvalid(ValueError):
    """The wrapped DEK does not open under its master key: altered, or another file's."""


class KeyRing:
    """The current master key (wraps new data keys) and older ones (still unwrap), by id."""

    def __init__(self, current_b64: str, old_b64: list[str] | None = None) -> None:
        self.current = _decode_key(current_b64)
        self.current_id = key_id(self.current)
        self._keys = {key_id(k): k for k in [_decode_key(o) for o in old_b64 or []]}
        self._keys[self.current_id] = self.current

    def get(self, kid: str) -> bytes:
        try:
            return self._keys[kid]
        except KeyError:
            raise KeyMissing(kid) from None

    def __contains__(self, kid: str) -> bool:
        return kid in self._keys


def _decode_key(raw: str) -> bytes:
    key = base64.b64decode(raw.strip(), validate=True)
    if len(key) != 32:
        raise ValueError("a recording key must be base64 of 32 bytes (AES-256)")
    return key


@dataclass(frozen=True)
class WrappedKey:
    """A DEK sealed under the master key `kek_id`; `text` is how the index keeps it."""

    kek_id: str
    blob: bytes

    @property
    def text(self) -> str:
        return base64.b64encode(self.blob).decode("ascii")

    @classmethod
    def from_text(cls, kek_id: str, text: str) -> WrappedKey:
        return cls(kek_id, base64.b64decode(text, validate=True))


def _aad(kek_id: str, context: bytes) -> bytes:
    return _LABEL + kek_id.encode("ascii") + b"\0" + context


def new_data_key() -> bytes:
    return os.urandom(DEK_BYTES)


def wrap(keys: KeyRing, dek: bytes, context: bytes) -> WrappedKey:
    """Seal `dek` under the current master key, bound to `context` (the file's header)."""
    nonce = os.urandom(_WRAP_NONCE)
    sealed = AESGCM(keys.current).encrypt(nonce, dek, _aad(keys.current_id, context))
    return WrappedKey(keys.current_id, nonce + sealed)


def unwrap(keys: KeyRing, wrapped: WrappedKey, context: bytes) -> bytes:
    """The DEK; KeyMissing without its master key, WrappedKeyInvalid if it does not open."""
    kek = keys.get(wrapped.kek_id)
    if len(wrapped.blob) != WRAPPED_BYTES:
        raise WrappedKeyInvalid(f"a wrapped data key is {WRAPPED_BYTES} bytes, not "
                                f"{len(wrapped.blob)}")
    nonce, sealed = wrapped.blob[:_WRAP_NONCE], wrapped.blob[_WRAP_NONCE:]
    try:
        return AESGCM(kek).decrypt(nonce, sealed, _aad(wrapped.kek_id, context))
    except InvalidTag:
        raise WrappedKeyInvalid(
            f"the data key wrapped under master key {wrapped.kek_id} does not open: it was "
            "altered, or it belongs to another file") from None


def rewrap(keys: KeyRing, wrapped: WrappedKey, context: bytes) -> WrappedKey:
    """The same DEK under the current master key: the file it opens is not touched."""
    return wrap(keys, unwrap(keys, wrapped, context), context)
