"""``tunnel_core.records.record`` behaves as ``dataclasses.dataclass`` with the same arguments.

Each class is declared twice, once with each decorator, and the instances must agree on
``repr``, ``==``, hashability and hash, ``fields``/``replace``/``asdict``, frozenness and
keyword-only construction.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

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
