"""The wire codec of `c2c serve`: openpi's msgpack-numpy format, every accepted dtype, and what is refused."""

from __future__ import annotations

import time

import msgpack
import numpy as np
import pytest

from c2c.serve.codec import DTYPES, Limits, ProtocolError, check_structure, packb, unpackb

ACCEPTED = [np.bool_, np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64,
            np.float16, np.float32, np.float64]


def _array_map(data: bytes, dtype: str, shape) -> bytes:
    return msgpack.packb({"x": {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape}},
                         use_bin_type=True)


@pytest.mark.parametrize("dtype", ACCEPTED, ids=lambda d: np.dtype(d).name)
def test_every_accepted_dtype_round_trips_as_array_and_scalar(dtype):
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 100, (2, 3, 4))
    array = (values > 50 if dtype is np.bool_ else values).astype(dtype)
    back = unpackb(packb({"a": array, "empty": np.zeros((0, 3), dtype), "s": dtype(1)}))
    assert back["a"].dtype == np.dtype(dtype) and back["a"].shape == (2, 3, 4)
    np.testing.assert_array_equal(back["a"], array)
    assert back["a"].flags.writeable and back["empty"].shape == (0, 3)
    if dtype is np.float64:  # a subclass of Python's float: msgpack writes it as a plain float, as openpi does
        assert type(back["s"]) is float and back["s"] == 1
    else:
        assert isinstance(back["s"], np.generic) and back["s"].dtype == np.dtype(dtype) and back["s"] == 1


def test_nested_containers_strings_bytes_and_other_byte_order():
    message = {"prompt": "öffne die Schublade", "raw": b"\x00\xff", "n": 3, "f": 0.5, "none": None,
               "nested": {"list": [np.arange(3, dtype=np.int16), {"deep": np.float32(2.5)}], "flag": True},
               "big_endian": np.arange(4, dtype=">f4"), "strided": np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2]}
    back = unpackb(packb(message))
    assert back["prompt"] == message["prompt"] and back["raw"] == b"\x00\xff" and back["none"] is None
    np.testing.assert_array_equal(back["nested"]["list"][0], np.arange(3))
    assert back["nested"]["list"][1]["deep"] == np.float32(2.5) and back["nested"]["flag"] is True
    assert back["big_endian"].dtype == np.dtype("<f4") and back["big_endian"].tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(back["strided"], message["strided"])


def test_the_format_is_openpis():
    packed = msgpack.unpackb(packb({"a": np.arange(3, dtype=np.uint8), "s": np.float32(1.5)}), raw=False)
    assert packed["a"] == {b"__ndarray__": True, b"data": b"\x00\x01\x02", b"dtype": "|u1", b"shape": [3]}
    assert packed["s"] == {b"__npgeneric__": True, b"data": 1.5, b"dtype": "<f4"}
    assert DTYPES >= {"|b1", "|u1", "<f4", ">i8"} and not DTYPES & {"|O", "<c8", "|V4", "<U3", "<M8"}


@pytest.mark.parametrize("value", [np.array([object()], dtype=object), np.zeros(2, np.complex64),
                                   np.zeros(2, dtype=[("a", "<f4")]), np.array(["ab"]), np.complex128(1j),
                                   np.datetime64("2024-01-01"), object()],
                         ids=["object", "complex", "void", "unicode", "complex-scalar", "datetime", "python-object"])
def test_packing_refuses_other_dtypes(value):
    with pytest.raises(ProtocolError, match="cannot"):
        packb({"x": value})


