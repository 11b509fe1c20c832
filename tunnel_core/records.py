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
        # The frozen guards are written here too, unless dataclass has to judge the class: it refuses guards
        # the class writes itself and checks frozen bases.
        guard = frozen and not own & {"__setattr__", "__delattr__"} and not any(
            "__dataclass_fields__" in vars(base) for base in cls.__mro__[1:])
        if not cls.__doc__:  # dataclass would make one from inspect.signature (with no __init__ yet: of object)
            cls.__doc__ = f"{cls.__name__}({', '.join(vars(cls).get('__annotations__', ()))})"
        made = dataclasses.dataclass(cls, frozen=frozen and not guard, slots=slots, kw_only=kw_only, init=False,
                                     repr=False, eq=False)
        if guard:
            _freeze(made, slots)
        if "__init__" not in own:
            plain = len(dataclasses.fields(made)) == len(_specs(made))  # type: ignore[arg-type]
            # ClassVar and InitVar pseudo-fields: the real __init__ now, the simple way
            _add(made, "__init__", _first_init(made, frozen) if plain else _dataclass_init(made, frozen))
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


def _freeze(cls: type, slots: bool) -> None:
    """What ``frozen=True`` adds: assigning or deleting a field raises FrozenInstanceError (the
    ``__init__`` sets fields through ``object.__setattr__``), and a slotted class pickles and copies
    through ``__getstate__``/``__setstate__``; ``__dataclass_params__.frozen`` says so."""
    names = frozenset(_specs(cls))
    parent: Any = cls  # super(parent, self): the next class's __setattr__, as the generated guard calls

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if self.__class__ is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(parent, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if self.__class__ is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(parent, self).__delattr__(name)

    _add(cls, "__setattr__", __setattr__)
    _add(cls, "__delattr__", __delattr__)
    if slots:
        state = _getter(tuple(f.name for f in dataclasses.fields(cls)))

        def __getstate__(self: Any) -> list[Any]:
            return list(state(self))

        def __setstate__(self: Any, values: list[Any]) -> None:
            for f, value in zip(dataclasses.fields(self), values, strict=False):
                object.__setattr__(self, f.name, value)

        _add(cls, "__getstate__", __getstate__)
        _add(cls, "__setstate__", __setstate__)
    vars(cls)["__dataclass_params__"].frozen = True


def _first_init(cls: type, frozen: bool) -> Callable[..., None]:
    """An ``__init__`` that, when first called, has dataclass write the real one, puts it on ``cls`` and runs it.

    Most records are never built before the relay is ready (failures, discovery results, ...), so
    their ``__init__`` is not compiled at import. The real one comes from a stand-in class with the
    same ``Field`` objects: same parameters, defaults, factories, keyword-only rules, frozen-style
    assignment and ``__post_init__`` call.
    """

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        real = _dataclass_init(cls, frozen)
        _add(cls, "__init__", real)
        real(self, *args, **kwargs)

    return __init__


def _dataclass_init(cls: type, frozen: bool) -> Callable[..., None]:
    specs = _specs(cls)
    namespace: dict[str, Any] = {"__annotations__": {name: f.type for name, f in specs.items()},
                                 "__module__": cls.__module__, "__qualname__": cls.__qualname__,
                                 "__doc__": "stand-in", **specs}  # a __doc__: dataclass would make one
    if hasattr(cls, "__post_init__"):
        namespace["__post_init__"] = vars(cls).get("__post_init__")  # only its presence matters: self's is called
    # A slotted class has no class attribute holding a default, so its __init__ must also set the
    # init=False fields that have one (dataclass writes that assignment only when told slots=True).
    stand_in: type = dataclasses.dataclass(type(cls.__name__, (), namespace), frozen=frozen, repr=False,
                                           eq=False, match_args=False, slots="__slots__" in vars(cls))
    init: Callable[..., None] = vars(stand_in)["__init__"]
    return init


def _specs(cls: type) -> dict[str, dataclasses.Field[Any]]:
    """The class's dataclass fields, ClassVar and InitVar pseudo-fields included, in ``__init__`` order."""
    specs: dict[str, dataclasses.Field[Any]] = vars(cls)["__dataclass_fields__"]
    return specs


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
