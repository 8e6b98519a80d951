"""How far the server's clock is from this machine's, from the ``Date`` header of each answer.

A price's age is the server's "now" minus its ``timestamp``. Measured with this machine's clock
instead, a clock a few seconds off makes every price look older (a false stale flag) or younger (a
stale price that looks fresh) by exactly that much, so ages are taken on the server's clock.

``Date`` has a resolution of one second: at some instant between sending the request (``sent``)
and receiving the answer (``received``), the server's clock read within ``[Date, Date + 1 s)``.
So the offset (server minus local) lies within ``[Date - received, Date + 1 s - sent]``. Each
answer gives such bounds; intersecting them tightens the estimate well below a second after a few
answers. Bounds that stop intersecting mean a clock jumped (either side's): the estimate starts
over from the latest answer rather than trusting either.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime

DATE_RESOLUTION_MS = 1_000


@dataclass(frozen=True, slots=True)
class SkewBounds:
    """The server's clock minus this machine's, in ms: somewhere in ``[low_ms, high_ms]``."""

    low_ms: float
    high_ms: float

    @property
    def offset_ms(self) -> float:
        return (self.low_ms + self.high_ms) / 2

    @property
    def uncertainty_ms(self) -> float:
        """How far the true offset can be from ``offset_ms``."""
        return (self.high_ms - self.low_ms) / 2


def parse_http_date(value: str) -> float | None:
    """A ``Date`` header as ms since the epoch; None when it cannot be read."""
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # HTTP dates are GMT; a naive parse means the zone was left out
        return None
    return moment.timestamp() * 1000


class ClockSkew:
    """The running estimate. Not thread-safe: one per poller or stream follower."""

    def __init__(self) -> None:
        self._bounds: SkewBounds | None = None
        self.restarts = 0  # how many times the bounds stopped intersecting (a clock jumped)

    @property
    def bounds(self) -> SkewBounds | None:
        return self._bounds

    @property
    def known(self) -> bool:
        return self._bounds is not None

    @property
    def offset_ms(self) -> float:
        """The best estimate; 0 (this machine's clock taken as right) before any answer."""
        return self._bounds.offset_ms if self._bounds else 0.0

    def server_now_ms(self, local_now_ms: float) -> float:
        return local_now_ms + self.offset_ms

    def observe_date(self, date_header: str | None, sent_ms: float, received_ms: float) -> None:
        """Bounds from one answer's ``Date``, the request sent at ``sent_ms`` and its answer
        received at ``received_ms`` (this machine's clock, ms)."""
        if not date_header:
            return
        server_ms = parse_http_date(date_header)
        if server_ms is None:
            return
        self._intersect(SkewBounds(server_ms - received_ms, server_ms + DATE_RESOLUTION_MS - sent_ms))

    def observe_server_time(self, server_ms: float, received_ms: float) -> None:
        """A lower bound from a time the server stamped on a message before sending it (a
        heartbeat's ``at``, an update's newest ``fetchedAt``): the offset is at least
        ``server_ms - received_ms``. With no bounds yet (the stream answered and HTTP never did),
        it starts them assuming the message took under a second on its way, as a jump does below:
        ages are then measured, never left unknown while prices flow; the next ``Date`` checks it."""
        low = server_ms - received_ms
        if self._bounds is None:
            self._bounds = SkewBounds(low, low + DATE_RESOLUTION_MS)
        elif low > self._bounds.high_ms:
            # A jump: the message was stamped later than the bounds allow. Start over assuming the
            # message took less than a second on its way, as the next ``Date`` will check.
            self.restarts += 1
            self._bounds = SkewBounds(low, low + DATE_RESOLUTION_MS)
        else:
            self._bounds = SkewBounds(max(low, self._bounds.low_ms), self._bounds.high_ms)

    def _intersect(self, new: SkewBounds) -> None:
        current = self._bounds
        if current is None:
            self._bounds = new
            return
        low, high = max(current.low_ms, new.low_ms), min(current.high_ms, new.high_ms)
        if low > high:
            self.restarts += 1
            self._bounds = new
        else:
            self._bounds = SkewBounds(low, high)
