"""Frozen, slotted dataclasses made and unpickled by setting their slots directly.

A frozen dataclass sets each field in ``__init__`` through ``object.__setattr__``
(its own ``__setattr__`` refuses), and unpickles by looking its fields up again for
every object.  The parsed pipeline (gitpipe.pipeline.model) and a plan's decisions
are made or unpickled by the hundred thousand in a large pipeline's `status`; these
two decorators keep the classes' behaviour (signature, defaults, equality, hashing,
``FrozenInstanceError`` on a later assignment) and only make those two paths cheaper.
Apply them above ``@dataclass(frozen=True, slots=True)``.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any, TypeVar

_Frozen = TypeVar("_Frozen", bound=type)


def pickled_by_slots(cls: _Frozen) -> _Frozen:
    """Unpickle a frozen, slotted dataclass by setting its slots directly.

    dataclasses' own ``__setstate__`` for such a class looks its fields up again for
    every object; a parsed 10,000-step pipeline is unpickled by every `status` that
    does not answer from its snapshot, and that look-up was most of the load."""
    names = tuple(f.name for f in fields(cls))
    setters = tuple(cls.__dict__[name].__set__ for name in names)

    def __getstate__(self: Any) -> tuple[Any, ...]:
        return tuple([getattr(self, name) for name in names])

    def __setstate__(self: Any, state: tuple[Any, ...] | list[Any]) -> None:
        for set_slot, value in zip(setters, state, strict=True):
            set_slot(self, value)

    cls.__getstate__ = __getstate__  # type: ignore[attr-defined]
    cls.__setstate__ = __setstate__  # type: ignore[attr-defined]
    return cls


#: the fields from which :func:`init_by_slots` sets them as one of a twin class
_TWIN_FROM = 8


def init_by_slots(cls: _Frozen) -> _Frozen:
    """Give a frozen, slotted dataclass an ``__init__`` that sets its slots directly.

    The same signature, defaults and default factories as the dataclass's own; that
    one sets each field through ``object.__setattr__`` (frozen classes must), which
    for the 33 fields of gitpipe.pipeline.model.Step was half of making one.  Setting
    a field afterwards still raises ``FrozenInstanceError``.  Only for classes whose
    fields are all plain ``__init__`` parameters, without ``__post_init__``.

    A class of many fields (Step, a plan's Decision, a StepStatus: one each per step
    of a `status`) has a twin: a class of the same slots, so of the same layout, with
    no ``__setattr__`` of its own.  The new object is made one of the twin while its
    fields are set, each by the interpreter's plain slot store (a sixth of a call to
    the slot's setter), and is one of ``cls`` again before ``__init__`` returns,
    raise or not.  An object of a subclass is set field by field as before."""
    if hasattr(cls, "__post_init__") or any(not f.init or f.kw_only for f in fields(cls)):
        raise TypeError(f"{cls.__name__}: init_by_slots makes plain __init__ methods only")
    params, by_setter, by_store = [], [], []
    scope: dict[str, Any] = {"_new_missing": MISSING, "_cls": cls}
    for each in fields(cls):
        name = each.name
        scope[f"_set_{name}"] = cls.__dict__[name].__set__
        value = name
        if each.default is not MISSING:
            scope[f"_default_{name}"] = each.default
            params.append(f"{name}=_default_{name}")
        elif each.default_factory is not MISSING:
            scope[f"_factory_{name}"] = each.default_factory
            params.append(f"{name}=_new_missing")
            value = f"_factory_{name}() if {name} is _new_missing else {name}"
        else:
            params.append(name)
        by_setter.append(f"    _set_{name}(self, {value})")
        by_store.append(f"            self.{name} = {value}")
    source = f"def __init__(self, {', '.join(params)}):\n"
    if len(by_store) >= _TWIN_FROM:
        scope["_twin"] = type(
            f"_{cls.__name__}Twin", (), {"__slots__": cls.__slots__, "__module__": cls.__module__}
        )
        scope["_set_attribute"] = object.__setattr__  # past the frozen class's refusal
        source += (
            "    if type(self) is _cls:\n"
            "        _set_attribute(self, '__class__', _twin)\n"
            "        try:\n" + "\n".join(by_store) + "\n"
            "        finally:\n"
            "            self.__class__ = _cls\n"
            "        return\n"
        )
    source += "\n".join(by_setter) + "\n"
    exec(source, scope)  # the text above, made from the class's own field names
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[misc]
    return cls
