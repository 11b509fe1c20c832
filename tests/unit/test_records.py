"""``tunnel_core.records.record`` behaves as ``dataclasses.dataclass`` with the same arguments.

Each class is declared twice, once with each decorator, and the instances must agree on
``repr``, ``==``, hashability and hash, ``fields``/``replace``/``asdict``, frozenness and
keyword-only construction.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import pickle
from typing import Any, ClassVar

import pytest

from tunnel_core.records import record

FLAGS = [dict(zip(("frozen", "slots", "eq", "repr"), combo, strict=True))
         for combo in itertools.product([False, True], repeat=4)]


def declare(decorator: Any, **kwargs: Any) -> Any:
    @decorator(**kwargs)
    class Point:
        a: int
        b: str = "x"
        secret: str = dataclasses.field(default="", repr=False)
        note: int = dataclasses.field(default=0, compare=False)
        weight: int = dataclasses.field(default=0, hash=False)

    return Point


def bare_repr(obj: object) -> str:
    return repr(obj).split(" object at ")[0]  # without eq/repr both fall back to object's, with an address


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: ",".join(k for k, v in f.items() if v) or "plain")
def test_record_matches_dataclass(flags: dict[str, bool]) -> None:
    made = {deco: declare(deco, **flags) for deco in (dataclasses.dataclass, record)}
    one = {deco: cls(1, "y", "hidden", 5, 6) for deco, cls in made.items()}
    other = {deco: cls(1, "y", "hidden", 7, 6) for deco, cls in made.items()}  # differs in a non-compared field
    third = {deco: cls(2, "y") for deco, cls in made.items()}
    dc, rec = dataclasses.dataclass, record

    assert bare_repr(one[dc]) == bare_repr(one[rec])
    assert "hidden" not in repr(one[rec])
    assert (one[dc] == other[dc]) == (one[rec] == other[rec])
    assert (one[dc] == third[dc]) == (one[rec] == third[rec])
    assert (one[rec] == "not a point") is False
    assert (made[dc].__hash__ is None) == (made[rec].__hash__ is None)
    if flags["frozen"] and flags["eq"]:
        assert hash(one[dc]) == hash(one[rec]) == hash(other[rec])
    assert [f.name for f in dataclasses.fields(one[rec])] == [f.name for f in dataclasses.fields(one[dc])]
    assert dataclasses.asdict(one[rec]) == dataclasses.asdict(one[dc])
    assert dataclasses.replace(one[rec], a=3).a == 3
    assert hasattr(one[rec], "__dict__") == hasattr(one[dc], "__dict__")
    if flags["frozen"]:
        with pytest.raises(dataclasses.FrozenInstanceError):
            one[rec].a = 9
    else:
        one[rec].a = 9
        assert one[rec].a == 9


def test_record_keeps_methods_the_class_writes_itself() -> None:
    @record(frozen=True)
    class Named:
        name: str

        def __repr__(self) -> str:
            return f"<{self.name}>"

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Named) and other.name.lower() == self.name.lower()

        def __hash__(self) -> int:
            return hash(self.name.lower())

    assert repr(Named("A")) == "<A>"
    assert Named("A") == Named("a") and hash(Named("A")) == hash(Named("a"))


def test_record_kw_only_and_subclass() -> None:
    @record(slots=True, kw_only=True)
    class Base:
        kind: str
        extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @record(slots=True, kw_only=True)
    class Child(Base):
        size: int = 0

    with pytest.raises(TypeError):
        Base("positional")  # type: ignore[misc]
    child = Child(kind="k", size=2)
    assert repr(child) == "test_record_kw_only_and_subclass.<locals>.Child(kind='k', extra={}, size=2)"
    assert child == Child(kind="k", size=2) and child != Child(kind="k", size=3)
    assert child != Base(kind="k")  # another class never compares equal, as with dataclass


def test_record_init_is_written_on_first_use_and_matches_dataclass() -> None:
    @record(frozen=True, slots=True)
    class Checked:
        low: int
        high: int = 10
        tags: list[str] = dataclasses.field(default_factory=list)

        def __post_init__(self) -> None:
            if self.low > self.high:
                raise ValueError("low > high")

    assert Checked.__doc__ == "Checked(low, high, tags)"  # a class with no docstring gets its field names
    first = Checked.__init__
    one, two = Checked(1), Checked(2, 5, ["x"])
    assert Checked.__init__ is not first  # the real one replaced the first-use one
    assert (one.low, one.high, one.tags, two.tags) == (1, 10, [], ["x"]) and one.tags is not Checked(1).tags
    with pytest.raises(ValueError, match="low > high"):
        Checked(11)
    with pytest.raises(TypeError):
        Checked()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Checked(1, 2, [], 4)  # type: ignore[call-arg]


def test_record_with_init_var_and_class_var() -> None:
    @record
    class Scaled:
        unit: ClassVar[int] = 100
        value: int
        factor: dataclasses.InitVar[int] = 1

        def __post_init__(self, factor: int) -> None:
            self.value *= factor * self.unit

    assert Scaled(2, 3).value == 600 and repr(Scaled(1)) == (
        "test_record_with_init_var_and_class_var.<locals>.Scaled(value=100)")


Frozen = record(frozen=True, slots=True)(type("Frozen", (), {"__annotations__": {"a": "int", "b": "str"},
                                                              "__module__": __name__, "__qualname__": "Frozen"}))


def test_frozen_record_guards_pickles_and_copies_like_dataclass() -> None:
    one = Frozen(1, "x")
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'a'"):
        one.a = 2
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'b'"):
        del one.b
    for twin in (copy.copy(one), copy.deepcopy(one), pickle.loads(pickle.dumps(one))):
        assert twin == one and twin is not one and hash(twin) == hash(one)
    assert dataclasses.replace(one, b="y") == Frozen(1, "y")
    assert Frozen.__dataclass_params__.frozen  # type: ignore[attr-defined]

    class Loose(Frozen):  # a plain subclass may add attributes that are not fields, as with dataclass
        pass

    loose = Loose(1, "x")
    loose.note = "ok"
    with pytest.raises(dataclasses.FrozenInstanceError):
        loose.a = 5

    with pytest.raises(TypeError, match="non-frozen"):
        @record  # dataclass's own check still applies to a record built on a frozen one
        class Thawed(Frozen):
            c: int = 0


@pytest.mark.parametrize("frozen", [False, True])
def test_slotted_record_sets_fields_that_are_not_init_arguments(frozen: bool) -> None:
    """A slotted class has no class attribute for a default: __init__ must set init=False fields."""

    def shape(decorate: Any) -> Any:
        @decorate(slots=True, frozen=frozen)
        class Counter:
            step: int = 1
            count: int = dataclasses.field(default=0, init=False)
            seen: list[int] = dataclasses.field(default_factory=list, init=False)

        return Counter

    mine, theirs = shape(record)(), shape(dataclasses.dataclass)()
    assert (mine.step, mine.count, mine.seen) == (theirs.step, theirs.count, theirs.seen) == (1, 0, [])
    assert repr(mine) == repr(theirs)
