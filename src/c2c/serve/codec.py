"""msgpack with numpy arrays, in the wire format of openpi's ``msgpack_numpy`` (never pickle).

An array travels as ``{b"__ndarray__": True, b"data": <raw C-order bytes>, b"dtype": dtype.str, b"shape": [...]}``
and a numpy scalar as ``{b"__npgeneric__": True, b"data": <the Python value>, b"dtype": dtype.str}``. Only plain
numeric dtypes cross the wire (:data:`DTYPES`: bool, (u)int8-64, float16-64, either byte order); object, void,
complex, string and datetime dtypes are refused both ways (a ``np.float64`` scalar is a Python float and travels
as one, as with openpi). Unpacking checks every array before it is built: the dtype string must be on the list (so
``np.dtype`` never parses anything else), the shape a list of non-negative ints, and the byte count exactly
``prod(shape) * itemsize``. Arrays come back as writable, native-endian copies.

Bounds (:class:`Limits`): before msgpack builds anything, :func:`check_structure` walks the message's headers and
refuses one that declares more values in all than ``max_values`` (every map key and value, list element, string,
number; a request has a few dozen), a list or map longer than ``max_container_len``, nesting deeper than
``max_depth``, or a string, bin or extension longer than its limit; msgpack's own limits (``max_array_len`` ...)
are set from the same numbers. So a message of N bytes builds at most ``max_values`` Python objects plus its own
bytes: a list header declaring 16 million elements followed by 16 million one-byte empty lists is refused after
reading one header, not decoded into a gigabyte of lists.

Example::

    data = packb({"observation/state": np.zeros(8, np.float32), "prompt": "open the drawer"})
    unpackb(data)["observation/state"]          # array([0., ...], dtype=float32)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from c2c.errors import C2CError

ARRAY_MARK = b"__ndarray__"
SCALAR_MARK = b"__npgeneric__"
DATA, DTYPE, SHAPE = b"data", b"dtype", b"shape"

_CODES = ("b1", "u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f2", "f4", "f8")
# dtype.str of every accepted dtype in every byte order numpy writes ("|" for one-byte types).
DTYPES: frozenset[str] = frozenset(
    f"{order}{code}" for code in _CODES for order in (("|",) if code[1] == "1" else ("<", ">"))
)
MAX_DIMS = 32  # numpy's own limit is 64; no observation has more than a handful


class ProtocolError(C2CError):
    """A message that does not follow the wire format; the text names the offending part."""


@dataclass(frozen=True)
class Limits:
    """What one message may hold (see the module docstring); the defaults fit any observation of a few cameras."""

    max_values: int = 4096  # every value declared in the message, containers included
    max_container_len: int = 1024  # elements of one list, entries of one map
    max_depth: int = 32  # nested maps and lists
    max_str_len: int = 64 * 1024  # bytes of one string (a prompt is at most 4096 characters)
    max_bin_len: int = 16 * 2**20  # bytes of one bin (an image's data); the server sets its message size
    max_ext_len: int = 64  # extension types are refused anyway; this only bounds what is read first

    def msgpack_options(self) -> dict[str, int]:
        """The same bounds as msgpack's own unpacking limits."""
        return {"max_array_len": self.max_container_len, "max_map_len": self.max_container_len,
                "max_str_len": self.max_str_len, "max_bin_len": self.max_bin_len, "max_ext_len": self.max_ext_len}


DEFAULT_LIMITS = Limits()

# Header byte -> (kind, bytes of the length field or fixed payload size); fixed-size kinds listed, the rest in
# check_structure. Kinds: "skip" (payload of the given size), "str"/"bin"/"ext" (length field), "array"/"map".
_SIZED: dict[int, tuple[str, int]] = {
    0xC4: ("bin", 1), 0xC5: ("bin", 2), 0xC6: ("bin", 4),
    0xC7: ("ext", 1), 0xC8: ("ext", 2), 0xC9: ("ext", 4),
    0xCA: ("skip", 4), 0xCB: ("skip", 8), 0xCC: ("skip", 1), 0xCD: ("skip", 2), 0xCE: ("skip", 4),
    0xCF: ("skip", 8), 0xD0: ("skip", 1), 0xD1: ("skip", 2), 0xD2: ("skip", 4), 0xD3: ("skip", 8),
    0xD4: ("skip", 2), 0xD5: ("skip", 3), 0xD6: ("skip", 5), 0xD7: ("skip", 9), 0xD8: ("skip", 17),
    0xD9: ("str", 1), 0xDA: ("str", 2), 0xDB: ("str", 4),
    0xDC: ("array", 2), 0xDD: ("array", 4), 0xDE: ("map", 2), 0xDF: ("map", 4),
}


