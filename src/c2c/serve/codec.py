"""msgpack with numpy arrays, in the wire format of openpi's ``msgpack_numpy`` (never pickle).

An array travels as ``{b"__ndarray__": True, b"data": <raw C-order bytes>, b"dtype": dtype.str, b"shape": [...]}``
and a numpy scalar as ``{b"__npgeneric__": True, b"data": <the Python value>, b"dtype": dtype.str}``. Only plain
numeric dtypes cross the wire (:data:`DTYPES`: bool, (u)int8-64, float16-64, either byte order); object, void,
complex, string and datetime dtypes are refused both ways (a ``np.float64`` scalar is a Python float and travels
as one, as with openpi). Unpacking checks every array before it is built: the dtype string must be on the list (so
``np.dtype`` never parses anything else), the shape a list of non-negative ints, and the byte count exactly
``prod(shape) * itemsize``. Arrays come back as writable, native-endian copies.

Example::

    data = packb({"observation/state": np.zeros(8, np.float32), "prompt": "open the drawer"})
    unpackb(data)["observation/state"]          # array([0., ...], dtype=float32)
"""

from __future__ import annotations

import math
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


def unpackb(data: bytes | bytearray | memoryview) -> Any:
    """msgpack bytes -> Python values with checked numpy arrays; anything malformed is a :class:`ProtocolError`."""
    try:
        return msgpack.unpackb(data, object_hook=_decode, ext_hook=_refuse_extension, raw=False, use_list=True,
                               strict_map_key=True)
    except ProtocolError:
        raise
    except UnicodeDecodeError:
        raise ProtocolError("not valid msgpack: a string is not UTF-8") from None
    except Exception as error:  # noqa: BLE001 - msgpack raises ValueError, TypeError and its own errors
        detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise ProtocolError(f"not valid msgpack ({detail})") from None
