"""Frozen dataclasses that cost a fraction of the time to define.

``@record`` is ``@dataclass(frozen=True)``: the same fields (``dataclasses.fields()``,
``replace()`` and ``asdict()`` work), the same ``__init__``, equality, hash and repr, and
no field can be assigned or deleted once ``__init__`` has set it.  The standard decorator
compiles six methods for every class; for the spec model's forty classes that was most of
the time kgen took to start.  Here only ``__init__`` is compiled, and the other five are
functions shared by every record, reading the field names kept on the class.  A subclass
of a record is a record too (``@dataclass(frozen=True)`` refuses a base it sees as not frozen).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, Field, FrozenInstanceError, dataclass, field, fields
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T", bound=type)


def _values(names: list[str]) -> Callable[[Any], tuple]:
    """The tuple of ``names``' values of an object (a dataclass compares and hashes that)."""
    if not names:
        return lambda obj: ()
    if len(names) == 1:
        get = attrgetter(names[0])
        return lambda obj: (get(obj),)
    return attrgetter(*names)


def _eq(self: Any, other: Any) -> bool:
    if other.__class__ is self.__class__:
        key = self.__record_compare__
        return key(self) == key(other)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(self.__record_hash__(self))


def _repr(self: Any) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__record_repr__)
    return f"{self.__class__.__qualname__}({shown})"


def _setattr(self: Any, name: str, value: Any) -> None:
    # __init__ sets each field once; anything else is what a frozen dataclass refuses
    if name in self.__dict__ or name not in self.__dataclass_fields__:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")
    object.__setattr__(self, name, value)


def _delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


class _LazyInit:
    """A record's ``__init__``, compiled when the class is first called or inspected.

    A command uses few of the records it imports (a cached spec is unpickled, which calls
    no ``__init__``), so compiling each at import time was most of what defining one cost.
    The standard decorator compiles it on a twin that holds only the class's fields (its
    own and inherited, in order) and whether it has a ``__post_init__``: the twin has no
    base and no other attribute, so no ``__init_subclass__`` or ``__set_name__`` runs again.
    """

    def __init__(self, cls: type) -> None:
        self.cls = cls

    def compile(self) -> Callable[..., None]:
        cls = self.cls
        known: dict[str, Field] = cls.__dataclass_fields__  # type: ignore[attr-defined]
        twin = type(cls.__name__, (), {"__module__": cls.__module__, "__doc__": cls.__doc__,
                                       "__annotations__": {n: f.type for n, f in known.items()}})  # fmt: skip
        for name, f in known.items():  # set after the class is made: no __set_name__
            type.__setattr__(twin, name, f)
        if hasattr(cls, "__post_init__"):
            type.__setattr__(twin, "__post_init__", cls.__post_init__)
        init = dataclass(twin, eq=False, repr=False).__init__  # type: ignore[misc]
        init.__qualname__ = f"{cls.__qualname__}.__init__"
        type.__setattr__(cls, "__init__", init)
        return init

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        init = self.cls.__dict__["__init__"]
        if init is self:
            init = self.compile()
        return init if obj is None else init.__get__(obj, owner)


def _check_order(cls: type) -> None:
    """Refuse, when the class is defined, the ``__init__`` the standard decorator refuses to
    write: a positional parameter without a default after one with a default."""
    after = None
    for f in cls.__dataclass_fields__.values():  # type: ignore[attr-defined]
        if f.kw_only is MISSING or f.kw_only or not f.init:
            continue  # a ClassVar (the only entry whose kw_only stays MISSING), or no parameter
        if f.default is not MISSING or f.default_factory is not MISSING:
            after = f.name
        elif after is not None:
            raise TypeError(f"non-default argument {f.name!r} follows default argument {after!r}")


@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
def record(cls: T) -> T:
    """``@dataclass(frozen=True)``, with one method compiled instead of six, when first used."""
    for name in ("__eq__", "__hash__", "__repr__", "__setattr__", "__delattr__", "__init__"):
        if name in cls.__dict__:
            raise TypeError(f"{cls.__qualname__} defines {name}, which a record provides")
    if not cls.__doc__:  # dataclass would build one from inspect.signature(), slowly
        cls.__doc__ = f"{cls.__name__}({', '.join(cls.__dict__.get('__annotations__', ()))})"
    dataclass(cls, init=False, eq=False, repr=False)
    _check_order(cls)
    every = fields(cls)
    methods: dict[str, Any] = {
        # static: a lambda kept on the class would be bound to the instance
        "__record_compare__": staticmethod(_values([f.name for f in every if f.compare])),
        "__record_hash__": staticmethod(
            _values([f.name for f in every if f.hash or f.hash is None and f.compare])
        ),
        "__record_repr__": tuple(f.name for f in every if f.repr),
        "__eq__": _eq,
        "__hash__": _hash,
        "__repr__": _repr,
        "__setattr__": _setattr,
        "__delattr__": _delattr,
        "__init__": _LazyInit(cls),
    }
    for name, value in methods.items():
        setattr(cls, name, value)
    return cls
