"""The Python client (``clients/python``) against ``make demo``'s stack: statuses through an exchange
outage, a lost cache and a cold start; the stream dropped and followed by polling, then resumed; a
server clock set off by 10 s; revalidation, a 206's missing pairs, history; the ``market-data``
command as a user runs it."""

from __future__ import annotations

import asyncio
import email.utils
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
import redis
from market_data_client import PricesClient, PricesState, StreamFollower, poll
from market_data_client.tracker import Tracker

from tests.e2e.test_local_stack import PAIRS, Stack, start_stack, stop_stack, wait_for
from tests.e2e.test_stream import _fault, environment

pytestmark = pytest.mark.e2e
WANTED = tuple(PAIRS.split(","))
MARKET_DATA = Path(sys.executable).parent / "market-data"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("client"))
    try:
        wait_for(
            lambda: running.get("/api/market-data/prices", params={"pairs": PAIRS}).status_code == 200,
            30,
            "the first tick's prices",
        )
        yield running
    finally:
        stop_stack(running)


class Following:
    """One follower's states, consumed across steps of one scenario (one event loop)."""

    def __init__(self, follower: StreamFollower) -> None:
        self.follower = follower
        self.states: AsyncIterator[PricesState] = aiter(follower)
        self.seen: list[PricesState] = []

    async def until(self, done: Callable[[PricesState], bool], timeout_s: float) -> PricesState:
        try:
            async with asyncio.timeout(timeout_s):
                async for state in self.states:
                    self.seen.append(state)
                    if done(state):
                        return state
        except TimeoutError:
            pass
        last = self.seen[-1] if self.seen else None
        raise AssertionError(f"no such state within {timeout_s} s; last: {last}")

    async def close(self) -> None:
        await self.states.aclose()  # type: ignore[attr-defined]


def poll_until(
    base: str,
    done: Callable[[PricesState], bool],
    timeout_s: float,
    seen: list[PricesState],
    **options: float,
) -> PricesState:
    deadline = time.monotonic() + timeout_s
    with PricesClient(base) as client:
        for state in poll(client, WANTED, refresh_s=None, **options):  # type: ignore[arg-type]
            seen.append(state)
            if done(state):
                return state
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"no such state within {timeout_s} s; statuses {[s.status for s in seen]}")


def all_fresh(state: PricesState) -> bool:
    return state.status == "polling" and set(state.entries) == set(WANTED) and not state.is_stale


# --- reads ---------------------------------------------------------------------------------------


