"""The service's domain errors: what went wrong in the words of the service, never of a library.

Logic raises these; each handler maps them to its HTTP answer in one place. The data layer's own
failures (``cache.CacheUnavailableError``, ``store.StoreUnavailableError``) live beside the code
that talks to each store, so that nothing above it needs redis's or botocore's exceptions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar


class InvalidPairError(ValueError):
    """A pair (or list of pairs) that is not ``BASE/QUOTE``; the message names the bad value."""


class InvalidRequestError(ValueError):
    """A malformed body or parameter; the message names the bad value."""


class PayloadTooLargeError(ValueError):
    """A request body over the size the route accepts."""


class PairNotFoundError(LookupError):
    """A pair never submitted (nor seeded)."""


class NotAuthorisedError(PermissionError):
    """An admin request that did not pass the HTTP API's IAM authorisation."""


class PendingCapReachedError(Exception):
    """WHITELIST_MAX_PENDING submissions are already waiting for verification."""


class ActiveCapReachedError(Exception):
    """WHITELIST_MAX_ACTIVE pairs are served or on their way to it (pending) already."""


class UnsupportedMediaTypeError(ValueError):
    """A request body not declared as the media type the route takes."""


class SourceLimitError(Exception):
    """One source address submitted more than its hourly allowance."""


class StatusConflictError(Exception):
    """The pair's status is not one the change may start from (it changed meanwhile)."""


class UnavailableError(Exception):
    """A store the service depends on failed for its own reasons; ``cause`` names what failed.

    The data layer raises its own subclass (``CacheUnavailableError``, ``StoreUnavailableError``)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = type(cause).__name__


P = ParamSpec("P")
R = TypeVar("R")


def translating(
    failures: Callable[[], tuple[type[BaseException], ...]], into: type[UnavailableError]
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A decorator for data-layer calls: a library's failure (``failures()``, looked up at call time
    so that a library is imported only by the calls that use it) is raised as ``into``."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return function(*args, **kwargs)
            except failures() as exc:
                raise into(exc) from exc

        return call

    return decorate
