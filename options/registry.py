"""One registry mechanism for every plug-in point: tasks, architectures, attention types, image encoders,
executors and the composed models' kinds.

    ATTENTION = Registry("attention")

    @ATTENTION.register("additive")
    class AdditiveAttention(Attention): ...

    ATTENTION.get("additve")   # UnknownName: unknown attention 'additve'; valid: additive, multiplicative, none

A name is written once, where its object is registered; everything else (CLI choices, tests, `rnnbench list`)
reads ``names()``. Duplicates are refused, so two files cannot silently claim one name. A typo is one line
listing the valid names. ``check`` (optional) finds what is wrong with an object, such as a declaration it
lacks (``undeclared``); such a registration is refused at import with one line, rather than failing later as a
bare traceback inside a run.
``find`` / ``load`` (optional) let a registry know its names before their modules are imported (executors:
listing them must not import Ray or W&B). Standard library only: nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from . import ConfigError


class UnknownName(ConfigError, KeyError):
    """A name no one registered. A ConfigError, so the CLI prints it as one line; a KeyError too, since it is a
    failed lookup (what ``tasks.get`` and ``architectures.entry`` have always raised)."""

    __str__ = Exception.__str__  # KeyError's would quote the message


def undeclared(cls: type, names: Iterable[str], contract: type) -> str | None:
    """"does not declare a, b" for those of ``names`` that no class from ``cls`` up to (not including)
    ``contract`` defines, or None: the contract's own placeholders (a method that raises NotImplementedError,
    a bare annotation) do not count as declared."""
    below = cls.__mro__[: cls.__mro__.index(contract)]
    lacking = [n for n in names if not any(n in vars(k) for k in below)]
    return f"does not declare {', '.join(lacking)}" if lacking else None


class Registry:
    """Names of one ``kind`` (a word for error messages) -> a class, a factory or an instance."""

    def __init__(self, kind: str, check: Callable[[Any], str | None] | None = None,
                 find: Callable[[], Iterable[str]] | None = None, load: Callable[[str], None] | None = None):
        if (find is None) != (load is None):
            raise ValueError("find and load go together: names found before import must be importable")
        self.kind = kind
        self._check, self._find, self._load = check, find, load
        self._items: dict[str, Any] = {}

    def add(self, name: str, obj: Any) -> Any:
        """Register ``obj`` under ``name``; refused: what ``check`` finds wrong, or a second claim on the name."""
        problem = self._check(obj) if self._check else None
        if problem:
            raise ValueError(f"{self.kind} {name!r} {problem}")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj
        return obj

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator form of ``add``: ``@REGISTRY.register("name")`` above a class or a factory."""
        return lambda obj: self.add(name, obj)

    def names(self) -> list[str]:
        return sorted({*self._items, *(self._find() if self._find else ())})

    def get(self, name: str) -> Any:
        if name not in self._items:
            if name not in self.names():
                raise UnknownName(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}")
            self._load(name)  # found before it was imported: importing it registers it
        return self._items[name]

    __getitem__ = get

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def items(self) -> list[tuple[str, Any]]:
        return [(name, self.get(name)) for name in self.names()]
