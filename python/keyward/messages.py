"""The messages: handshake, requests, replies, and every type inside them, as dataclasses.

Each class mirrors a Rust type of ``protocol/src/`` field for field; its ``_wire`` lists the fields in the
Rust declaration order, which is the order they travel in (bincode writes no field names). Within one
protocol version variants and fields are only ever appended, so this module follows the daemon by adding
at the end.

Rust enums with data become:

- for :data:`Request` and :data:`Reply`, one class per variant (``Get(id=...)``, ``Ping()``); a variant that
  wraps a struct is that struct itself (``Request::Verify(VerifyRequest)`` is a :class:`VerifyRequest`);
- for the small value enums, one frozen class with a ``kind`` and constructors:
  ``ExpirySpec.days(30)``, ``RatePolicy.plan("paid")``, ``Refill.monthly(5000, day=1)``,
  ``CreditChange.add(100)``.

Tokens are :class:`Secret` values, which never print. :func:`to_json` gives the JSON shape serde gives the
Rust value (as ``protocol/vectors/vectors.json`` holds it), with secrets redacted unless asked.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import functools
import hmac
import types
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Union as _U

from . import _codec as c
from .codes import AuditAction, Environment, ErrorCode, KeyOrigin, KeyStatus, Period, Role, VerifyCode
from .errors import ProtocolError

__all__ = [
    "PROTOCOL_VERSION",
    "Secret",
    "Hello",
    "HelloAccepted",
    "RequestFrame",
    "ReplyFrame",
    "Request",
    "Reply",
    # requests
    "Ping",
    "VerifyRequest",
    "CreateRequest",
    "ListRequest",
    "Get",
    "Revoke",
    "Edit",
    "Regenerate",
    "Deactivate",
    "Activate",
    "ImportRequest",
    "AuditQuery",
    "AccountView",
    "GetAccount",
    "ListLegacy",
    "Credits",
    "Usage",
    "WorkspaceUsage",
    "As",
    "Stats",
    "FleetInit",
    "FleetStatus",
    # replies
    "Pong",
    "VerifyAnswer",
    "VerifiedKey",
    "CreatedKey",
    "KeyPage",
    "KeyView",
    "ErrorReply",
    "AuditLog",
    "UsageReport",
    "WorkspaceUsageReport",
    "StatsReport",
    "FleetReport",
    # nested
    "ExpirySpec",
    "ExpiryKind",
    "Rate",
    "RatePolicy",
    "RatePolicyKind",
    "Refill",
    "RefillKind",
    "REMOVE_REFILL",
    "Limits",
    "RateLimitStatus",
    "CreditChange",
    "CreditChangeKind",
    "KeyChanges",
    "UsageBucket",
    "KeyUsage",
    "LatencySummary",
    "FleetFigures",
    "HttpFigures",
    "NodeReport",
    "Actor",
    "FieldChange",
    "AuditEntry",
    "to_json",
    "from_json",
]

#: The protocol version this package speaks.
PROTOCOL_VERSION = 2


class Secret:
    """A token or secret: ``repr()``, ``str()`` and formatting show ``[redacted]``; :meth:`expose` gives the
    text. Python cannot wipe a string from memory, so unlike the Rust ``Secret`` this only keeps the value
    out of logs, tracebacks and exception messages."""

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: _U[str, "Secret"]) -> None:
        if isinstance(value, Secret):
            value = value._value
        if not isinstance(value, str):
            raise TypeError(f"a Secret holds a str, not {type(value).__name__}")
        self._value = value

    def expose(self) -> str:
        """The secret text. Call sites of this method are the places that handle a secret; keep them few."""
        return self._value

    def is_empty(self) -> bool:
        return not self._value

    def __repr__(self) -> str:
        return "Secret([redacted])"

    def __str__(self) -> str:
        return "[redacted]"

    def __format__(self, spec: str) -> str:
        return "[redacted]"

    def __eq__(self, other: object) -> bool:
        # In constant time, as the daemon compares: an equality test must not tell how much of it matched.
        return isinstance(other, Secret) and hmac.compare_digest(other._value.encode(), self._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> Tuple[Any, ...]:
        # Pickling a secret is as deliberate as exposing it; allow it (multiprocessing), never print it.
        return (Secret, (self._value,))


class _SecretType(c.WireType):
    """A ``Secret``: a plain string on the wire (``#[serde(transparent)]``)."""

    def encode(self, w: c.Writer, value: Any) -> None:
        w.string(value.expose() if isinstance(value, Secret) else c._expect(value, str, "a token"))

    def decode(self, r: c.Reader) -> Any:
        return Secret(r.string())

    def to_json(self, value: Any, expose: bool) -> Any:
        return value.expose() if expose else str(value)

    def from_json(self, value: Any) -> Any:
        return Secret(c._expect(value, str, "a token"))


SECRET = _SecretType()


def _wire(*fields: c.Field) -> Tuple[c.Field, ...]:
    return fields


def _check(cls: Any) -> Any:
    """Class decorator: the ``_wire`` fields are exactly the dataclass's fields."""
    names = {f.name for f in dataclasses.fields(cls)}
    wired = [name for name, _ in cls._wire]
    if set(wired) != names or len(wired) != len(names):
        raise AssertionError(f"{cls.__name__}: _wire {wired} does not match the fields {sorted(names)}")
    return cls


class _KwStruct(c.Struct):
    """A struct built by keyword, so that a dataclass may order its parameters for Python callers (required
    first) while ``_wire`` keeps the Rust order."""

    def decode(self, r: c.Reader) -> Any:
        return self.cls(**{name: kind.decode(r) for name, kind in self.fields})

    def from_json(self, value: Any) -> Any:
        c._expect(value, dict, f"an object for {self.cls.__name__}")
        return self.cls(**{name: kind.from_json(value[c._json_name(name)]) for name, kind in self.fields})


def _struct(cls: Any) -> c.Struct:
    return _KwStruct(_check(cls))


# --- Value enums with data ------------------------------------------------------------------------


class _Tagged(c.WireType):
    """A Rust enum with data as one frozen class with a ``kind``: ``variants[kind]`` is the variant's serde
    name, its JSON shape, and its fields (attribute, type)."""

    def __init__(self, cls: Any, kinds: Any, variants: Sequence[Tuple[str, str, Sequence[c.Field]]]) -> None:
        self.cls = cls
        self.kinds = kinds
        self.variants = variants
        self.by_name = {name: i for i, (name, _, _) in enumerate(variants)}

    def encode(self, w: c.Writer, value: Any) -> None:
        if not isinstance(value, self.cls):
            raise TypeError(f"expected a {self.cls.__name__}, got {type(value).__name__}")
        kind = int(value.kind)
        w.uint(kind, 32)
        for attr, t in self.variants[kind][2]:
            t.encode(w, getattr(value, attr))

    def decode(self, r: c.Reader) -> Any:
        index = r.uint(32)
        if index >= len(self.variants):
            raise ProtocolError(f"unknown {self.cls.__name__} variant {index}")
        return self.cls(self.kinds(index), **{attr: t.decode(r) for attr, t in self.variants[index][2]})

    def to_json(self, value: Any, expose: bool) -> Any:
        name, shape, fields = self.variants[int(value.kind)]
        if shape == c.UNIT:
            return name
        if shape == c.VALUE:
            ((attr, t),) = fields
            return {name: t.to_json(getattr(value, attr), expose)}
        return {name: {attr: t.to_json(getattr(value, attr), expose) for attr, t in fields}}

    def from_json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.cls(self.kinds(self.by_name[value]))
        ((name, body),) = value.items()
        index = self.by_name[name]
        _, shape, fields = self.variants[index]
        if shape == c.VALUE:
            ((attr, t),) = fields
            return self.cls(self.kinds(index), **{attr: t.from_json(body)})
        return self.cls(self.kinds(index), **{attr: t.from_json(body[attr]) for attr, t in fields})


class ExpiryKind(enum.IntEnum):
    NEVER = 0
    DAYS = 1
    MONTHS = 2
    AT = 3


_PRESETS = {"15d": 15, "25d": 25, "30d": 30, "45d": 45, "90d": 90}


@dataclass(frozen=True)
class ExpirySpec:
    """When a key should expire: never, in N days or calendar months (resolved by the daemon's clock), or at
    a Unix time. ``ExpirySpec.parse`` takes the CLI's spellings (``never``, ``15d`` … ``90d``, ``6m``,
    ``1y``, an RFC 3339 time)."""

    kind: ExpiryKind
    value: int = 0

    @classmethod
    def never(cls) -> "ExpirySpec":
        return cls(ExpiryKind.NEVER)

    @classmethod
    def days(cls, days: int) -> "ExpirySpec":
        return cls(ExpiryKind.DAYS, days)

    @classmethod
    def months(cls, months: int) -> "ExpirySpec":
        return cls(ExpiryKind.MONTHS, months)

    @classmethod
    def at(cls, when: _U[int, _dt.datetime]) -> "ExpirySpec":
        """At ``when``: Unix seconds, or an aware :class:`datetime.datetime`."""
        if isinstance(when, _dt.datetime):
            if when.tzinfo is None:
                raise ValueError("an expiry time needs a time zone (e.g. datetime.timezone.utc)")
            when = int(when.timestamp())
        return cls(ExpiryKind.AT, when)

    @classmethod
    def default(cls) -> "ExpirySpec":
        """The daemon's default for a new key: 90 days."""
        return cls(ExpiryKind.DAYS, 90)

    @classmethod
    def parse(cls, text: str) -> "ExpirySpec":
        if text == "never":
            return cls.never()
        if text in _PRESETS:
            return cls.days(_PRESETS[text])
        if text == "6m":
            return cls.months(6)
        if text == "1y":
            return cls.months(12)
        try:
            when = _dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            raise ValueError(
                f"unknown expiry {text!r}: use never, 15d, 25d, 30d, 45d, 90d, 6m, 1y or an RFC 3339 time such as "
                "2027-01-31T00:00:00Z"
            )
        return cls.at(when)

    def __str__(self) -> str:
        if self.kind is ExpiryKind.NEVER:
            return "never"
        if self.kind is ExpiryKind.DAYS:
            return f"{self.value}d"
        if self.kind is ExpiryKind.MONTHS:
            return "1y" if self.value == 12 else f"{self.value}m"
        return _dt.datetime.fromtimestamp(self.value, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


EXPIRY = _Tagged(
    ExpirySpec,
    ExpiryKind,
    [("Never", c.UNIT, ()), ("Days", c.VALUE, [("value", c.U32)]), ("Months", c.VALUE, [("value", c.U32)]),
     ("At", c.VALUE, [("value", c.I64)])],
)


@dataclass(frozen=True)
class Rate:
    """``count`` requests per ``period``, with bursts of up to ``count``. ``Rate.parse("100/min")``."""

    count: int
    period: Period
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("count", c.U64), ("period", c.Enum(Period)))

    @classmethod
    def parse(cls, text: str) -> "Rate":
        count, _, period = text.partition("/")
        periods = {"s": Period.SECOND, "sec": Period.SECOND, "second": Period.SECOND, "m": Period.MINUTE,
                   "min": Period.MINUTE, "minute": Period.MINUTE, "h": Period.HOUR, "hour": Period.HOUR,
                   "d": Period.DAY, "day": Period.DAY}
        try:
            return cls(int(count.strip()), periods[period.strip()])
        except (ValueError, KeyError):
            raise ValueError(f"bad rate {text!r}: expected N/s, N/min, N/h or N/d, e.g. 100/min") from None

    def __str__(self) -> str:
        return f"{self.count}/{self.period.suffix}"


RATE = _struct(Rate)


class RatePolicyKind(enum.IntEnum):
    PLAN = 0
    CUSTOM = 1
    UNLIMITED = 2


@dataclass(frozen=True)
class RatePolicy:
    """How a key's main rate limit is set: a plan of the daemon's (``free`` = 100/min and ``paid`` =
    1000/min by default), a rate of its own, or none."""

    kind: RatePolicyKind
    name: Optional[str] = None
    rate: Optional[Rate] = None

    @classmethod
    def plan(cls, name: str) -> "RatePolicy":
        return cls(RatePolicyKind.PLAN, name=name)

    @classmethod
    def custom(cls, rate: _U[Rate, str]) -> "RatePolicy":
        return cls(RatePolicyKind.CUSTOM, rate=Rate.parse(rate) if isinstance(rate, str) else rate)

    @classmethod
    def unlimited(cls) -> "RatePolicy":
        return cls(RatePolicyKind.UNLIMITED)

    @classmethod
    def default(cls) -> "RatePolicy":
        return cls.plan("free")

    def __str__(self) -> str:
        if self.kind is RatePolicyKind.PLAN:
            return f"plan {self.name}"
        if self.kind is RatePolicyKind.CUSTOM:
            return str(self.rate)
        return "none"


RATE_POLICY = _Tagged(
    RatePolicy,
    RatePolicyKind,
    [("Plan", c.VALUE, [("name", c.STR)]), ("Custom", c.VALUE, [("rate", RATE)]), ("Unlimited", c.UNIT, ())],
)


class RefillKind(enum.IntEnum):
    DAILY = 0
    MONTHLY = 1


@dataclass(frozen=True)
class Refill:
    """When credits are refilled: daily at 00:00 UTC, or monthly on ``day`` (1-31, clamped to short
    months). A refill *sets* the balance to ``amount``."""

    kind: RefillKind
    amount: int = 0
    day: int = 1

    @classmethod
    def daily(cls, amount: int) -> "Refill":
        return cls(RefillKind.DAILY, amount)

    @classmethod
    def monthly(cls, amount: int, day: int = 1) -> "Refill":
        return cls(RefillKind.MONTHLY, amount, day)

    def __str__(self) -> str:
        return f"{self.amount}/day" if self.kind is RefillKind.DAILY else f"{self.amount}/month@{self.day}"


REFILL = _Tagged(
    Refill,
    RefillKind,
    [("Daily", c.FIELDS, [("amount", c.U64)]), ("Monthly", c.FIELDS, [("amount", c.U64), ("day", c.BYTE)])],
)


class CreditChangeKind(enum.IntEnum):
    SET = 0
    ADD = 1


@dataclass(frozen=True)
class CreditChange:
    """Set a key's credit balance, or add to it: ``CreditChange.set(1000)``, ``CreditChange.add(50)``."""

    kind: CreditChangeKind
    amount: int = 0

    @classmethod
    def set(cls, amount: int) -> "CreditChange":
        return cls(CreditChangeKind.SET, amount)

    @classmethod
    def add(cls, amount: int) -> "CreditChange":
        return cls(CreditChangeKind.ADD, amount)


CREDIT_CHANGE = _Tagged(
    CreditChange, CreditChangeKind, [("Set", c.VALUE, [("amount", c.U64)]), ("Add", c.VALUE, [("amount", c.U64)])]
)


class _RemoveRefill:
    """The value of :attr:`KeyChanges.refill` that removes a key's refill (Rust ``Some(None)``)."""

    _instance: ClassVar[Optional["_RemoveRefill"]] = None

    def __new__(cls) -> "_RemoveRefill":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "REMOVE_REFILL"

    def __reduce__(self) -> str:
        return "REMOVE_REFILL"


#: Pass as ``KeyChanges(refill=REMOVE_REFILL)`` to remove a key's refill schedule.
REMOVE_REFILL = _RemoveRefill()


class _RefillChange(c.WireType):
    """``Option<Option<Refill>>``: ``None`` leaves the refill, :data:`REMOVE_REFILL` removes it."""

    def encode(self, w: c.Writer, value: Any) -> None:
        if value is None:
            w.out.append(0)
        elif value is REMOVE_REFILL:
            w.out += b"\x01\x00"
        else:
            w.out += b"\x01\x01"
            REFILL.encode(w, value)

    def decode(self, r: c.Reader) -> Any:
        if not r.option():
            return None
        return REFILL.decode(r) if r.option() else REMOVE_REFILL

    def to_json(self, value: Any, expose: bool) -> Any:
        # serde_json writes both None and Some(None) as null.
        return None if value is None or value is REMOVE_REFILL else REFILL.to_json(value, expose)

    def from_json(self, value: Any) -> Any:
        return None if value is None else REFILL.from_json(value)


# --- Structs --------------------------------------------------------------------------------------


@dataclass
class Limits:
    """A key's limits as set at creation or by an edit: rate policy, named limits (that apply when a
    verify names them), a starting credit balance (``None``: no credits) and a refill schedule."""

    rate: RatePolicy = field(default_factory=RatePolicy.default)
    named: Dict[str, Rate] = field(default_factory=dict)
    credits: Optional[int] = None
    refill: Optional[Refill] = None
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("rate", RATE_POLICY), ("named", c.Map(c.STR, RATE)), ("credits", c.OPT_U64), ("refill", c.Opt(REFILL))
    )


