"""@record is @dataclass(frozen=True), one compiled method instead of six.

Each check compares a record with the standard library's frozen dataclass of the same
body, or walks every spec object of the bundled specs; the last test breaks a record on
purpose and sees the walk fail.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import FrozenInstanceError, dataclass, field, fields
from pathlib import Path

import pytest

from codegen import conflicts, model, operands, record as record_module
from codegen.record import record
from codegen.spec import load_all

ROOT = Path(__file__).resolve().parent.parent


def body():
    """One class body with every kind of field a spec object uses."""

    class Base:
        marks: dict = field(default_factory=dict, compare=False, repr=False, kw_only=True)

    class Thing(Base):
        a: int
        b: str = "x"
        c: tuple = ()
        d: int = field(default=0, hash=False)
        e: int = field(default=0, compare=False)

    return Base, Thing


def namespace(cls) -> dict:
    return {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}


def ours():
    base, thing = body()
    return record(type("Thing", (record(type("Base", (), namespace(base))),), namespace(thing)))


def twins():
    base, thing = body()
    std_base = dataclass(frozen=True)(type("Base", (), namespace(base)))
    std = dataclass(frozen=True)(type("Thing", (std_base,), namespace(thing)))
    return ours(), std


def test_a_record_behaves_as_a_frozen_dataclass():
    rec, std = twins()
    assert [(f.name, f.default, f.compare, f.hash, f.repr, f.kw_only) for f in fields(rec)] == [
        (f.name, f.default, f.compare, f.hash, f.repr, f.kw_only) for f in fields(std)
    ]
    assert str(inspect.signature(rec)) == str(inspect.signature(std))
    assert rec.__match_args__ == std.__match_args__
    for args, kw in [((1,), {}), ((2, "y", (1, 2), 3, 4), {"marks": {"k": 1}})]:
        o, s = rec(*args, **kw), std(*args, **kw)
        assert repr(o) == repr(s)
        assert hash(o) == hash(s)
        assert dataclasses.asdict(o) == dataclasses.asdict(s)
        assert repr(dataclasses.replace(o, b="z")) == repr(dataclasses.replace(s, b="z"))
    a, b = rec(1, e=0, marks={"k": 1}), rec(1, e=6, marks={})
    assert a == b and hash(a) == hash(b)  # neither e nor marks is compared
    assert std(1, d=0) != std(1, d=5) and rec(1, d=0) != rec(1, d=5)  # d is compared ...
    assert hash(rec(1, d=0)) == hash(rec(1, d=5))  # ... but not hashed
    assert std(1, e=0) == std(1, e=6) and rec(1, e=0) == rec(1, e=6)
    assert rec(1) != std(1) and rec(1) != (1, "x", (), 0, 0)


def test_a_record_cannot_change():
    cls, _ = twins()
    obj = cls(1)
    for name in ("a", "b", "marks", "new"):
        with pytest.raises(FrozenInstanceError):
            setattr(obj, name, 2)
        with pytest.raises(FrozenInstanceError):
            delattr(obj, name)
    assert obj == cls(1)


def test_a_record_refuses_a_method_it_would_replace():
    with pytest.raises(TypeError, match="defines __eq__"):

        @record
        class Odd:
            a: int

            def __eq__(self, other):
                return True


def test_a_record_compiles_only_init_and_only_when_first_used(monkeypatch):
    compiled = []
    create = dataclasses._create_fn
    monkeypatch.setattr(dataclasses, "_create_fn", lambda name, *a, **k: compiled.append(name)
                        or create(name, *a, **k))  # fmt: skip
    thing = ours()
    assert compiled == []  # the standard decorator: six for each class, at once
    thing(1), thing(2)
    assert compiled == ["__init__"]  # Thing's, once; Base was never made
    assert thing.__init__.__qualname__ == "Thing.__init__"
    assert inspect.signature(thing.__mro__[1]).parameters.keys() == {"marks"}
    assert compiled == ["__init__", "__init__"]  # asking for Base's signature compiled it


def test_a_record_init_runs_post_init_and_factories():
    @record
    class Base:
        items: list = field(default_factory=list)

        def __post_init__(self):
            object.__setattr__(self, "seen", len(self.items))

    @record
    class Child(Base):
        n: int = 0

    a, b = Child(), Child([1, 2], n=3)
    assert (a.items, a.seen, b.items, b.seen, b.n) == ([], 0, [1, 2], 2, 3)
    assert a.items is not Child().items  # a new list each time
    with pytest.raises(TypeError, match="defines __init__"):

        @record
        class Own:
            a: int

            def __init__(self, a):
                pass


def spec_objects():
    """Every record object of the bundled specs, and the tables kgen reads beside them."""
    seen, out = set(), []

    def walk(obj):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            out.append(obj)
            for f in fields(obj):
                walk(getattr(obj, f.name))
        elif isinstance(obj, (tuple, list)):
            for item in obj:
                walk(item)

    walk(load_all(sorted((ROOT / "isa").glob("*.yaml"))))
    walk(conflicts.known_encodings())
    walk(operands.known_versions())
    return out


def check_frozen_dataclass(obj) -> None:
    """What a frozen dataclass guarantees, on one object."""
    cls = type(obj)
    copy = dataclasses.replace(obj)
    assert copy == obj and hash(copy) == hash(obj) and copy is not obj
    shown = ", ".join(f"{f.name}={getattr(obj, f.name)!r}" for f in fields(obj) if f.repr)
    assert repr(obj) == f"{cls.__qualname__}({shown})"
    for f in fields(obj):
        with pytest.raises(FrozenInstanceError):
            setattr(obj, f.name, getattr(obj, f.name))
        other = dataclasses.replace(obj, **{f.name: object()})
        assert (other == obj) is (not f.compare), f"{cls.__name__}.{f.name}"


def test_every_spec_object_is_a_frozen_dataclass():
    objects = spec_objects()
    kinds = {type(o) for o in objects}
    assert len(objects) > 150 and len(kinds) > 20
    assert all(record_module._eq is type(o).__eq__ for o in objects)
    for obj in objects:
        check_frozen_dataclass(obj)


def test_the_check_sees_a_broken_record(monkeypatch):
    spec = load_all([ROOT / "isa" / "rmpopt.yaml"])[0]
    check_frozen_dataclass(spec.instruction)
    # equality that forgets a field
    monkeypatch.setattr(model.Instruction, "__record_compare__", staticmethod(lambda obj: ()))
    with pytest.raises(AssertionError):
        check_frozen_dataclass(spec.instruction)
    monkeypatch.undo()
    # a field that can be assigned
    monkeypatch.setattr(model.Instruction, "__setattr__", object.__setattr__)
    with pytest.raises(pytest.fail.Exception):
        check_frozen_dataclass(spec.instruction)


def test_compiling_init_runs_no_class_hook_again():
    """The class is made once: its bases' __init_subclass__ (with the class's keywords) and
    its attributes' __set_name__ run when it is defined, as for the standard decorator, and
    never again when its __init__ is compiled."""
    made, named = [], []

    class Registered:
        def __init_subclass__(cls, tag: str, **kw):
            super().__init_subclass__(**kw)
            made.append((cls.__name__, tag))

    class Named:
        def __set_name__(self, owner, name):
            named.append((owner.__name__, name))

    for decorate in (dataclass(frozen=True), record):
        made.clear(), named.clear()

        @decorate
        class Thing(Registered, tag="t"):
            a: int
            b: int = field(default=0, kw_only=True)
            helper = Named()

        assert (Thing(1, b=2).a, Thing(3).b) == (1, 0), decorate
        assert made == [("Thing", "t")] and named == [("Thing", "helper")], decorate


def test_a_record_whose_init_cannot_be_written_fails_where_it_is_defined():
    """A field without a default after one with a default is refused when the class is
    defined, as the standard decorator refuses it, not when it is first called."""
    for decorate in (dataclass(frozen=True), record):
        with pytest.raises(TypeError, match="non-default argument 'b' follows default"):

            @decorate
            class Base:
                a: int = 0

            @decorate
            class Thing(Base):
                b: int

    @record
    class Fine(Base):  # after keyword-only fields and InitVars, a default may come first
        c: int = field(default=0, kw_only=True)
        d: dataclasses.InitVar[int] = 1

        def __post_init__(self, d):
            object.__setattr__(self, "e", d)

    assert (Fine(c=2, d=5).c, Fine().e) == (2, 1)


def test_a_mark_orders_and_hashes_as_the_ordered_dataclass_it_was():
    from codegen.diagnostics import Mark

    @dataclass(frozen=True, order=True)
    class Old:
        path: str
        line: int
        col: int

    grid = [
        (p, line, col) for p in ("a.yaml", "b.yaml", "") for line in (0, 1, 10) for col in (0, 2)
    ]
    for x in grid:
        assert hash(Mark(*x)) == hash(Old(*x))
        for y in grid:
            new, old = (Mark(*x), Mark(*y)), (Old(*x), Old(*y))
            for op in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"):
                assert getattr(new[0], op)(new[1]) == getattr(old[0], op)(old[1]), (x, op, y)
    assert sorted(Mark(*x) for x in reversed(grid)) == [Mark(*x) for x in sorted(grid)]
    for op in ("__lt__", "__le__", "__gt__", "__ge__"):
        assert getattr(Mark("a", 1, 1), op)(("a", 1, 1)) is NotImplemented
    with pytest.raises(TypeError):
        Mark("a", 1, 1) < Old("a", 1, 1)  # noqa: B015 - the comparison is what is tested