def check_structure(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> int:
    """Walk the headers of one msgpack message without building anything; the number of values it declares.

    Raises :class:`ProtocolError` (one line) for a message over ``limits``, a truncated message, an invalid header
    byte or bytes after the message. Costs at most ``limits.max_values`` header reads, whatever the message.
    """
    view = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
    size, pos, depth = len(view), 0, 0
    declared = 1  # the root value
    pending = [1]  # values still to read at each open level
    while pending:
        if pending[-1] == 0:
            pending.pop()
            depth -= 1
            continue
        pending[-1] -= 1
        if pos >= size:
            raise ProtocolError(f"not valid msgpack (truncated: {size} bytes end inside a value)")
        byte = view[pos]
        pos += 1
        if byte <= 0x7F or byte >= 0xE0 or byte in (0xC0, 0xC2, 0xC3):  # ints, nil, false, true
            continue
        if 0xA0 <= byte <= 0xBF:
            kind, length = "str", byte & 0x1F
        elif 0x90 <= byte <= 0x9F:
            kind, length = "array", byte & 0x0F
        elif 0x80 <= byte <= 0x8F:
            kind, length = "map", byte & 0x0F
        elif byte in _SIZED:
            kind, field = _SIZED[byte]
            if kind == "skip":
                pos += field
                continue
            if pos + field > size:
                raise ProtocolError(f"not valid msgpack (truncated: {size} bytes end inside a header)")
            length = int.from_bytes(view[pos:pos + field], "big")
            pos += field
        else:
            raise ProtocolError(f"not valid msgpack (byte 0x{byte:02x} at offset {pos - 1} starts no value)")
        if kind in ("array", "map"):
            if length > limits.max_container_len:
                raise ProtocolError(f"a {'list' if kind == 'array' else 'map'} of {length} "
                                    f"{'elements' if kind == 'array' else 'entries'}: at most "
                                    f"{limits.max_container_len} are accepted")
            count = 2 * length if kind == "map" else length
            declared += count
            if declared > limits.max_values:
                raise ProtocolError(f"the message declares more than {limits.max_values} values (a request has a "
                                    f"few dozen)")
            if count > size - pos:
                raise ProtocolError(f"not valid msgpack (truncated: a {kind} of {length} in {size - pos} bytes)")
            if count:
                depth += 1
                if depth > limits.max_depth:
                    raise ProtocolError(f"maps and lists nested deeper than {limits.max_depth} levels")
                pending.append(count)
            continue
        limit = {"str": limits.max_str_len, "bin": limits.max_bin_len, "ext": limits.max_ext_len}[kind]
        if length > limit:
            what = {"str": "a string", "bin": "a bin", "ext": "an extension value"}[kind]
            raise ProtocolError(f"{what} of {length} bytes: at most {limit} are accepted")
        pos += length + (1 if kind == "ext" else 0)  # an ext's type byte follows its length
    if pos > size:
        raise ProtocolError(f"not valid msgpack (truncated: {size} bytes end inside a value)")
    if pos < size:
        raise ProtocolError(f"not valid msgpack ({size - pos} bytes after the message)")
    return declared


def _dtype_name(dtype: np.dtype) -> str:
    return f"{dtype.name} ({dtype.str})"


def _check_dtype(dtype: np.dtype, what: str) -> None:
    if dtype.str not in DTYPES:
        raise ProtocolError(f"{what}: dtype {_dtype_name(dtype)} cannot be sent; accepted: bool, uint8-64, "
                            f"int8-64, float16-64")


def _encode(value: Any) -> Any:
    """msgpack's ``default`` hook: arrays and numpy scalars to their marked maps; anything else is refused."""
    if isinstance(value, np.ndarray):
        _check_dtype(value.dtype, "array")
        return {ARRAY_MARK: True, DATA: value.tobytes(order="C"), DTYPE: value.dtype.str, SHAPE: list(value.shape)}
    if isinstance(value, np.generic):
        _check_dtype(value.dtype, "numpy scalar")
        return {SCALAR_MARK: True, DATA: value.item(), DTYPE: value.dtype.str}
    raise ProtocolError(f"cannot pack a {type(value).__module__}.{type(value).__qualname__} (send numbers, "
                        f"strings, bytes, lists, dicts and numeric numpy arrays)")


def packb(value: Any) -> bytes:
    """``value`` -> msgpack bytes; numpy arrays and scalars as openpi's ``msgpack_numpy`` writes them."""
    try:
        return msgpack.packb(value, default=_encode, use_bin_type=True)
    except ProtocolError:
        raise
    except (TypeError, ValueError, OverflowError) as error:
        raise ProtocolError(f"cannot pack the message: {error}") from None


def _dtype_of(mark: dict[Any, Any], what: str) -> np.dtype:
    name = mark.get(DTYPE)
    if isinstance(name, bytes):
        name = name.decode("ascii", errors="replace")
    if not isinstance(name, str) or name not in DTYPES:
        raise ProtocolError(f"{what}: dtype {name!r} is not accepted (accepted: bool, uint8-64, int8-64, "
                            f"float16-64, as numpy's dtype.str such as '|u1' or '<f4')")
    return np.dtype(name)


def _array(mark: dict[Any, Any]) -> np.ndarray:
    dtype = _dtype_of(mark, "array")
    shape = mark.get(SHAPE)
    if (not isinstance(shape, (list, tuple)) or len(shape) > MAX_DIMS
            or not all(type(n) is int and n >= 0 for n in shape)):
        raise ProtocolError(f"array: shape must be a list of at most {MAX_DIMS} non-negative integers, got {shape!r}")
    data = mark.get(DATA)
    if not isinstance(data, (bytes, bytearray)):
        raise ProtocolError(f"array: data must be bytes, got {type(data).__name__}")
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise ProtocolError(f"array: shape {list(shape)} of {dtype.name} needs {expected} bytes, got {len(data)}")
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def _scalar(mark: dict[Any, Any]) -> np.generic:
    dtype = _dtype_of(mark, "numpy scalar")
    data = mark.get(DATA)
    kinds = {"b": (bool,), "u": (int,), "i": (int,), "f": (float, int)}[dtype.kind]
    if type(data) not in kinds:
        raise ProtocolError(f"numpy scalar: a {dtype.name} needs a {kinds[0].__name__} value, got "
                            f"{type(data).__name__}")
    if dtype.kind in "ui" and not np.iinfo(dtype).min <= data <= np.iinfo(dtype).max:
        raise ProtocolError(f"numpy scalar: {data} is out of the range of {dtype.name}")
    return dtype.newbyteorder("=").type(data)


def _decode(mark: dict[Any, Any]) -> Any:
    """msgpack's ``object_hook``: marked maps back to arrays and scalars, checked; other maps unchanged."""
    if ARRAY_MARK in mark:
        return _array(mark)
    if SCALAR_MARK in mark:
        return _scalar(mark)
    return mark


def _refuse_extension(code: int, data: bytes) -> Any:
    raise ProtocolError(f"msgpack extension type {code} is not accepted")


def unpackb(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> Any:
    """msgpack bytes -> Python values with checked numpy arrays; anything malformed or over ``limits`` is a
    :class:`ProtocolError` (checked by :func:`check_structure` before msgpack builds anything)."""
    check_structure(data, limits)
    try:
        return msgpack.unpackb(data, object_hook=_decode, ext_hook=_refuse_extension, raw=False, use_list=True,
                               strict_map_key=True, **limits.msgpack_options())
    except ProtocolError:
        raise
    except UnicodeDecodeError:
        raise ProtocolError("not valid msgpack: a string is not UTF-8") from None
    except Exception as error:  # noqa: BLE001 - msgpack raises ValueError, TypeError and its own errors
        detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise ProtocolError(f"not valid msgpack ({detail})") from None