LIMITS = _struct(Limits)


@dataclass
class RateLimitStatus:
    """One limit as a verify found it."""

    #: The plan name (e.g. ``free``), ``custom``, or the named limit's name.
    policy: str
    limit: int
    #: Requests still allowed right now (after this one, if it was allowed).
    remaining: int
    #: When the full limit is available again, Unix milliseconds.
    reset_at_ms: int
    window_seconds: int
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("policy", c.STR), ("limit", c.U64), ("remaining", c.U64), ("reset_at_ms", c.I64), ("window_seconds", c.U64)
    )


RATE_LIMIT_STATUS = _struct(RateLimitStatus)


@dataclass(frozen=True)
class VerifiedKey:
    """What an app server learns about a key whose secret was right. Immutable: the client shares one
    instance between answers about an unchanged key (recognised by its bytes)."""

    id: str
    workspace: str
    name: str
    env: Environment
    #: Canonical scope strings.
    scopes: Tuple[str, ...]
    expires_at: Optional[int]
    role: Role
    metadata: Mapping[str, str]
    #: For a legacy personal key: the account it belongs to.
    account: Optional[str]
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("id", c.STR), ("workspace", c.STR), ("name", c.STR), ("env", c.Enum(Environment)), ("scopes", c.STRS),
        ("expires_at", c.OPT_I64), ("role", c.Enum(Role)), ("metadata", c.STR_MAP), ("account", c.OPT_STR),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "scopes", tuple(self.scopes))
        object.__setattr__(self, "metadata", types.MappingProxyType(dict(self.metadata)))

    def __hash__(self) -> int:
        return hash((self.id, self.workspace, self.name, self.scopes, self.expires_at))


