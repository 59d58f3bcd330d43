"""Face backends by name. A registry rejects duplicates so a name always means one model."""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

from talkbench.errors import TalkbenchError
from talkbench.face.types import FaceBackend
from talkbench.util import Registry

DEFAULT_BACKEND = "dlib"


class FaceBackendError(TalkbenchError, ValueError):
    """A face backend name that is unknown, or registered twice."""


BACKENDS: Registry[Callable[[], FaceBackend]] = Registry("face backend", error=FaceBackendError)


def register_backend(name: str, factory: Callable[[], FaceBackend]) -> None:
    BACKENDS.register(name, factory)


def available_backends() -> list[str]:
    return BACKENDS.names()


@lru_cache(maxsize=None)
def get_backend(name: str = DEFAULT_BACKEND) -> FaceBackend:
    """The backend called ``name``, loaded once per process."""
    return BACKENDS.get(name)()


# the factories import their backend on first use: dlib and torch are heavy
def _dlib() -> FaceBackend:
    from talkbench.face.dlib_backend import DlibBackend

    return DlibBackend()


def _fan() -> FaceBackend:
    from talkbench.face.fan_backend import FanBackend

    return FanBackend()


register_backend("dlib", _dlib)
register_backend("fan", _fan)  # needs: talkbench weights fetch fan-2d
