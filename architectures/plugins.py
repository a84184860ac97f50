"""A name -> object registry for plug-in kinds that sit beside the recurrent cores (attention, image encoders).

    ATTENTION = Registry("attention")
    ATTENTION.register("additive")(AdditiveAttention)
    ATTENTION.get("additve")   # ValueError: unknown attention 'additve'; valid: additive, multiplicative, none

It behaves like the core registry (``registry.py``): duplicates are refused so two files cannot claim one name,
and a typo is one line listing the valid names. Each kind keeps its own registry, so the core registry (which
the run matrix and the tests iterate) holds cores only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Registry:
    """Names of one plug-in ``kind`` (a word for error messages) -> a class or factory."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator (or plain call) adding ``name``; a second claim on a name is refused."""
        def add(obj: Any) -> Any:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj
        return add

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> Any:
        if name not in self._items:
            raise ValueError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}")
        return self._items[name]