VERIFIED_KEY = _struct(VerifiedKey)


class KeyCache:
    """The keys of verify answers decoded last, by the bytes of their encoding: an answer about an
    unchanged key shares the instance decoded before instead of decoding it again (as the Rust client's
    ``shared_keys``). Holds no token; at most ``size`` keys."""

    __slots__ = ("size", "keys")

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.keys: Dict[bytes, VerifiedKey] = {}

    def get(self, encoded: bytes) -> VerifiedKey:
        key = self.keys.get(encoded)
        if key is None:
            key = c.decode(VERIFIED_KEY, encoded)
            if len(self.keys) >= self.size:
                try:
                    del self.keys[next(iter(self.keys))]
                except (KeyError, StopIteration, RuntimeError):
                    self.keys.clear()
            self.keys[encoded] = key
        return key


class _AnswerKey(c.WireType):
    """A verify answer's key on the wire: the byte string of the ``VerifiedKey``'s encoding
    (``protocol/src/answer_key.rs``). serde_json shows it as that byte string, an array of numbers."""

    def encode(self, w: c.Writer, value: Any) -> None:
        w.blob(c.encode(VERIFIED_KEY, value))

    def decode(self, r: c.Reader) -> Any:
        return c.decode(VERIFIED_KEY, r.blob())

    def to_json(self, value: Any, expose: bool) -> Any:
        return list(c.encode(VERIFIED_KEY, value))

    def from_json(self, value: Any) -> Any:
        if isinstance(value, dict):
            return VERIFIED_KEY.from_json(value)
        return c.decode(VERIFIED_KEY, bytes(value))


