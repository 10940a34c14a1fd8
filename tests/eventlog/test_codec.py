"""The codec pipeline: round trips (hypothesis), stage flags, and clear decode errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamstate.errors import CodecError
from streamstate.eventlog.codec import FLAG_CIPHER, FLAG_ZSTD, FORMAT_V1, Codec
from streamstate.eventlog.events import (
    Blob,
    CheckpointPut,
    Event,
    FieldVector,
    ItemDeleted,
    ItemPut,
    Write,
    WritesPut,
)


class XorCipher:
    """A toy authenticated cipher: xor with a key and a 1-byte checksum."""

    def __init__(self, key: int) -> None:
        self.key = key

    def encrypt(self, data: bytes) -> bytes:
        body = bytes(b ^ self.key for b in data)
        return bytes([sum(data) % 256]) + body

    def decrypt(self, data: bytes) -> bytes:
        plain = bytes(b ^ self.key for b in data[1:])
        if sum(plain) % 256 != data[0]:
            raise ValueError("authentication failed")
        return plain


typed = st.tuples(st.text(max_size=10), st.binary(max_size=3000))
versions = st.one_of(st.text(max_size=20), st.integers(-(2**40), 2**40), st.floats(allow_nan=False))
events = st.one_of(
    st.builds(
        CheckpointPut,
        ns=st.text(),
        checkpoint_id=st.text(),
        parent_id=st.none() | st.text(),
        checkpoint=typed,
        metadata=typed,
        blobs=st.lists(
            st.builds(Blob, channel=st.text(), version=versions, value=typed), max_size=4
        ),
        filter=st.dictionaries(st.text(), st.text(), max_size=4),
        run_id=st.none() | st.text(),
        created_at=st.floats(0, 2e9),
    ),
    st.builds(
        WritesPut,
        ns=st.text(),
        checkpoint_id=st.text(),
        task_id=st.text(),
        task_path=st.text(),
        writes=st.lists(
            st.builds(Write, idx=st.integers(-4, 100), channel=st.text(), value=typed), max_size=5
        ),
        created_at=st.floats(0, 2e9),
    ),
    st.builds(
        ItemPut,
        namespace=st.lists(st.text(min_size=1), min_size=1, max_size=4).map(tuple),
        key=st.text(),
        value=st.binary(max_size=2000),
        created_at=st.floats(0, 2e9),
        updated_at=st.floats(0, 2e9),
        ttl_minutes=st.none() | st.floats(0, 1e6),
        vectors=st.lists(
            st.builds(FieldVector, path=st.text(), vector=st.lists(st.floats(-1, 1), max_size=8)),
            max_size=2,
        ),
    ),
    st.builds(
        ItemDeleted, namespace=st.lists(st.text(min_size=1), min_size=1).map(tuple), key=st.text()
    ),
)


@settings(max_examples=200, deadline=None)
@given(event=events)
def test_round_trip_plain_and_compressed(event: Event) -> None:
    for codec in (Codec(), Codec.plain(), Codec(compress_threshold=0)):
        assert codec.decode(codec.encode(event), Event) == event


@settings(max_examples=100, deadline=None)
@given(event=events, key=st.integers(1, 255))
def test_round_trip_with_cipher(event: Event, key: int) -> None:
    codec = Codec(cipher=XorCipher(key))
    raw = codec.encode(event)
    assert raw[1] & FLAG_CIPHER
    assert codec.decode(raw, Event) == event


def test_large_payloads_are_compressed_small_ones_not() -> None:
    codec = Codec(compress_threshold=512)
    big = ItemDeleted(namespace=("a",), key="x" * 5000)
    small = ItemDeleted(namespace=("a",), key="x")
    assert codec.encode(big)[:2] == bytes((FORMAT_V1, FLAG_ZSTD))
    assert len(codec.encode(big)) < 200
    assert codec.encode(small)[:2] == bytes((FORMAT_V1, 0))


@pytest.mark.parametrize(
    ("raw", "stage"),
    [
        (b"", "header"),
        (b'{"json": 1}', "header"),
        (bytes((FORMAT_V1, 0x80)) + b"x", "header"),
        (bytes((FORMAT_V1, FLAG_ZSTD)) + b"not zstd", "zstd"),
        (bytes((FORMAT_V1, 0)) + b"\xc1", "msgpack"),
        (bytes((FORMAT_V1, FLAG_CIPHER)) + b"x", "cipher"),
    ],
)
def test_corrupt_entries_raise_codec_error_naming_where(raw: bytes, stage: str) -> None:
    with pytest.raises(CodecError) as info:
        Codec().decode(raw, Event, session="s-1", entry_id="1-0")
    assert info.value.stage == stage
    assert "s-1" in str(info.value) and "1-0" in str(info.value)


def test_tampered_ciphertext_is_refused() -> None:
    codec = Codec(cipher=XorCipher(7))
    raw = bytearray(codec.encode(ItemDeleted(namespace=("a",), key="k")))
    raw[-1] ^= 0xFF
    with pytest.raises(CodecError, match="decryption failed"):
        codec.decode(bytes(raw), Event)