class Recorder(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


def test_a_repeated_read_sends_if_none_match_and_a_304_reuses_the_entries_aged(stack: Stack) -> None:
    recorder = Recorder()
    with PricesClient(stack.base, transport=recorder) as client:
        for _ in range(5):  # a tick may land between two reads: then the next two
            first = client.prices(WANTED)
            again = client.prices(WANTED)
            if again.not_modified:
                break
    assert first.etag and recorder.requests[-1].headers["if-none-match"] == first.etag
    assert again.status_code == 304 and again.entries == first.entries
    tracker = Tracker(WANTED)
    tracker.record_answer(first)
    before = tracker.state()
    time.sleep(1.0)
    tracker.record_answer(again)
    after = tracker.state()
    assert after.event == "not_modified" and after.entries == before.entries
    for pair in WANTED:
        assert (after.pairs[pair].age_ms or 0) >= (before.pairs[pair].age_ms or 0) + 900


def test_a_206_names_the_missing_pairs_and_the_unlisted_apart(stack: Stack) -> None:
    with PricesClient(stack.base) as client:
        answer = client.prices(["BTC/USDT", "foo/usdt"])
    tracker = Tracker(("BTC/USDT", "FOO/USDT"))
    tracker.record_answer(answer)
    state = tracker.state()
    assert answer.status_code == 206 and answer.missing == ("FOO/USDT",)
    assert state.not_listed_pairs == ("FOO/USDT",) and state.missing_pairs == ()
    assert state.status == "polling" and not state.pairs["FOO/USDT"].stale  # missing is not stale


def test_history_reads_candles_oldest_first_up_to_now(stack: Stack) -> None:
    with PricesClient(stack.base) as client:
        history = client.history("btc/usdt", "1m", limit=5)
        price = client.prices(["BTC/USDT"]).entries["BTC/USDT"].price
    times = [candle.time for candle in history.candles]
    assert history.pair == "BTC/USDT" and history.interval == "1m"
    assert 1 <= len(times) <= 5 and times == sorted(times)
    assert times[-1] > time.time() * 1000 - 3 * 60_000  # the interval now open is included
    assert abs(history.candles[-1].close - price) / price < 0.05


# --- statuses through the service's troubles ------------------------------------------------------


@pytest.mark.timeout(180)
def test_statuses_through_an_exchange_outage_and_its_recovery(stack: Stack) -> None:
    async def scenario() -> Following:
        following = Following(StreamFollower(WANTED, base_url=stack.base, refresh_s=1.0))
        try:
            await following.until(lambda s: s.connection == "stream" and all_fresh(s), 20)
            _fault(stack, {"fault": "server_error"})
            try:
                # Binance fails: the pairs go unrefreshed (stale) or move to Coinbase, and the
                # service says so.
                def troubled(state: PricesState) -> bool:
                    moved = any(entry.exchange != "binance" for entry in state.entries.values())
                    return state.service_status == "degraded" and (state.is_stale or moved)

                hit = await following.until(troubled, 30)
                assert hit.service_reason
            finally:
                _fault(stack, None)
            recovered = await following.until(lambda s: s.service_status == "ok" and all_fresh(s), 75)
            assert recovered.connection == "stream"
            return following
        finally:
            await following.close()

    seen = asyncio.run(scenario()).seen
    assert "error" not in {state.status for state in seen}


def test_statuses_through_a_lost_cache_and_its_return(stack: Stack) -> None:
    seen: list[PricesState] = []
    poll_until(stack.base, all_fresh, 15, seen, interval_s=1.0)
    cache = redis.Redis.from_url(environment(stack)["REDIS_URL"])
    with closing(cache):
        cache.execute_command("CLIENT", "PAUSE", "12000", "ALL")
    # Reads fall back to DynamoDB's last known good: stale prices, shown stale, never an error.
    stale = poll_until(stack.base, lambda s: s.status == "stale", 20, seen, interval_s=1.0)
    assert any(view.entry and view.entry.source == "last_known_good" for view in stale.pairs.values())
    poll_until(stack.base, all_fresh, 40, seen, interval_s=1.0)
    assert "error" not in {state.status for state in seen}, [s.error for s in seen if s.error]


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def _accepting(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def _follow_until_fresh(follower: StreamFollower) -> list[PricesState]:
    following = Following(follower)
    try:
        await following.until(all_fresh, 30)
    finally:
        await following.close()
    return following.seen


def test_a_cold_start_is_unavailable_then_fresh_and_never_stale_nor_error(tmp_path: Path) -> None:
    cold = start_stack(tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not _accepting(_port(cold.base)):
            assert time.monotonic() < deadline, "the stack never listened"
            time.sleep(0.05)
        seen = asyncio.run(_follow_until_fresh(StreamFollower(WANTED, base_url=cold.base, refresh_s=0.5)))
    finally:
        stop_stack(cold)
    statuses = [state.status for state in seen]
    assert statuses[0] == "unavailable", statuses  # the 503 before the first tick
    assert seen[0].retry_after_s is not None and seen[0].retry_after_s > 0
    assert not {"stale", "error"} & set(statuses), statuses
    assert not any(state.stale_pairs for state in seen)


# --- the stream dropped --------------------------------------------------------------------------


def _outage(stack: Stack, seconds: float | None) -> None:
    url = stack.base + "/_local/websocket/outage"
    response = (
        httpx.post(url, json={"seconds": seconds}, timeout=5) if seconds else httpx.delete(url, timeout=5)
    )
    response.raise_for_status()


@pytest.mark.timeout(150)
def test_while_the_stream_is_down_prices_come_by_polling_then_it_reconnects_and_resubscribes(
    stack: Stack,
) -> None:
    async def scenario() -> None:
        following = Following(StreamFollower(WANTED, base_url=stack.base, poll_interval_s=2.0, refresh_s=1.0))
        follower, seen = following.follower, following.seen
        try:
            await following.until(lambda s: s.connection == "stream" and all_fresh(s), 20)
            assert follower.connects == 1
            _outage(stack, 10)
            try:
                down_at = len(seen)
                await following.until(lambda s: s.connection == "polling", 10)
                # Prices keep coming over HTTP: a read's answer, fresh, while the stream is refused.
                polled = await following.until(
                    lambda s: s.connection == "polling" and s.event == "answer" and all_fresh(s), 10
                )
                assert polled.last_server_update and polled.last_server_update > time.time() * 1000 - 8_000
                back = await following.until(lambda s: s.connection == "stream" and s.event == "snapshot", 45)
            finally:
                _outage(stack, None)
            assert back.status == "polling" and set(back.entries) == set(WANTED)
            assert follower.connects == 2  # one reconnection, subscribed again (the snapshot)
            # No storm: a handful of jittered attempts over a 10 s outage, not one per loop.
            assert follower.attempts <= 10, follower.attempts
            during = [state.status for state in seen[down_at:]]
            assert "stale" not in during and "error" not in during, during
            # And updates flow again on the new connection.
            await following.until(lambda s: s.event == "update", 12)
        finally:
            await following.close()

    asyncio.run(scenario())


# --- a server clock set off ----------------------------------------------------------------------

# The local stack runs with its wall clock moved (LOCAL_CLOCK_OFFSET_S, local_stack/skewed_clock.py):
# its Date header, the exchanges' times and fetchedAt are all off by the offset, as a server's set wrong.


@pytest.mark.parametrize("offset_s", [10, -10])
def test_a_server_clock_off_by_10_s_still_shows_fresh_prices_fresh(tmp_path: Path, offset_s: int) -> None:
    skewed = start_stack(tmp_path / "stack", {"LOCAL_CLOCK_OFFSET_S": str(offset_s)})
    try:
        response = wait_for(
            lambda: (
                (r := skewed.get("/api/market-data/prices", params={"pairs": PAIRS})).status_code == 200 and r
            ),
            40,
            "prices from the skewed stack",
        )
        # The set-up works: the stack's Date header and the entries' times are off by 10 s.
        date_ms = email.utils.parsedate_to_datetime(response.headers["date"]).timestamp() * 1000
        assert abs(date_ms - time.time() * 1000 - offset_s * 1000) < 1_500
        naive_ages = [time.time() * 1000 - entry["timestamp"] for entry in response.json().values()]
        assert all(abs(age + offset_s * 1000) < 5_500 for age in naive_ages), naive_ages
        seen: list[PricesState] = []
        poll_until(skewed.base, lambda s: len(seen) >= 4, 30, seen, interval_s=1.0, threshold_ms=7_000)
    finally:
        stop_stack(skewed)
    last = seen[-1]
    assert last.skew_ms is not None and abs(last.skew_ms - offset_s * 1000) < 1_000
    ages = []
    for state in seen:
        assert state.status == "polling", (state.status, [v.reason for v in state.pairs.values()])
        for view in state.pairs.values():
            assert view.age_ms is not None and 0 <= view.age_ms <= 7_000, view
            ages.append(view.age_ms)
    # Ages that move through the slot: not a clock ahead of ours read as "no age at all".
    assert max(ages) > 1_000, ages


# --- the command ---------------------------------------------------------------------------------

PRICE = re.compile(r"\d{1,3}(,\d{3})*\.\d{2}")


def test_market_data_prices_prints_each_pair_with_its_price_once(stack: Stack) -> None:
    done = subprocess.run(
        [MARKET_DATA, "prices", "btc/usdt", "ETH/USDT", "--url", stack.base],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if "/" in line.split()[0]}
    assert set(rows) == set(WANTED) and all(PRICE.search(row) for row in rows.values())
    bad = subprocess.run(
        [MARKET_DATA, "prices", "BTC-USDT", "--url", stack.base], capture_output=True, text=True, timeout=30
    )
    assert bad.returncode == 2 and "'BTC-USDT'" in bad.stderr


def test_market_data_watch_shows_prices_live_and_the_connection_and_ctrl_c_exits_0(stack: Stack) -> None:
    watch = subprocess.Popen(
        [MARKET_DATA, "watch", "BTC/USDT", "ETH/USDT", "--url", stack.base],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(8)  # the first read, the stream's snapshot and an update or two
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=10)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0 and "Traceback" not in err, err
    assert "connection: stream" in out and "status: polling" in out
    for pair in WANTED:
        rows = [line for line in out.splitlines() if f" {pair} " in line]
        assert rows and all(PRICE.search(row) for row in rows), out