@dataclass
class VerifyRequest:
    """Check a token, and optionally that it may act on ``workspace`` with ``scope``, spending ``cost``
    against the key's rate limits and credits (0: check without spending) and its ``limits`` (named
    limits, all or nothing)."""

    token: Secret
    scope: Optional[str] = None
    workspace: Optional[str] = None
    cost: int = 1
    limits: List[str] = field(default_factory=list)
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("token", SECRET), ("scope", c.OPT_STR), ("workspace", c.OPT_STR), ("cost", c.U32), ("limits", c.STRS)
    )

    def __post_init__(self) -> None:
        if not isinstance(self.token, Secret):
            self.token = Secret(self.token)


@dataclass
class VerifyAnswer:
    """The outcome of a verify. ``key`` is set when the secret was right (every code but ``MISSING``,
    ``MALFORMED`` and ``NOT_FOUND``)."""

    code: VerifyCode
    key: Optional[VerifiedKey]
    #: With ``RATE_LIMITED``: when a retry will be allowed, in milliseconds.
    retry_after_ms: Optional[int]
    #: Every rate limit checked for this answer (the key's plan or custom rate, then named limits).
    ratelimit: List[RateLimitStatus]
    #: The key's remaining credits, for a key that has credits.
    credits: Optional[int]
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("code", c.Enum(VerifyCode)), ("key", c.Opt(_AnswerKey())), ("retry_after_ms", c.OPT_U64),
        ("ratelimit", c.Seq(RATE_LIMIT_STATUS)), ("credits", c.OPT_U64),
    )

    @property
    def valid(self) -> bool:
        return self.code is VerifyCode.VALID


@dataclass
class CreateRequest:
    """Create a key in ``workspace`` named ``name`` (3 to 50 characters) with ``scopes`` (at least one).
    A ``member`` key (the default role) cannot hold the ``admin`` scope. ``metadata`` (string labels,
    at most 4 KiB in all) comes back with every valid verify."""

    workspace: str
    name: str
    scopes: List[str] = field(default_factory=list)
    description: Optional[str] = None
    expires: ExpirySpec = field(default_factory=ExpirySpec.default)
    env: Environment = Environment.LIVE
    role: Role = Role.MEMBER
    metadata: Dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("workspace", c.STR), ("name", c.STR), ("description", c.OPT_STR), ("scopes", c.STRS), ("expires", EXPIRY),
        ("env", c.Enum(Environment)), ("role", c.Enum(Role)), ("metadata", c.STR_MAP), ("limits", LIMITS),
    )


@dataclass
class KeyView:
    """A key as listings show it: never the token, its secret, or a hash of either."""

    id: str
    #: The token's first 8 characters (``kw_live_``).
    prefix: str
    #: The token's first 8 and last 4 characters with the rest elided.
    masked: str
    name: str
    description: Optional[str]
    workspace: str
    env: Environment
    scopes: List[str]
    status: KeyStatus
    created_at: int
    last_used_at: Optional[int]
    expires_at: Optional[int]
    revoked_at: Optional[int]
    metadata: Dict[str, str]
    role: Role
    origin: KeyOrigin
    account: Optional[str]
    #: After a regenerate with a grace window: when the previous token stops working.
    previous_token_until: Optional[int]
    #: Rate policy, named limits, refill, and the *current* credit balance.
    limits: Limits
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("id", c.STR), ("prefix", c.STR), ("masked", c.STR), ("name", c.STR), ("description", c.OPT_STR),
        ("workspace", c.STR), ("env", c.Enum(Environment)), ("scopes", c.STRS), ("status", c.Enum(KeyStatus)),
        ("created_at", c.I64), ("last_used_at", c.OPT_I64), ("expires_at", c.OPT_I64), ("revoked_at", c.OPT_I64),
        ("metadata", c.STR_MAP), ("role", c.Enum(Role)), ("origin", c.Enum(KeyOrigin)), ("account", c.OPT_STR),
        ("previous_token_until", c.OPT_I64), ("limits", LIMITS),
    )


KEY_VIEW = _struct(KeyView)


@dataclass
class CreatedKey:
    """A new key and its token: shown once, never stored by the daemon."""

    token: Secret
    key: KeyView
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("token", SECRET), ("key", KEY_VIEW))


@dataclass
class ListRequest:
    """One page of a workspace's keys, oldest first, after the key id ``after`` (the previous page's
    ``next``); ``limit`` 0 is the daemon's default page size."""

    workspace: str
    after: Optional[str] = None
    limit: int = 0
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("workspace", c.STR), ("after", c.OPT_STR), ("limit", c.U32))


