"""The protocol's stable codes and small enums, as :class:`enum.IntEnum` whose values are the wire indexes.

On the wire each is a bincode enum variant index (a varint), so the values below are the contract: they
only ever grow at the end. ``str(code)`` and ``code.as_str()`` give the stable spelling the CLI's JSON, the
HTTP layer and the documentation use (``INSUFFICIENT_SCOPE``, ``KEY_NOT_FOUND``; ``active``, ``member``,
``live`` for the lowercase ones); :meth:`serde_name` gives the Rust variant name serde uses in JSON
(``InsufficientScope``).
"""

from __future__ import annotations

import enum
from typing import Any, Type, TypeVar

__all__ = [
    "VerifyCode",
    "ErrorCode",
    "KeyStatus",
    "Role",
    "Environment",
    "KeyOrigin",
    "Period",
    "AuditAction",
]

_E = TypeVar("_E", bound="_WireEnum")


class _WireEnum(enum.IntEnum):
    """An enum whose values are bincode variant indexes.

    A daemon newer than this package may send an index it does not know (variants are appended within a
    protocol version). Such a value does not desynchronise the decoder, so it is kept as an ``UNKNOWN_<n>``
    member instead of failing the whole reply (PROTOCOL.md, section 12); an unknown :class:`VerifyCode` is
    never valid.
    """

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFF_FFFF:
            member = int.__new__(cls, value)
            member._name_ = f"UNKNOWN_{value}"
            member._value_ = value
            return member
        return None

    @property
    def is_known(self) -> bool:
        """Whether this package knows the value (see the class documentation)."""
        return not self.name.startswith("UNKNOWN_")

    def as_str(self) -> str:
        """The stable spelling."""
        return self.name

    def __str__(self) -> str:
        # IntEnum's own str() changed between Python versions (3.11 prints the number); pin it.
        return self.as_str()

    def serde_name(self) -> str:
        """The Rust variant name, as serde writes it in JSON (``NOT_FOUND`` -> ``NotFound``)."""
        if not self.is_known:
            raise ValueError(f"{type(self).__name__} {int(self)} has no name this package knows")
        return "".join(part.capitalize() for part in self.name.split("_"))

    @classmethod
    def from_serde_name(cls: Type[_E], name: str) -> _E:
        for member in cls:
            if member.serde_name() == name:
                return member
        raise ValueError(f"no {cls.__name__} is called {name!r}")

    @classmethod
    def parse(cls: Type[_E], text: str) -> _E:
        """The member spelled ``text`` (its stable spelling, in any case)."""
        for member in cls:
            if member.as_str() == text or member.name == text.upper():
                return member
        raise ValueError(f"unknown {cls.__name__} {text!r}")


class _LowerEnum(_WireEnum):
    """An enum whose stable spelling is lowercase (``active``, ``account_set``)."""

    def as_str(self) -> str:
        return self.name.lower()


class VerifyCode(_WireEnum):
    """The outcome of a verify. Every outcome is an answer, not an error."""

    #: The token is right and the key may do what was asked.
    VALID = 0
    #: No token was given.
    MISSING = 1
    #: Not a keyward token (shape or checksum); refused without any lookup.
    MALFORMED = 2
    #: No key has this id, or the secret is wrong (one answer for both).
    NOT_FOUND = 3
    EXPIRED = 4
    REVOKED = 5
    #: A required scope was given and the key does not hold it (nor anything implying it).
    INSUFFICIENT_SCOPE = 6
    #: A workspace was given and the key belongs to another.
    WRONG_WORKSPACE = 7
    #: The key is deactivated.
    INACTIVE = 8
    #: A legacy personal key after the legacy sunset.
    LEGACY_SUNSET = 9
    #: A rate limit refused the request; ``retry_after_ms`` says when to try again. Nothing was spent.
    RATE_LIMITED = 10
    #: The key's credits are used up. Nothing was spent.
    USAGE_EXCEEDED = 11
    #: Never in an answer: the usage counter of verifies refused with the ``BUSY`` error.
    BUSY = 12

    @property
    def is_valid(self) -> bool:
        return self is VerifyCode.VALID


class ErrorCode(_WireEnum):
    """Why the daemon refused a request. Every error reply carries one, plus a message for humans."""

    UNSUPPORTED_VERSION = 0
    BAD_FRAME = 1
    WRONG_SOCKET = 2
    INVALID_ARGUMENT = 3
    KEY_NOT_FOUND = 4
    CONFLICT = 5
    STORAGE = 6
    SHUTTING_DOWN = 7
    BUSY = 8
    FORBIDDEN = 9
    INTERNAL = 10
    ENGINE_UNAVAILABLE = 11
    ENGINE_DIVERGED = 12


class KeyStatus(_LowerEnum):
    """A key's lifecycle state as operators see it."""

    ACTIVE = 0
    EXPIRED = 1
    REVOKED = 2
    #: Deactivated; can be activated again.
    INACTIVE = 3
    #: A legacy personal key that still works.
    LEGACY = 4
    #: A legacy personal key after the legacy sunset.
    SUNSET = 5


class Role(_LowerEnum):
    """The role a key acts with. A member key can never hold the ``admin`` scope."""

    MEMBER = 0
    ADMIN = 1


class Environment(_LowerEnum):
    """The environment a key belongs to: the second part of its token (``kw_live_``, ``kw_test_``)."""

    LIVE = 0
    TEST = 1


class KeyOrigin(_LowerEnum):
    """Where a key's token came from."""

    GENERATED = 0
    IMPORTED = 1
    LEGACY = 2


class Period(_LowerEnum):
    """The window a rate is counted over."""

    SECOND = 0
    MINUTE = 1
    HOUR = 2
    DAY = 3

    @property
    def seconds(self) -> int:
        return (1, 60, 3600, 86_400)[self.value]

    @property
    def suffix(self) -> str:
        """The spelling in a rate such as ``100/min``."""
        return ("s", "min", "h", "d")[self.value]


class AuditAction(_LowerEnum):
    """A management action that is audited."""

    CREATE = 0
    EDIT = 1
    REGENERATE = 2
    DEACTIVATE = 3
    ACTIVATE = 4
    REVOKE = 5
    IMPORT = 6
    ACCOUNT_SET = 7
    CREDITS = 8
