"""WSGI type aliases shared by the core and every middleware (PEP 3333)."""
from __future__ import annotations

from types import TracebackType
from typing import Any, Callable, Iterable, Optional, Protocol, Tuple, Type, Union

Environ = dict[str, Any]
Headers = list[Tuple[str, str]]
ExcInfo = Tuple[Type[BaseException], BaseException, Optional[TracebackType]]
OptExcInfo = Union[ExcInfo, Tuple[None, None, None], None]
WriteCallable = Callable[[bytes], object]


class StartResponse(Protocol):
    def __call__(
        self, status: str, headers: Headers, exc_info: OptExcInfo = ..., /
    ) -> WriteCallable: ...


WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
#: A filter: takes the app it wraps, returns the wrapped app.
Filter = Callable[[WSGIApp], WSGIApp]

__all__ = [
    "Environ", "Headers", "ExcInfo", "OptExcInfo", "WriteCallable",
    "StartResponse", "WSGIApp", "Filter",
]