@pytest.mark.parametrize("message, match", [
    (_array_map(b"\x00" * 8, "|O", [1]), "dtype '|O' is not accepted"),
    (_array_map(b"\x00" * 8, "<c8", [1]), "dtype '<c8' is not accepted"),
    (_array_map(b"\x00" * 4, "|V4", [1]), "dtype '|V4' is not accepted"),
    (_array_map(b"\x00" * 4, "[('a', '<f4')]", [1]), "is not accepted"),
    (_array_map(b"\x00" * 4, 7, [1]), "dtype 7 is not accepted"),
    (_array_map(b"\x00" * 4, "<f4", [-1]), "non-negative integers, got \\[-1\\]"),
    (_array_map(b"\x00" * 4, "<f4", "4"), "shape must be a list"),
    (_array_map(b"\x00" * 4, "<f4", [1.0]), "shape must be a list"),
    (_array_map(b"\x00" * 4, "<f4", [True]), "shape must be a list"),
    (_array_map(b"\x00" * 4, "<f4", [1] * 40), "at most 32"),
    (_array_map(b"\x00" * 4, "<f4", [2]), "needs 8 bytes, got 4"),
    (_array_map(b"\x00" * 4, "<f4", [2**40, 2**40]), "bytes, got 4"),
    (_array_map("text", "|u1", [4]), "data must be bytes"),
    (msgpack.packb({"s": {b"__npgeneric__": True, b"data": 300, b"dtype": "|u1"}}), "out of the range of uint8"),
    (msgpack.packb({"s": {b"__npgeneric__": True, b"data": "1", b"dtype": "<f4"}}), "needs a float value"),
    (msgpack.packb({"s": {b"__npgeneric__": True, b"data": 1, b"dtype": "<c8"}}), "not accepted"),
    (b"\xc1", "not valid msgpack"),
    (b"\x92\x01", "not valid msgpack"),
    (msgpack.packb(msgpack.ExtType(5, b"x")), "extension type 5"),
    (b"\xa2\xff\xfe", "not UTF-8"),
    (msgpack.packb({1: 2}), "not valid msgpack"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_unpacking_refuses_malformed_messages(message, match):
    with pytest.raises(ProtocolError, match=match):
        unpackb(message)


def test_pickle_is_never_used(monkeypatch):
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "dumps", refuse)
    message = packb({"a": np.arange(6, dtype=np.float32).reshape(2, 3)})
    assert unpackb(message)["a"].shape == (2, 3)


def _amplification(elements: int = 16_000_000) -> bytes:
    """A list header declaring ``elements`` elements, then that many one-byte empty lists (16 MB on the wire)."""
    return b"\xdd" + elements.to_bytes(4, "big") + b"\x90" * elements


@pytest.mark.parametrize("message, match", [
    (_amplification(), "a list of 16000000 elements: at most 1024 are accepted"),
    (msgpack.packb([[]] * 1024 * 8), "at most 1024"),
    (msgpack.packb([[[]] * 1000] * 5), "declares more than 4096 values"),
    (msgpack.packb({str(i): [None] * 1000 for i in range(5)}), "declares more than 4096 values"),
    (b"\x91" * 40 + b"\x90", "nested deeper than 32 levels"),
    (msgpack.packb("x" * 70_000), "a string of 70000 bytes"),
    (msgpack.packb(b"x" * 100), "a bin of 100 bytes: at most 64"),
    (msgpack.packb(msgpack.ExtType(3, b"x" * 100)), "an extension value of 100 bytes"),
    (b"\xdc\x00\x10" + b"\x90" * 10, "truncated"),
    (msgpack.packb(1) + b"\x00", "1 bytes after the message"),
    (b"\xdb\x00\x00", "truncated"),
])
def test_messages_over_the_limits_are_refused_before_anything_is_built(message, match):
    limits = Limits(max_bin_len=64)
    with pytest.raises(ProtocolError, match=match):
        check_structure(message, limits)
    with pytest.raises(ProtocolError, match=match):
        unpackb(message, limits)


def test_the_amplification_message_is_refused_at_once():
    message = _amplification()
    started = time.perf_counter()
    with pytest.raises(ProtocolError, match="at most 1024"):
        unpackb(message)
    assert time.perf_counter() - started < 0.1  # one header read; decoding it took seconds and a gigabyte
    assert check_structure(msgpack.packb([[None] * 1000] * 4)) == 4005  # within the limits: accepted


def test_a_real_request_is_within_the_limits():
    request = {"observation/image": np.zeros((224, 224, 3), np.uint8),
               "observation/wrist_image": np.zeros((224, 224, 3), np.uint8),
               "observation/state": [0.5] * 8, "prompt": "p" * 4096, "return_plan": False}
    assert check_structure(packb(request)) < 100
    assert unpackb(packb(request))["observation/image"].shape == (224, 224, 3)
    memory = memoryview(packb(request))
    assert unpackb(memory)["observation/state"] == [0.5] * 8