@dataclass
class KeyPage:
    keys: List[KeyView]
    #: Pass as ``after`` to get the next page; ``None`` on the last page.
    next: Optional[str]
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("keys", c.Seq(KEY_VIEW)), ("next", c.OPT_STR))


@dataclass
class KeyChanges:
    """The settings an edit changes; ``None`` leaves a setting as it is. The token never changes.

    ``description=""`` clears the description; ``scopes`` replaces the whole set; ``metadata`` is merged
    (an empty value removes that entry); ``named_limits`` is merged (``None`` removes that limit);
    ``refill=REMOVE_REFILL`` removes the refill schedule."""

    name: Optional[str] = None
    description: Optional[str] = None
    scopes: Optional[List[str]] = None
    role: Optional[Role] = None
    expires: Optional[ExpirySpec] = None
    metadata: Dict[str, str] = field(default_factory=dict)
    rate: Optional[RatePolicy] = None
    named_limits: Dict[str, Optional[Rate]] = field(default_factory=dict)
    refill: _U[Refill, _RemoveRefill, None] = None
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("name", c.OPT_STR), ("description", c.OPT_STR), ("scopes", c.Opt(c.STRS)), ("role", c.Opt(c.Enum(Role))),
        ("expires", c.Opt(EXPIRY)), ("metadata", c.STR_MAP), ("rate", c.Opt(RATE_POLICY)),
        ("named_limits", c.Map(c.STR, c.Opt(RATE))), ("refill", _RefillChange()),
    )


@dataclass
class ImportRequest:
    """Take over ``token``, issued by another system (any printable ASCII, 16 to 512 characters), storing
    only its hash. ``legacy_account`` imports a legacy personal key of that account."""

    token: Secret
    workspace: str
    name: str
    scopes: List[str] = field(default_factory=list)
    description: Optional[str] = None
    role: Role = Role.MEMBER
    expires: ExpirySpec = field(default_factory=ExpirySpec.never)
    metadata: Dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    legacy_account: Optional[str] = None
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("token", SECRET), ("workspace", c.STR), ("name", c.STR), ("description", c.OPT_STR), ("scopes", c.STRS),
        ("role", c.Enum(Role)), ("expires", EXPIRY), ("metadata", c.STR_MAP), ("limits", LIMITS),
        ("legacy_account", c.OPT_STR),
    )

    def __post_init__(self) -> None:
        if not isinstance(self.token, Secret):
            self.token = Secret(self.token)


@dataclass
class AccountView:
    """An account and the workspaces its legacy keys may act on (``Request::SetAccount``,
    ``Reply::Account``)."""

    account: str
    workspaces: List[str] = field(default_factory=list)
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("account", c.STR), ("workspaces", c.STRS))


@dataclass
class Actor:
    """Who asked: the peer's credentials as the kernel reported them, plus the caller's label."""

    uid: int
    gid: int
    pid: Optional[int]
    label: Optional[str]
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("uid", c.U32), ("gid", c.U32), ("pid", c.Opt(c.I32)), ("label", c.OPT_STR)
    )


@dataclass
class FieldChange:
    """One changed field: its name and the values before and after."""

    field: str
    from_: Optional[str]
    to: Optional[str]
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("field", c.STR), ("from_", c.OPT_STR), ("to", c.OPT_STR))


@dataclass
class AuditEntry:
    seq: int
    #: Unix seconds.
    at: int
    action: AuditAction
    key_id: Optional[str]
    workspace: Optional[str]
    account: Optional[str]
    changes: List[FieldChange]
    actor: Actor
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("seq", c.U64), ("at", c.I64), ("action", c.Enum(AuditAction)), ("key_id", c.OPT_STR),
        ("workspace", c.OPT_STR), ("account", c.OPT_STR), ("changes", c.Seq(_struct(FieldChange))),
        ("actor", _struct(Actor)),
    )


@dataclass
class AuditQuery:
    """Which audit entries to return, newest first: of a workspace, of a key, since a time; ``limit`` 0 is
    the daemon's default (100)."""

    workspace: Optional[str] = None
    key: Optional[str] = None
    since: Optional[int] = None
    limit: int = 0
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("workspace", c.OPT_STR), ("key", c.OPT_STR), ("since", c.OPT_I64), ("limit", c.U32)
    )


_COUNTS = c.Map(c.Enum(VerifyCode), c.U64)


@dataclass
class UsageBucket:
    #: The bucket's start, Unix seconds.
    start: int
    counts: Dict[VerifyCode, int]
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("start", c.I64), ("counts", _COUNTS))


@dataclass
class UsageReport:
    """One key's verifications by outcome: totals over 90 days, the last 48 hours and the last 90 days
    (buckets without verifications left out)."""

    key_id: str
    totals: Dict[VerifyCode, int]
    hourly: List[UsageBucket]
    daily: List[UsageBucket]
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("key_id", c.STR), ("totals", _COUNTS), ("hourly", c.Seq(_struct(UsageBucket))),
        ("daily", c.Seq(_struct(UsageBucket))),
    )


@dataclass
class KeyUsage:
    key_id: str
    name: str
    total: int
    totals: Dict[VerifyCode, int]
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("key_id", c.STR), ("name", c.STR), ("total", c.U64), ("totals", _COUNTS)
    )


@dataclass
class LatencySummary:
    """A latency distribution: percentiles and cumulative ``(upper bound in seconds, count)`` buckets; the
    last bound is ``math.inf``."""

    count: int
    sum_seconds: float
    p50_seconds: float
    p99_seconds: float
    p999_seconds: float
    buckets: List[Tuple[float, int]]
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("count", c.U64), ("sum_seconds", c.FLOAT), ("p50_seconds", c.FLOAT), ("p99_seconds", c.FLOAT),
        ("p999_seconds", c.FLOAT), ("buckets", c.Seq(c.Tup(c.FLOAT, c.U64))),
    )


