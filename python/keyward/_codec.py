"""The payload encoding: bincode 2.0.1 through serde, standard configuration, in pure Python.

This module owns the byte rules and nothing else; :mod:`keyward.messages` says which types are made of
what. The rules (``bincode/src/features/serde/ser.rs`` and ``src/enc/impls.rs`` of bincode 2.0.1):

- ``u8`` is one raw byte; ``bool`` one byte, 0 or 1 (anything else is refused);
- every wider integer (``u16`` … ``u64``, ``usize`` lengths) is a varint: a value up to 250 is one byte;
  otherwise a marker ``251``/``252``/``253``/``254`` and the value as a little-endian ``u16``/``u32``/
  ``u64``/``u128``. A decoder takes any marker up to the type's width (``251`` for a value below 251 too),
  and refuses a wider one;
- signed integers are zig-zag encoded (0, -1, 1, -2 … as 0, 1, 2, 3 …), then as above;
- ``f64`` is 8 raw little-endian bytes;
- a string or byte string is a varint length and the bytes (strings are UTF-8, checked);
- ``Option`` is a tag byte, 0 (``None``) or 1 followed by the value;
- a sequence or map is a varint count, then the elements (map: key, value, key, value …);
- a struct or tuple is its fields one after another, with no names and no count; unit is nothing;
- an enum is its variant index as a varint ``u32``, then the variant's fields.

Decoding is bounded: a length or count is checked against the bytes that are left before anything is
built, and trailing bytes after a message are an error, as the Rust side refuses them.

The descriptors below (:class:`WireType` and its kinds) turn Python values into those bytes and back, and
into the JSON shape ``serde_json`` gives the same Rust values (for the test vectors): a struct is an object
of its fields, a unit variant its name as a string, any other variant ``{"Name": value}``.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Type

from .errors import ProtocolError

__all__ = ["Writer", "Reader", "HEADER_LEN", "MAX_REPLY", "MAX_REQUEST", "frame"]

#: Bytes in a frame's length header (a big-endian u32 counting the payload only).
HEADER_LEN = 4
#: The largest reply payload a client accepts (as the Rust client: 16 MiB).
MAX_REPLY = 16 * 1024 * 1024
#: The largest request payload a daemon accepts by default (64 KiB).
MAX_REQUEST = 64 * 1024

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")
_BE32 = struct.Struct(">I")


def frame(payload: bytes) -> bytes:
    """The frame holding ``payload``: its length as a big-endian u32, then the payload."""
    return _BE32.pack(len(payload)) + payload


class Writer:
    """Appends bincode-encoded values to a buffer."""

    __slots__ = ("out",)

    def __init__(self) -> None:
        self.out = bytearray()

    def getvalue(self) -> bytes:
        return bytes(self.out)

    def u8(self, value: int) -> None:
        if not 0 <= value <= 0xFF:
            raise ValueError(f"{value} does not fit in a u8")
        self.out.append(value)

    def boolean(self, value: bool) -> None:
        self.out.append(1 if value else 0)

    def uint(self, value: int, bits: int = 64) -> None:
        """A varint of an unsigned integer of ``bits`` bits (16, 32, 64 or 128)."""
        if not 0 <= value < (1 << bits):
            raise ValueError(f"{value} does not fit in a u{bits}")
        out = self.out
        if value <= 250:
            out.append(value)
        elif value <= 0xFFFF:
            out.append(251)
            out += _U16.pack(value)
        elif value <= 0xFFFF_FFFF:
            out.append(252)
            out += _U32.pack(value)
        elif value <= 0xFFFF_FFFF_FFFF_FFFF:
            out.append(253)
            out += _U64.pack(value)
        else:
            out.append(254)
            out += value.to_bytes(16, "little")

    def sint(self, value: int, bits: int = 64) -> None:
        """A zig-zag varint of a signed integer of ``bits`` bits."""
        limit = 1 << (bits - 1)
        if not -limit <= value < limit:
            raise ValueError(f"{value} does not fit in an i{bits}")
        self.uint(value * 2 if value >= 0 else -value * 2 - 1, bits)

    def f64(self, value: float) -> None:
        self.out += _F64.pack(value)

    def string(self, value: str) -> None:
        self.blob(value.encode("utf-8"))

    def blob(self, value: bytes) -> None:
        self.uint(len(value))
        self.out += value

    def raw(self, value: bytes) -> None:
        """Bytes already encoded."""
        self.out += value


class Reader:
    """Reads bincode-encoded values from ``data[pos:end]``. Running out of bytes is a
    :class:`~keyward.errors.ProtocolError`, as is anything the Rust decoder refuses."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: Optional[int] = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def _take(self, n: int) -> bytes:
        start = self.pos
        stop = start + n
        if stop > self.end:
            raise ProtocolError("unexpected end of a message")
        self.pos = stop
        return self.data[start:stop]

    def u8(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise ProtocolError("unexpected end of a message")
        self.pos = pos + 1
        return self.data[pos]

    def boolean(self) -> bool:
        byte = self.u8()
        if byte > 1:
            raise ProtocolError(f"invalid boolean byte {byte}")
        return byte == 1

    def option(self) -> bool:
        """An ``Option``'s tag: whether a value follows."""
        byte = self.u8()
        if byte > 1:
            raise ProtocolError(f"invalid Option tag {byte}")
        return byte == 1

    def uint(self, bits: int = 64) -> int:
        pos = self.pos
        if pos >= self.end:
            raise ProtocolError("unexpected end of a message")
        first = self.data[pos]
        if first <= 250:
            self.pos = pos + 1
            return first
        self.pos = pos + 1
        if first == 251:
            return int(_U16.unpack(self._take(2))[0])
        if first == 252 and bits >= 32:
            return int(_U32.unpack(self._take(4))[0])
        if first == 253 and bits >= 64:
            return int(_U64.unpack(self._take(8))[0])
        if first == 254 and bits >= 128:
            return int.from_bytes(self._take(16), "little")
        raise ProtocolError(f"invalid varint marker {first} for a u{bits}")

    def sint(self, bits: int = 64) -> int:
        value = self.uint(bits)
        return value >> 1 if value & 1 == 0 else -(value >> 1) - 1

    def f64(self) -> float:
        return float(_F64.unpack(self._take(8))[0])

    def length(self) -> int:
        """A length or count, checked against what is left (every element takes at least a byte)."""
        n = self.uint(64)
        if n > self.end - self.pos:
            raise ProtocolError(f"a length of {n} exceeds the {self.end - self.pos} bytes left")
        return n

    def blob(self) -> bytes:
        return self._take(self.length())

    def string(self) -> str:
        raw = self.blob()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ProtocolError(f"a string is not UTF-8: {error}") from None

    def finish(self) -> None:
        if self.pos != self.end:
            raise ProtocolError(f"{self.end - self.pos} unexpected bytes after the message")


# --- Descriptors -----------------------------------------------------------------------------------


class WireType:
    """How one Rust type is encoded, decoded, and shown as serde JSON."""

    def encode(self, w: Writer, value: Any) -> None:
        raise NotImplementedError

    def decode(self, r: Reader) -> Any:
        raise NotImplementedError

    def to_json(self, value: Any, expose: bool) -> Any:
        raise NotImplementedError

    def from_json(self, value: Any) -> Any:
        raise NotImplementedError


def _expect(value: Any, kind: Type[Any], what: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"expected {what}, got {type(value).__name__}")
    return value


class UInt(WireType):
    def __init__(self, bits: int) -> None:
        self.bits = bits

    def encode(self, w: Writer, value: Any) -> None:
        w.uint(_expect(value, int, f"a u{self.bits}"), self.bits)

    def decode(self, r: Reader) -> Any:
        return r.uint(self.bits)

    def to_json(self, value: Any, expose: bool) -> Any:
        return value

    def from_json(self, value: Any) -> Any:
        return _expect(value, int, f"a u{self.bits}")


class UIntKey(UInt):
    """An unsigned integer as a map's key (``BTreeMap<u16, _>``): a varint on the wire like any ``u16``, but
    a decimal string in serde JSON, whose object keys are strings (``{"200": 12}``)."""

    def to_json(self, value: Any, expose: bool) -> Any:
        return str(_expect(value, int, f"a u{self.bits}"))

    def from_json(self, value: Any) -> Any:
        text = _expect(value, str, f"a u{self.bits} key (a decimal string)")
        if not (text.isascii() and text.isdigit()) or int(text) >= 1 << self.bits:
            raise ValueError(f"{text!r} is not a u{self.bits} key")
        return int(text)


class SInt(WireType):
    def __init__(self, bits: int) -> None:
        self.bits = bits

    def encode(self, w: Writer, value: Any) -> None:
        w.sint(_expect(value, int, f"an i{self.bits}"), self.bits)

    def decode(self, r: Reader) -> Any:
        return r.sint(self.bits)

    def to_json(self, value: Any, expose: bool) -> Any:
        return value

    def from_json(self, value: Any) -> Any:
        return _expect(value, int, f"an i{self.bits}")


class U8(UInt):
    """A ``u8``: one raw byte, not a varint."""

    def __init__(self) -> None:
        super().__init__(8)

    def encode(self, w: Writer, value: Any) -> None:
        w.u8(_expect(value, int, "a u8"))

    def decode(self, r: Reader) -> Any:
        return r.u8()


class Bool(WireType):
    def encode(self, w: Writer, value: Any) -> None:
        w.boolean(_expect(value, bool, "a bool"))

    def decode(self, r: Reader) -> Any:
        return r.boolean()

    def to_json(self, value: Any, expose: bool) -> Any:
        return value

    def from_json(self, value: Any) -> Any:
        return _expect(value, bool, "a bool")


class F64(WireType):
    def encode(self, w: Writer, value: Any) -> None:
        w.f64(float(value))

    def decode(self, r: Reader) -> Any:
        return r.f64()

    def to_json(self, value: Any, expose: bool) -> Any:
        # serde_json writes a non-finite float as null.
        return value if math.isfinite(value) else None

    def from_json(self, value: Any) -> Any:
        # The one non-finite float the protocol sends is a latency histogram's last bound, +inf.
        return math.inf if value is None else float(value)


class Str(WireType):
    def encode(self, w: Writer, value: Any) -> None:
        w.string(_expect(value, str, "a str"))

    def decode(self, r: Reader) -> Any:
        return r.string()

    def to_json(self, value: Any, expose: bool) -> Any:
        return value

    def from_json(self, value: Any) -> Any:
        return _expect(value, str, "a str")


class Bytes(WireType):
    def encode(self, w: Writer, value: Any) -> None:
        w.blob(bytes(value))

    def decode(self, r: Reader) -> Any:
        return r.blob()

    def to_json(self, value: Any, expose: bool) -> Any:
        return list(value)

    def from_json(self, value: Any) -> Any:
        return bytes(value)


class Opt(WireType):
    def __init__(self, inner: WireType) -> None:
        self.inner = inner

    def encode(self, w: Writer, value: Any) -> None:
        if value is None:
            w.out.append(0)
        else:
            w.out.append(1)
            self.inner.encode(w, value)

    def decode(self, r: Reader) -> Any:
        return self.inner.decode(r) if r.option() else None

    def to_json(self, value: Any, expose: bool) -> Any:
        return None if value is None else self.inner.to_json(value, expose)

    def from_json(self, value: Any) -> Any:
        return None if value is None else self.inner.from_json(value)


class Seq(WireType):
    """A ``Vec<T>``: a Python list (any sequence when encoding)."""

    def __init__(self, inner: WireType) -> None:
        self.inner = inner

    def encode(self, w: Writer, value: Any) -> None:
        if isinstance(value, (str, bytes)):
            raise TypeError("expected a sequence, got a string")
        items = list(value)
        w.uint(len(items))
        for item in items:
            self.inner.encode(w, item)

    def decode(self, r: Reader) -> Any:
        inner = self.inner
        return [inner.decode(r) for _ in range(r.length())]

    def to_json(self, value: Any, expose: bool) -> Any:
        return [self.inner.to_json(item, expose) for item in value]

    def from_json(self, value: Any) -> Any:
        return [self.inner.from_json(item) for item in _expect(value, list, "a list")]


class Tup(WireType):
    """A tuple: its fields one after another; a JSON array."""

    def __init__(self, *items: WireType) -> None:
        self.items = items

    def encode(self, w: Writer, value: Any) -> None:
        if len(value) != len(self.items):
            raise TypeError(f"expected a {len(self.items)}-tuple")
        for kind, item in zip(self.items, value):
            kind.encode(w, item)

    def decode(self, r: Reader) -> Any:
        return tuple(kind.decode(r) for kind in self.items)

    def to_json(self, value: Any, expose: bool) -> Any:
        return [kind.to_json(item, expose) for kind, item in zip(self.items, value)]

    def from_json(self, value: Any) -> Any:
        return tuple(kind.from_json(item) for kind, item in zip(self.items, value))


class Map(WireType):
    """A ``BTreeMap<K, V>``: a dict, encoded in the key order a ``BTreeMap`` keeps (strings by their UTF-8
    bytes, enums by index), so that the bytes are the Rust encoder's."""

    def __init__(self, key: WireType, value: WireType) -> None:
        self.key = key
        self.value = value

    def encode(self, w: Writer, value: Any) -> None:
        items = sorted(dict(value).items(), key=lambda item: _order(item[0]))
        w.uint(len(items))
        for k, v in items:
            self.key.encode(w, k)
            self.value.encode(w, v)

    def decode(self, r: Reader) -> Any:
        key, value = self.key, self.value
        out: Dict[Any, Any] = {}
        for _ in range(r.length()):
            k = key.decode(r)
            out[k] = value.decode(r)
        return out

    def to_json(self, value: Any, expose: bool) -> Any:
        items = sorted(dict(value).items(), key=lambda item: _order(item[0]))
        return {self.key.to_json(k, expose): self.value.to_json(v, expose) for k, v in items}

    def from_json(self, value: Any) -> Any:
        return {self.key.from_json(k): self.value.from_json(v) for k, v in _expect(value, dict, "an object").items()}


def _order(key: Any) -> Any:
    return key.encode("utf-8") if isinstance(key, str) else key


class Enum(WireType):
    """A Rust enum of unit variants only: an :class:`enum.IntEnum` whose values are the indexes."""

    def __init__(self, cls: Any) -> None:
        self.cls = cls

    def encode(self, w: Writer, value: Any) -> None:
        if not isinstance(value, self.cls):
            raise TypeError(f"expected a {self.cls.__name__}, got {type(value).__name__}")
        w.uint(int(value), 32)

    def decode(self, r: Reader) -> Any:
        # An index this package does not know becomes an UNKNOWN_<n> member (see keyward.codes).
        return self.cls(r.uint(32))

    def to_json(self, value: Any, expose: bool) -> Any:
        return value.serde_name()

    def from_json(self, value: Any) -> Any:
        return self.cls.from_serde_name(value)


#: One field of a struct: its Python name and how it travels.
Field = Tuple[str, WireType]


class Struct(WireType):
    """A struct: a dataclass whose ``_wire`` lists its fields in declaration order."""

    def __init__(self, cls: Any) -> None:
        self.cls = cls

    @property
    def fields(self) -> Sequence[Field]:
        fields: Sequence[Field] = self.cls._wire
        return fields

    def encode(self, w: Writer, value: Any) -> None:
        if not isinstance(value, self.cls):
            raise TypeError(f"expected a {self.cls.__name__}, got {type(value).__name__}")
        for name, kind in self.fields:
            kind.encode(w, getattr(value, name))

    def decode(self, r: Reader) -> Any:
        return self.cls(*[kind.decode(r) for _, kind in self.fields])

    def to_json(self, value: Any, expose: bool) -> Any:
        return {_json_name(name): kind.to_json(getattr(value, name), expose) for name, kind in self.fields}

    def from_json(self, value: Any) -> Any:
        _expect(value, dict, f"an object for {self.cls.__name__}")
        return self.cls(*[kind.from_json(value[_json_name(name)]) for name, kind in self.fields])


def _json_name(name: str) -> str:
    # Python keywords get a trailing underscore (`from_`); serde names the field without it.
    return name[:-1] if name.endswith("_") else name


#: How a variant of an enum with data shows in serde JSON: ``unit`` (a string, no fields), ``value`` (one
#: field, ``{"Name": field}``: a newtype variant around a non-struct), ``fields`` (``{"Name": {...}}``: a
#: struct variant, or a newtype variant around a struct, which serde writes alike).
UNIT, VALUE, FIELDS = "unit", "value", "fields"


class Variant:
    """One variant of a :class:`Union`: its Rust name, the Python class that carries it, and its JSON shape."""

    def __init__(self, name: str, cls: Any, shape: str) -> None:
        self.name = name
        self.cls = cls
        self.shape = shape
        self.struct = Struct(cls)


class Union(WireType):
    """A Rust enum whose variants carry data: each variant is a Python class (a dataclass), its index its
    position in ``variants``."""

    def __init__(self, name: str, variants: Iterable[Variant]) -> None:
        self.name = name
        self.variants: List[Variant] = list(variants)
        self.by_class: Dict[Any, Tuple[int, Variant]] = {v.cls: (i, v) for i, v in enumerate(self.variants)}
        self.by_name: Dict[str, Variant] = {v.name: v for v in self.variants}

    def index_of(self, value: Any) -> Tuple[int, Variant]:
        try:
            return self.by_class[type(value)]
        except KeyError:
            raise TypeError(f"{type(value).__name__} is not a {self.name}") from None

    def encode(self, w: Writer, value: Any) -> None:
        index, variant = self.index_of(value)
        w.uint(index, 32)
        variant.struct.encode(w, value)

    def decode(self, r: Reader) -> Any:
        index = r.uint(32)
        if index >= len(self.variants):
            raise ProtocolError(f"unknown {self.name} variant {index}")
        return self.variants[index].struct.decode(r)

    def to_json(self, value: Any, expose: bool) -> Any:
        _, variant = self.index_of(value)
        if variant.shape == UNIT:
            return variant.name
        body = variant.struct.to_json(value, expose)
        if variant.shape == VALUE:
            (body,) = body.values()
        return {variant.name: body}

    def from_json(self, value: Any) -> Any:
        if isinstance(value, str):
            variant = self.by_name[value]
            if variant.shape != UNIT:
                raise TypeError(f"{self.name}::{value} carries data")
            return variant.cls()
        ((name, body),) = _expect(value, dict, f"a {self.name}").items()
        variant = self.by_name[name]
        if variant.shape == VALUE:
            ((field, _),) = variant.struct.fields
            body = {_json_name(field): body}
        return variant.struct.from_json(body)


class Ref(WireType):
    """A descriptor named before it exists (a recursive type): ``Ref(lambda: REQUEST)``."""

    def __init__(self, target: Callable[[], WireType]) -> None:
        self.target = target

    def encode(self, w: Writer, value: Any) -> None:
        self.target().encode(w, value)

    def decode(self, r: Reader) -> Any:
        return self.target().decode(r)

    def to_json(self, value: Any, expose: bool) -> Any:
        return self.target().to_json(value, expose)

    def from_json(self, value: Any) -> Any:
        return self.target().from_json(value)


U16, U32, U64 = UInt(16), UInt(32), UInt(64)
U16_KEY = UIntKey(16)
I32, I64 = SInt(32), SInt(64)
BYTE = U8()
BOOL = Bool()
FLOAT = F64()
STR = Str()
BYTES = Bytes()
OPT_STR = Opt(STR)
OPT_U64 = Opt(U64)
OPT_I64 = Opt(I64)
STRS = Seq(STR)
STR_MAP = Map(STR, STR)


def encode(kind: WireType, value: Any) -> bytes:
    """The payload of ``value`` as ``kind``."""
    w = Writer()
    kind.encode(w, value)
    return w.getvalue()


def decode(kind: WireType, payload: bytes) -> Any:
    """Decodes a whole payload as ``kind``; trailing bytes are an error."""
    r = Reader(payload)
    try:
        value = kind.decode(r)
    except (ValueError, TypeError, struct.error) as error:
        raise ProtocolError(f"cannot decode a {type(kind).__name__}: {error}") from None
    r.finish()
    return value
