"""``record``: ``@dataclass`` for the classes on the relay's start path, cheaper to define.

On Python 3.11 and 3.12, ``@dataclass`` writes each method it adds (``__init__``, ``__repr__``,
``__eq__``; ``__setattr__``, ``__delattr__`` and ``__hash__`` when frozen) as source text and
compiles it while the class is being defined: 0.3-1 ms a class, a fifth of what ``tunnel-client
run`` spends before it is ready (docs/performance.md). ``record`` lets ``dataclass`` generate what
must be fast or exact (``__init__``, the frozen guards) and gives every record the same
``__repr__``, ``__eq__`` and ``__hash__``, which read the class's fields when called. They return
what the generated ones would: same text, same comparisons, same hash rules; ``dataclasses.fields``,
``replace`` and ``asdict`` work as before. It is for classes whose ``repr``/``==`` are not on a
hot path (a generated ``__eq__`` is about twice as fast).
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform, overload

_T = TypeVar("_T")


@overload
def record(cls: type[_T], /) -> type[_T]: ...


@overload
def record(*, frozen: bool = False, slots: bool = False, kw_only: bool = False, eq: bool = True,
           repr: bool = True) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(field_specifiers=(dataclasses.field,))
def record(cls: type[_T] | None = None, /, *, frozen: bool = False, slots: bool = False, kw_only: bool = False,
           eq: bool = True, repr: bool = True) -> type[_T] | Callable[[type[_T]], type[_T]]:
    """``dataclasses.dataclass`` with these arguments, with uncompiled ``__repr__``/``__eq__``/``__hash__``."""

    def wrap(cls: type[_T]) -> type[_T]:
        own = set(vars(cls))
        made = dataclasses.dataclass(cls, frozen=frozen, slots=slots, kw_only=kw_only, repr=False, eq=False)
        if repr and "__repr__" not in own:
            _add(made, "__repr__", _repr_of(made))
        if eq and "__eq__" not in own:
            _add(made, "__eq__", _eq_of(made))
        if eq and ("__hash__" not in own or (vars(cls)["__hash__"] is None and "__eq__" in own)):
            # dataclass's rule when no __hash__ is written: frozen -> a hash of the compared fields, else unhashable
            if frozen:
                _add(made, "__hash__", _hash_of(made))
            else:
                made.__hash__ = None  # type: ignore[assignment]
        return made

    return wrap if cls is None else wrap(cls)


def _add(cls: type, name: str, fn: Callable[..., Any]) -> None:
    fn.__name__ = name
    fn.__qualname__ = f"{cls.__qualname__}.{name}"
    setattr(cls, name, fn)


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """A function returning the tuple of these attributes (attrgetter returns a bare value for one name)."""
    if not names:
        return lambda _: ()
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return attrgetter(*names)


def _repr_of(cls: type) -> Callable[[Any], str]:
    shown = [f.name for f in dataclasses.fields(cls) if f.repr]

    @reprlib.recursive_repr()
    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{self.__class__.__qualname__}({inner})"

    return __repr__


def _eq_of(cls: type) -> Callable[[Any, object], Any]:
    key = _getter(tuple(f.name for f in dataclasses.fields(cls) if f.compare))

    def __eq__(self: Any, other: object) -> Any:
        if other.__class__ is self.__class__:
            return key(self) == key(other)
        return NotImplemented

    return __eq__


def _hash_of(cls: type) -> Callable[[Any], int]:
    key = _getter(tuple(f.name for f in dataclasses.fields(cls) if (f.compare if f.hash is None else f.hash)))

    def __hash__(self: Any) -> int:
        return hash(key(self))

    return __hash__