@dataclass
class FleetFigures:
    node_id: str
    engine_reachable: bool
    diverged: bool
    applied_seq: int
    head_seq: int
    last_sync_at: Optional[int]
    changes_applied: int
    engine_queries: int
    reconnects: int
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("node_id", c.STR), ("engine_reachable", c.BOOL), ("diverged", c.BOOL), ("applied_seq", c.U64),
        ("head_seq", c.U64), ("last_sync_at", c.OPT_I64), ("changes_applied", c.U64), ("engine_queries", c.U64),
        ("reconnects", c.U64),
    )


@dataclass
class HttpFigures:
    """The forward-auth endpoint's counters since start. Its verifies also count in
    :attr:`StatsReport.verifies` and the latency, as every verify does."""

    connections_open: int
    connections_total: int
    #: Connections refused for their peer's credentials (Unix sockets only).
    connections_forbidden: int
    #: Answers by HTTP status (200, 401, 403, 404, 429, 500, 503); the 400 and 431 that hyper gives to
    #: malformed requests before the endpoint sees them are not counted.
    answers: Dict[int, int]
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("connections_open", c.U64), ("connections_total", c.U64), ("connections_forbidden", c.U64),
        ("answers", c.Map(c.U16_KEY, c.U64)),
    )


@dataclass
class StatsReport:
    """The daemon's counters, as ``keyward stats`` shows them."""

    version: str
    uptime_seconds: int
    #: Keys by status name.
    keys: Dict[str, int]
    connections_open: int
    connections_total: int
    connections_forbidden: int
    verifies: Dict[VerifyCode, int]
    verify_latency: LatencySummary
    cache_hits: int
    cache_misses: int
    argon2_running: int
    argon2_waiting: int
    busy_refusals: int
    store_bytes: int
    last_flush_at: Optional[int]
    fleet: Optional[FleetFigures]
    #: The forward-auth endpoint's figures; ``None`` when ``[http]`` listens nowhere.
    http: Optional[HttpFigures]
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("version", c.STR), ("uptime_seconds", c.U64), ("keys", c.Map(c.STR, c.U64)), ("connections_open", c.U64),
        ("connections_total", c.U64), ("connections_forbidden", c.U64), ("verifies", _COUNTS),
        ("verify_latency", _struct(LatencySummary)), ("cache_hits", c.U64), ("cache_misses", c.U64),
        ("argon2_running", c.U64), ("argon2_waiting", c.U64), ("busy_refusals", c.U64), ("store_bytes", c.U64),
        ("last_flush_at", c.OPT_I64), ("fleet", c.Opt(_struct(FleetFigures))),
        ("http", c.Opt(_struct(HttpFigures))),
    )


@dataclass
class NodeReport:
    node_id: str
    applied_seq: int
    lag: int
    last_seen_at: int
    last_seen_seconds_ago: int
    version: str
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("node_id", c.STR), ("applied_seq", c.U64), ("lag", c.U64), ("last_seen_at", c.I64),
        ("last_seen_seconds_ago", c.U64), ("version", c.STR),
    )


@dataclass
class FleetReport:
    """The fleet as one host sees it (``keyward fleet status``)."""

    engine: str
    reachable: bool
    problem: Optional[str]
    fleet_id: Optional[str]
    schema_version: Optional[int]
    head_seq: Optional[int]
    keys: Optional[int]
    this_node: str
    nodes: List[NodeReport]
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(
        ("engine", c.STR), ("reachable", c.BOOL), ("problem", c.OPT_STR), ("fleet_id", c.OPT_STR),
        ("schema_version", c.Opt(c.U32)), ("head_seq", c.OPT_U64), ("keys", c.OPT_U64), ("this_node", c.STR),
        ("nodes", c.Seq(_struct(NodeReport))),
    )


@dataclass
class ErrorReply:
    """A refused request: a stable code and a message for humans. The clients raise it as
    :class:`~keyward.errors.DaemonError`."""

    code: ErrorCode
    message: str
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("code", c.Enum(ErrorCode)), ("message", c.STR))

    def __str__(self) -> str:
        return f"{self.code.as_str()}: {self.message}"


# --- Request variants -----------------------------------------------------------------------------

_NONE: Tuple[c.Field, ...] = ()
_ID: Tuple[c.Field, ...] = (("id", c.STR),)


@dataclass
class Ping:
    """Liveness check. Reply: :class:`Pong`."""

    _wire: ClassVar[Tuple[c.Field, ...]] = _NONE


@dataclass
class Get:
    """Show one key. Reply: :class:`KeyView`."""

    id: str
    _wire: ClassVar[Tuple[c.Field, ...]] = _ID


@dataclass
class Revoke:
    """Revoke a key, permanently. Reply: :class:`KeyView` with status ``revoked``."""

    id: str
    _wire: ClassVar[Tuple[c.Field, ...]] = _ID


@dataclass
class Edit:
    """Change a key's settings. Reply: :class:`KeyView`."""

    id: str
    changes: KeyChanges
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("id", c.STR), ("changes", _struct(KeyChanges)))


@dataclass
class Regenerate:
    """Give a key a new token; the old one stops at once or after ``grace_seconds``. Reply:
    :class:`CreatedKey`."""

    id: str
    grace_seconds: int = 0
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("id", c.STR), ("grace_seconds", c.U64))


@dataclass
class Deactivate:
    """Suspend a key (reversible). Reply: :class:`KeyView`."""

    id: str
    _wire: ClassVar[Tuple[c.Field, ...]] = _ID


@dataclass
class Activate:
    """Undo :class:`Deactivate`. Reply: :class:`KeyView`."""

    id: str
    _wire: ClassVar[Tuple[c.Field, ...]] = _ID


@dataclass
class GetAccount:
    """Show an account's workspaces. Reply: :class:`AccountView`."""

    account: str
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("account", c.STR))


@dataclass
class ListLegacy:
    """Legacy keys, optionally of one account. Reply: :class:`KeyPage` (one page)."""

    account: Optional[str] = None
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("account", c.OPT_STR))


@dataclass
class Credits:
    """Set or add to a key's credit balance. Reply: :class:`KeyView`."""

    id: str
    change: CreditChange
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("id", c.STR), ("change", CREDIT_CHANGE))


@dataclass
class Usage:
    """One key's verifications by outcome. Reply: :class:`UsageReport`."""

    id: str
    _wire: ClassVar[Tuple[c.Field, ...]] = _ID


