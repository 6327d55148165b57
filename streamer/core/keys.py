"""8-byte keys of ids (event ids, user ids) kept side by side in flat buffers, and finding one."""

from __future__ import annotations

from hashlib import blake2b

KEY_BYTES = 8  # bytes of a key: the first 8 bytes of the id's BLAKE2b digest


def key_of(text: str) -> bytes:
    """The key of an id: the first `KEY_BYTES` bytes of its BLAKE2b digest."""
    return blake2b(text.encode(), digest_size=KEY_BYTES).digest()


def key_index(keys: bytes | bytearray, key: bytes) -> int:
    """The position of `key` among the keys laid end to end in `keys`, or -1 (a match must start
    on a key boundary: the bytes of two neighbours can spell another key)."""
    at = keys.find(key)
    while at >= 0:
        if not at % KEY_BYTES:
            return at // KEY_BYTES
        at = keys.find(key, at - at % KEY_BYTES + KEY_BYTES)
    return -1
