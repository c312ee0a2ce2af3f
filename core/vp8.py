"""What the node reads of a VP8 frame itself: whether it is a key frame (the relay's key-frame
handling and the recorder's segment starts). The payload is otherwise passed on untouched."""


def is_vp8_keyframe(data: bytes) -> bool:
    """VP8 frame tag: the low bit of the first byte is 0 for a key frame (RFC 6386 §9.1)."""
    return bool(data) and not (data[0] & 0x01)