@dataclass
class WorkspaceUsage:
    """Per-key totals of a workspace. Reply: :class:`WorkspaceUsageReport`."""

    workspace: str
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("workspace", c.STR))


REQUEST: c.Union  # defined below, once every variant exists; `As` refers to it


@dataclass
class As:
    """Carry out ``request`` on behalf of ``actor``, a label the audit log records next to the peer's uid
    and pid. Cannot be nested; the clients add it for you (``actor=``)."""

    actor: str
    request: "Request"
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("actor", c.STR), ("request", c.Ref(lambda: REQUEST)))


@dataclass
class Stats:
    """The daemon's counters. Reply: :class:`StatsReport`."""

    _wire: ClassVar[Tuple[c.Field, ...]] = _NONE


@dataclass
class FleetInit:
    """Fleet mode: create the engine's schema and import this host's store. Reply: :class:`FleetReport`."""

    _wire: ClassVar[Tuple[c.Field, ...]] = _NONE


@dataclass
class FleetStatus:
    """Fleet mode: the engine and every host. Reply: :class:`FleetReport`."""

    _wire: ClassVar[Tuple[c.Field, ...]] = _NONE


Request = _U[
    Ping, VerifyRequest, CreateRequest, ListRequest, Get, Revoke, Edit, Regenerate, Deactivate, Activate,
    ImportRequest, AuditQuery, AccountView, GetAccount, ListLegacy, Credits, Usage, WorkspaceUsage, As, Stats,
    FleetInit, FleetStatus,
]

V = c.Variant
REQUEST = c.Union(
    "Request",
    [
        V("Ping", Ping, c.UNIT),
        V("Verify", VerifyRequest, c.FIELDS),
        V("Create", CreateRequest, c.FIELDS),
        V("List", ListRequest, c.FIELDS),
        V("Get", Get, c.FIELDS),
        V("Revoke", Revoke, c.FIELDS),
        V("Edit", Edit, c.FIELDS),
        V("Regenerate", Regenerate, c.FIELDS),
        V("Deactivate", Deactivate, c.FIELDS),
        V("Activate", Activate, c.FIELDS),
        V("Import", ImportRequest, c.FIELDS),
        V("Audit", AuditQuery, c.FIELDS),
        V("SetAccount", AccountView, c.FIELDS),
        V("GetAccount", GetAccount, c.FIELDS),
        V("ListLegacy", ListLegacy, c.FIELDS),
        V("Credits", Credits, c.FIELDS),
        V("Usage", Usage, c.FIELDS),
        V("WorkspaceUsage", WorkspaceUsage, c.FIELDS),
        V("As", As, c.FIELDS),
        V("Stats", Stats, c.UNIT),
        V("FleetInit", FleetInit, c.UNIT),
        V("FleetStatus", FleetStatus, c.UNIT),
    ],
)

# --- Reply variants -------------------------------------------------------------------------------


@dataclass
class Pong:
    """The answer to :class:`Ping`."""

    _wire: ClassVar[Tuple[c.Field, ...]] = _NONE


@dataclass
class AuditLog:
    """The answer to :class:`AuditQuery`: entries, newest first (``Reply::Audit``)."""

    entries: List[AuditEntry]
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("entries", c.Seq(_struct(AuditEntry))))


@dataclass
class WorkspaceUsageReport:
    """The answer to :class:`WorkspaceUsage`: per-key totals, most verifications first."""

    keys: List[KeyUsage]
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("keys", c.Seq(_struct(KeyUsage))))


Reply = _U[
    Pong, VerifyAnswer, CreatedKey, KeyPage, KeyView, ErrorReply, AuditLog, AccountView, UsageReport,
    WorkspaceUsageReport, StatsReport, FleetReport,
]

REPLY = c.Union(
    "Reply",
    [
        V("Pong", Pong, c.UNIT),
        V("Verify", VerifyAnswer, c.FIELDS),
        V("Created", CreatedKey, c.FIELDS),
        V("Keys", KeyPage, c.FIELDS),
        V("Key", KeyView, c.FIELDS),
        V("Error", ErrorReply, c.FIELDS),
        V("Audit", AuditLog, c.VALUE),
        V("Account", AccountView, c.FIELDS),
        V("Usage", UsageReport, c.FIELDS),
        V("WorkspaceUsage", WorkspaceUsageReport, c.VALUE),
        V("Stats", StatsReport, c.FIELDS),
        V("Fleet", FleetReport, c.FIELDS),
    ],
)
for _union in (REQUEST, REPLY):
    for _variant in _union.variants:
        _check(_variant.cls)
        _variant.struct = _KwStruct(_variant.cls)

# --- Frames ---------------------------------------------------------------------------------------


@dataclass
class Hello:
    """The client's first frame."""

    version: int = PROTOCOL_VERSION
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("version", c.U16))


@dataclass
class HelloAccepted:
    """``HelloReply::Accepted``: the daemon speaks ``version``; requests may follow. (A rejection is an
    :class:`ErrorReply`, ``HelloReply::Rejected``.)"""

    version: int
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("version", c.U16))


@dataclass
class RequestFrame:
    """Every frame a client sends after the handshake. Ids are the client's; never 0."""

    id: int
    request: Request
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("id", c.U64), ("request", REQUEST))


@dataclass
class ReplyFrame:
    """Every frame the daemon sends after the handshake; ``id`` 0 answers a frame whose id could not be
    read."""

    id: int
    reply: Reply
    _wire: ClassVar[Tuple[c.Field, ...]] = _wire(("id", c.U64), ("reply", REPLY))


HELLO = _struct(Hello)
HELLO_REPLY = c.Union("HelloReply", [V("Accepted", HelloAccepted, c.FIELDS), V("Rejected", ErrorReply, c.FIELDS)])
for _variant in HELLO_REPLY.variants:
    _variant.struct = _KwStruct(_check(_variant.cls))
REQUEST_FRAME = _struct(RequestFrame)
REPLY_FRAME = _struct(ReplyFrame)

_DESCRIPTORS: Dict[type, c.WireType] = {}
for _name in __all__:
    _obj = globals().get(_name)
    if isinstance(_obj, type) and dataclasses.is_dataclass(_obj) and hasattr(_obj, "_wire"):
        _DESCRIPTORS[_obj] = _struct(_obj)
