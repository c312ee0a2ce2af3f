"""Envelope encryption of recordings (issue 12): data keys wrapped by the master key, segments
of the first format still read, the spool encrypted as the muxer writes it."""

from __future__ import annotations

import base64
import os
import struct
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from recorder.crypto import HEADER2_LEN, Decryptor, seal
from recorder.keys import KeyMissing, KeyRing, WrappedKey, WrappedKeyInvalid, key_id, rewrap
from recorder.spool_file import SpoolFile
from recorder.webm import SegmentMuxer, probe, salvage

EBML = b"\x1a\x45\xdf\xa3"


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _mux(path: Path, clips, keys: KeyRing | None, seconds: float = 4.0) -> int:
    """A real segment (VP8 + Opus packets, no codec) written by the recorder's muxer."""
    muxer = SegmentMuxer(path, keys=keys)
    video, audio = clips["video"].packets, clips["audio"].packets
    for i in range(int(seconds * 30)):
        muxer.write("video", video[i % len(video)], round(i * 1000 / 30))
        if i % 3 < 2:
            muxer.write("audio", audio[(i * 2 // 3) % len(audio)], round(i * 1000 / 30))
    return muxer.close().size


def _stored(tmp_path: Path, clips, keys: KeyRing, name: str = "a") -> tuple[bytes, bytes,
                                                                          WrappedKey]:
    """(plaintext, stored object, wrapped data key) of one sealed segment."""
    spool = tmp_path / f"{name}.webm"
    _mux(spool, clips, keys)
    with SpoolFile.open(spool, keys) as f:
        plain = f.read()
        f.seek(0)
        wrapped = seal(f, len(plain), tmp_path / f"{name}.enc", keys)
    return plain, (tmp_path / f"{name}.enc").read_bytes(), wrapped


def _open(stored: bytes, keys: KeyRing, wrapped: WrappedKey | None) -> Decryptor:
    return Decryptor(lambda o, n: stored[o:o + n], len(stored), keys, wrapped)


def test_a_segment_opens_with_its_wrapped_key_and_the_object_holds_no_key(tmp_path,
                                                                         clips) -> None:
    keys = KeyRing(_key())
    plain, stored, wrapped = _stored(tmp_path, clips, keys)
    assert plain.startswith(EBML) and len(plain) > 2 * 64 * 1024
    assert wrapped.kek_id == keys.current_id
    assert stored[:6] == b"TCREC2" and len(stored) == HEADER2_LEN + len(plain) + 16 * (
        -(-len(plain) // (64 * 1024)))
    assert wrapped.blob not in stored and keys.current not in stored
    dec = _open(stored, keys, wrapped)
    assert dec.size == len(plain) and b"".join(dec.read()) == plain
    for start, end in ((0, 10), (65530, 65560), (100_000, 140_000), (len(plain) - 7, None)):
        assert b"".join(dec.read(start, end)) == plain[start:end]
    # Every segment has its own data key: the same bytes sealed twice share nothing.
    _, again, other = _stored(tmp_path, clips, keys, "b")
    assert other.blob != wrapped.blob and again[HEADER2_LEN:HEADER2_LEN + 64] != stored[
        HEADER2_LEN:HEADER2_LEN + 64]


def test_an_altered_or_swapped_wrapped_key_is_a_clear_error(tmp_path, clips) -> None:
    keys = KeyRing(_key())
    _, stored, wrapped = _stored(tmp_path, clips, keys)
    _, other_stored, other = _stored(tmp_path, clips, keys, "b")
    for bit in (0, 12 * 8 + 5, len(wrapped.blob) * 8 - 1):  # wrap nonce, sealed DEK, GCM tag
        bad = bytearray(wrapped.blob)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(WrappedKeyInvalid, match=wrapped.kek_id):
            _open(stored, keys, WrappedKey(wrapped.kek_id, bytes(bad)))
    with pytest.raises(WrappedKeyInvalid, match="another file"):  # bound to its own header
        _open(stored, keys, other)
    with pytest.raises(WrappedKeyInvalid, match="no wrapped data key"):
        _open(stored, keys, None)
    with pytest.raises(WrappedKeyInvalid, match="60 bytes"):
        _open(stored, keys, WrappedKey(wrapped.kek_id, wrapped.blob[:40]))
    assert b"".join(_open(other_stored, keys, other).read())  # the right pairs still open


def test_a_node_without_the_master_key_names_the_key_it_needs(tmp_path, clips) -> None:
    keys = KeyRing(_key())
    _, stored, wrapped = _stored(tmp_path, clips, keys)
    with pytest.raises(KeyMissing) as caught:
        _open(stored, KeyRing(_key()), wrapped)
    assert caught.value.kid == keys.current_id
    assert keys.current_id in str(caught.value) and "TC_RECORDING_KEY" in str(caught.value)


def test_rotation_rewraps_the_data_key_and_leaves_the_object_alone(tmp_path, clips) -> None:
    old_b64, new_b64 = _key(), _key()
    old = KeyRing(old_b64)
    plain, stored, wrapped = _stored(tmp_path, clips, old)
    rotated = KeyRing(new_b64, [old_b64])
    assert b"".join(_open(stored, rotated, wrapped).read()) == plain  # old still opens
    header = stored[:HEADER2_LEN]
    moved = rewrap(rotated, wrapped, header)
    assert moved.kek_id == rotated.current_id != wrapped.kek_id
    # The old master key can go: the same object opens under the new one alone.
    assert b"".join(_open(stored, KeyRing(new_b64), moved).read()) == plain
    with pytest.raises(KeyMissing):
        _open(stored, KeyRing(new_b64), wrapped)


def _seal_v1(plain: bytes, key: bytes, chunk: int = 64 * 1024) -> bytes:
    """The first format, written from its description (recorder/crypto.py), not by the code
    under test: chunks sealed directly with the master key the header names."""
    kid = key_id(key).encode()
    nonce = os.urandom(12)
    header = b"TCREC1" + bytes([len(kid)]) + kid + struct.pack("<I", chunk) + nonce
    aes = AESGCM(key)
    count = max(1, -(-len(plain) // chunk))
    out = [header]
    for i in range(count):
        n = nonce[:4] + (int.from_bytes(nonce[4:], "little") ^ i).to_bytes(8, "little")
        out.append(aes.encrypt(n, plain[i * chunk:(i + 1) * chunk],
                               header + struct.pack("<QB", i, 1 if i == count - 1 else 0)))
    return b"".join(out)


def test_segments_of_the_first_format_still_open(tmp_path, clips) -> None:
    old_b64 = _key()
    _mux(tmp_path / "p.webm", clips, None)
    plain = (tmp_path / "p.webm").read_bytes()
    stored = _seal_v1(plain, base64.b64decode(old_b64))
    rotated = KeyRing(_key(), [old_b64])
    dec = _open(stored, rotated, None)
    assert dec.header.version == 1 and b"".join(dec.read()) == plain
    assert b"".join(dec.read(70_000, 70_100)) == plain[70_000:70_100]
    with pytest.raises(KeyMissing):
        _open(stored, KeyRing(_key()), None)
    tampered = bytearray(stored)
    tampered[len(stored) // 2] ^= 1
    with pytest.raises(InvalidTag):
        b"".join(_open(bytes(tampered), rotated, None).read())


def test_the_spool_is_never_plaintext_and_reads_back_when_cut_anywhere(tmp_path,
                                                                       clips) -> None:
    keys = KeyRing(_key())
    path = tmp_path / "guardian-00001-0.webm"
    size = _mux(path, clips, keys)
    raw = path.read_bytes()
    with SpoolFile.open(path, keys) as f:
        assert f.sealed and f.size == size
        plain = f.read()
    (tmp_path / "decrypted.webm").write_bytes(plain)
    assert probe(tmp_path / "decrypted.webm").streams == {"video": 120, "audio": 80}
    assert raw.startswith(b"TCSPL1") and EBML not in raw and b"webm" not in raw
    assert b"V_VP8" in plain and b"V_VP8" not in raw
    _mux(tmp_path / "plain.webm", clips, None)  # the same, unencrypted: same length
    assert len(plain) == (tmp_path / "plain.webm").stat().st_size
    # A killed node leaves the file cut anywhere: the prefix decrypts, and salvage keeps
    # what is readable (recovery), writing the repair encrypted too.
    cut = tmp_path / "doctor-00002-0.webm"
    cut.write_bytes(raw[:len(raw) * 3 // 5 + 7])
    with SpoolFile.open(cut, keys) as f:
        assert plain.startswith(f.read())
    stats = salvage(cut, tmp_path / "repaired.webm", keys)
    assert stats is not None and 40 < stats.video_packets < 120
    assert (tmp_path / "repaired.webm").read_bytes().startswith(b"TCSPL1")
    # Another deployment's node cannot read it, and says which key it lacks.
    with pytest.raises(KeyMissing, match=keys.current_id):
        SpoolFile.open(path, KeyRing(_key()))
    # A spool file from before this format (plaintext) is still recovered.
    assert salvage(tmp_path / "plain.webm", tmp_path / "r2.webm", keys) is not None


def test_the_spool_file_is_a_seekable_file(tmp_path) -> None:
    keys = KeyRing(_key())
    path = tmp_path / "s"
    with SpoolFile.create(path, keys) as f:
        f.write(b"a" * 100)
        f.write(b"b" * 50)
        f.seek(40)
        f.write(b"XYZ")  # what the muxer does at close: sizes written back
        assert f.seek(0, 2) == 150 and f.tell() == 150
        f.seek(-10, 1)
        assert f.read() == b"b" * 10
    with SpoolFile.open(path, keys) as f:
        assert f.read() == b"a" * 40 + b"XYZ" + b"a" * 57 + b"b" * 50
        f.seek(41)
        assert f.read(5) == b"YZaaa"
