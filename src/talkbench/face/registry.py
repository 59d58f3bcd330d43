"""Face backends by name. A registry rejects duplicates so a name always means one model."""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

from talkbench.face.types import FaceBackend

_FACTORIES: dict[str, Callable[[], FaceBackend]] = {}

DEFAULT_BACKEND = "dlib"


def register_backend(name: str, factory: Callable[[], FaceBackend]) -> None:
    if name in _FACTORIES:
        raise ValueError(f"face backend {name!r} is already registered")
    _FACTORIES[name] = factory


def available_backends() -> list[str]:
    return sorted(_FACTORIES)


@lru_cache(maxsize=None)
def get_backend(name: str = DEFAULT_BACKEND) -> FaceBackend:
    """The backend called ``name``, loaded once per process."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown face backend {name!r}; available: {', '.join(available_backends())}")
    return _FACTORIES[name]()


def _dlib() -> FaceBackend:
    from talkbench.face.dlib_backend import DlibBackend

    return DlibBackend()


def _fan() -> FaceBackend:
    from talkbench.face.fan_backend import FanBackend

    return FanBackend()


register_backend("dlib", _dlib)
register_backend("fan", _fan)  # needs: talkbench weights fetch fan-2d