_DESCRIPTORS.update({ExpirySpec: EXPIRY, RatePolicy: RATE_POLICY, Refill: REFILL, CreditChange: CREDIT_CHANGE})


def to_json(value: Any, *, expose_secrets: bool = False) -> Any:
    """``value`` (any message type of this module) in the JSON shape serde gives the Rust value: field
    names as in Rust, enum variants by their Rust names (``{"Days": 90}``, ``"Never"``, ``"NotFound"``).
    Tokens show as ``[redacted]`` unless ``expose_secrets``. A :data:`Request` or :data:`Reply` variant
    shows as its struct; wrap it in a :class:`RequestFrame` or :class:`ReplyFrame` for the tagged form."""
    try:
        kind = _DESCRIPTORS[type(value)]
    except KeyError:
        raise TypeError(f"{type(value).__name__} is not a keyward message type") from None
    return kind.to_json(value, expose_secrets)


def from_json(cls: Any, value: Any) -> Any:
    """The value of type ``cls`` whose serde JSON is ``value`` (the inverse of :func:`to_json`)."""
    return _DESCRIPTORS[cls].from_json(value)


# --- The hot path ---------------------------------------------------------------------------------

_HEADER = c._BE32
_VERIFY_REPLY = 1


def encode_request(request_id: int, request: Request) -> bytes:
    """The frame (header included) of ``request`` under ``request_id``."""
    w = c.Writer()
    w.uint(request_id)
    REQUEST.encode(w, request)
    return c.frame(bytes(w.out))


def _varint(value: int) -> bytes:
    """A varint of a u64 known to be in range."""
    if value <= 250:
        return _SMALL[value]
    if value <= 0xFFFF:
        return b"\xfb" + c._U16.pack(value)
    if value <= 0xFFFF_FFFF:
        return b"\xfc" + c._U32.pack(value)
    return b"\xfd" + c._U64.pack(value)


_SMALL = [bytes((n,)) for n in range(251)]


@functools.lru_cache(maxsize=512)
def _option_str(text: Optional[str]) -> bytes:
    # Scopes, workspaces and limit names repeat from one verify to the next; a token never goes here.
    if text is None:
        return b"\x00"
    raw = text.encode("utf-8")
    return b"\x01" + _varint(len(raw)) + raw


@functools.lru_cache(maxsize=512)
def _names(names: Tuple[str, ...]) -> bytes:
    out = [_varint(len(names))]
    for name in names:
        raw = name.encode("utf-8")
        out += (_varint(len(raw)), raw)
    return b"".join(out)


def encode_verify(
    request_id: int,
    token: str,
    scope: Optional[str],
    workspace: Optional[str],
    cost: int,
    limits: Sequence[str],
) -> bytes:
    """The frame of ``Request::Verify`` under ``request_id``: the bytes :func:`encode_request` gives, built
    without the generic machinery (a verify is most of what an app server sends)."""
    if not 0 < request_id < 1 << 64:
        raise ValueError(f"request id {request_id} is not a u64 above 0")
    if not 0 <= cost <= 0xFFFF_FFFF:
        raise ValueError(f"{cost} does not fit in a u32")
    raw = token.encode("utf-8")
    body = b"".join((
        _varint(request_id), b"\x01", _varint(len(raw)), raw, _option_str(scope), _option_str(workspace),
        _varint(cost), _names(tuple(limits)) if limits else b"\x00",
    ))
    return _HEADER.pack(len(body)) + body


_CODES = tuple(VerifyCode)


def decode_reply(payload: bytes, keys: Optional[KeyCache] = None) -> Tuple[int, Reply]:
    """Decodes one reply frame's payload into the id it answers and the reply. A verify answer is read
    directly, its key shared through ``keys`` when its bytes are known; anything else generically."""
    r = c.Reader(payload)
    request_id = r.uint(64)
    pos = r.pos
    if r.uint(32) != _VERIFY_REPLY:
        r.pos = pos
        try:
            reply = REPLY.decode(r)
        except (ValueError, TypeError) as error:
            raise ProtocolError(f"cannot decode a reply: {error}") from None
        r.finish()
        return request_id, reply
    # The common answer byte by byte (a code, an option tag, a short key length); anything longer or
    # stranger through the reader's checks.
    pos = r.pos
    if pos + 2 < r.end and payload[pos] < len(_CODES) and payload[pos + 1] <= 1 and payload[pos + 2] <= 250:
        code = _CODES[payload[pos]]
        if payload[pos + 1]:
            length = payload[pos + 2]
            start = pos + 3
            stop = start + length
            if stop > r.end:
                raise ProtocolError("unexpected end of a message")
            encoded = payload[start:stop]
            r.pos = stop
        else:
            encoded = None
            r.pos = pos + 2
    else:
        code = VerifyCode(r.uint(32))
        encoded = r.blob() if r.option() else None
    key: Optional[VerifiedKey] = None
    if encoded is not None:
        key = keys.get(encoded) if keys is not None else c.decode(VERIFIED_KEY, encoded)
    retry_after_ms = r.uint(64) if r.option() else None
    ratelimit = []
    for _ in range(r.length()):
        ratelimit.append(RateLimitStatus(r.string(), r.uint(64), r.uint(64), r.sint(64), r.uint(64)))
    credits = r.uint(64) if r.option() else None
    r.finish()
    return request_id, VerifyAnswer(code, key, retry_after_ms, ratelimit, credits)


def peek_id(payload: bytes) -> Optional[int]:
    """The request id at the start of a reply payload that does not decode, if even that is readable: the
    request it answers can then be failed alone, and the connection kept (the frame's end is known)."""
    try:
        return c.Reader(payload).uint(64)
    except ProtocolError:
        return None


#: The handshake frame of this protocol version, header included (the single payload byte 0x02).
HELLO_FRAME = c.frame(c.encode(HELLO, Hello(PROTOCOL_VERSION)))


def decode_hello_reply(payload: bytes) -> _U[HelloAccepted, ErrorReply]:
    value: _U[HelloAccepted, ErrorReply] = c.decode(HELLO_REPLY, payload)
    return value
