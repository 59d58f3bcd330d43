"""The methods by name: the one list of talkbench's own methods, plus the runnable external
presets once ``register_external_methods()`` has put them in.

A name means one method: registering a name twice is a ``MethodError``. Adding a method is a
class with ``info`` and ``generate(task, out)`` (``talkbench.baselines.method.Method``) and one
line in ``BUILTIN_METHODS``.
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Callable

from talkbench.baselines import builtin, vqtalker
from talkbench.baselines.external import ExternalMethod, all_presets
from talkbench.baselines.method import Method, MethodError
from talkbench.util import Registry

MethodFactory = Callable[..., Method]

# The bounds every table needs, then VQTalker's two stages (the ``-tiny`` ones run the checkpoints
# talkbench ships); a factory's keyword options are what ``method_options`` reports.
BUILTIN_METHODS: tuple[tuple[str, MethodFactory], ...] = (
    *builtin.BOUNDS,
    ("vqtalker-tokenizer", vqtalker.VQTalkerTokenizer),
    ("vqtalker-tokenizer-tiny", vqtalker.tiny_tokenizer),
    ("vqtalker", vqtalker.VQTalker),
    ("vqtalker-tiny", vqtalker.tiny_vqtalker),
)


def _builtin_registry() -> Registry[MethodFactory]:
    methods: Registry[MethodFactory] = Registry(kind="method", error=MethodError)
    for name, factory in BUILTIN_METHODS:
        methods.register(name, factory)
    return methods


METHODS = _builtin_registry()


def register_method(name: str, factory: MethodFactory) -> None:
    """Register a method factory under ``name``; a name can be registered only once."""
    METHODS.register(name, factory)


def register_external_methods() -> list[str]:
    """Put every runnable preset in the method registry, so that
    ``get_method("SadTalker", repo=..., python=...)`` returns an ``ExternalMethod``. Safe to call
    more than once; returns the names registered by this call."""
    added = []
    for preset in all_presets():
        if preset.status != "runnable" or preset.name in METHODS:
            continue
        register_method(preset.name, partial(ExternalMethod, preset))
        added.append(preset.name)
    return added


def get_method(name: str, **kwargs) -> Method:
    return METHODS.get(name)(**kwargs)


def method_options(name: str) -> set[str]:
    """The keyword options a registered method's factory takes (e.g. ``device`` for VQTalker's)."""
    parameters = inspect.signature(METHODS.get(name)).parameters.values()
    return {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def method_names() -> list[str]:
    return METHODS.names()
