"""Shared fixtures: real servers on free loopback ports, fresh state for every test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from fetcher.exchanges.registry import REGISTRY

# A loopback port nothing listens on (discard): what an exchange URL is when a test sets none.
UNREACHABLE = "http://127.0.0.1:9"

# No test may reach real AWS: dummy credentials, a region, no instance metadata.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="eu-west-1",
    AWS_EC2_METADATA_DISABLED="true",
    POWERTOOLS_SERVICE_NAME="market-data-test",
    POWERTOOLS_LOG_LEVEL="WARNING",
)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[object]:
    from local_stack.servers import RedisServer

    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server: object) -> Iterator[str]:
    import redis

    from local_stack.servers import RedisServer

    assert isinstance(redis_server, RedisServer)
    if redis_server.process is None:  # a test stopped it to simulate cache loss
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from local_stack.servers import MotoServer

    server = MotoServer().start()
    yield server.url
    server.stop()


@pytest.fixture
def table_name(moto_endpoint: str) -> Iterator[str]:
    """A fresh table built from template.yaml's own definition, deleted afterwards."""
    import boto3

    from local_stack.servers import create_table_from_template

    name = f"market-data-{uuid.uuid4().hex[:8]}"
    create_table_from_template(moto_endpoint, name)
    yield name
    boto3.client("dynamodb", endpoint_url=moto_endpoint).delete_table(TableName=name)


@pytest.fixture
def service_env(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, moto_endpoint: str, table_name: str
) -> Iterator[dict[str, str]]:
    """The environment the template gives the functions, pointed at this test's servers."""
    from market_data import cache, store
    from market_data.config import get_settings

    env = {
        "REDIS_URL": redis_url,
        "MARKET_DATA_TABLE_NAME": table_name,
        "DYNAMODB_ENDPOINT_URL": moto_endpoint,
        "FETCH_INTERVAL_MS": "2000",
        "MARKET_DATA_CACHE_STALE_TTL_MS": "5000",
        "TRADING_PAIRS": '["BTC/USDT","ETH/USDT"]',
        # Backfill asks the exchange for history in a thread of its own: its tests turn it on, so
        # that the other tests' exchange requests are the tick's alone.
        "CANDLE_BACKFILL": "false",
        # Binance alone unless a test says otherwise; no base URL ever leaves this machine (a test
        # that needs an exchange points its URL at a simulator).
        "EXCHANGES": '["binance"]',
        # The admins of events/whitelist_*.json and of the local stack's stand-in for IAM.
        "ADMIN_PRINCIPALS": '["arn:aws:iam::123456789012:user/market-data-admin",'
        '"arn:aws:iam::000000000000:user/local-admin"]',
        **{f"{name.upper()}_API_BASE_URL": UNREACHABLE for name in REGISTRY},
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    cache.reset_client()
    store.reset_table()
    yield env
    get_settings.cache_clear()
    cache.reset_client()
    store.reset_table()


@pytest.fixture
def simulator() -> Iterator[object]:
    """The Binance-protocol simulator over real HTTP on a free loopback port."""
    from local_stack.binance_simulator import BinanceSimulator

    with BinanceSimulator(seed=7) as sim:
        yield sim


@pytest.fixture
def fetcher_env(
    service_env: dict[str, str], simulator: object, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    from market_data.config import get_settings

    base_url = simulator.base_url  # type: ignore[attr-defined]
    monkeypatch.setenv("BINANCE_API_BASE_URL", base_url)
    get_settings.cache_clear()
    return {**service_env, "BINANCE_API_BASE_URL": base_url}


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[object]:
    from local_stack.servers import RedisClusterServers

    cluster = RedisClusterServers().start()
    yield cluster
    cluster.close()


@pytest.fixture
def cluster_env(
    fetcher_env: dict[str, str], redis_cluster: object, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The fetcher's environment, with the cache on a 3-node cluster as on ElastiCache Serverless."""
    import redis

    from local_stack.servers import RedisClusterServers
    from market_data import cache
    from market_data.config import get_settings

    assert isinstance(redis_cluster, RedisClusterServers)
    for node in redis_cluster.nodes:
        client = redis.Redis(port=node.port)
        client.flushall()
        client.close()
    monkeypatch.setenv("REDIS_URL", redis_cluster.url)
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    get_settings.cache_clear()
    cache.reset_client()
    return {**fetcher_env, "REDIS_URL": redis_cluster.url, "REDIS_CLUSTER": "true"}


@pytest.fixture
def make_container(fetcher_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., object]:
    """A fetcher as a fresh container would build it, with environment overrides."""
    from fetcher.deps import build_fetcher
    from market_data import cache, store
    from market_data.config import load_settings

    def make(**env: str) -> object:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        cache.reset_client()
        store.reset_table()
        return build_fetcher(load_settings())

    return make


@pytest.fixture(scope="session")
def redis_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A redis-server speaking only TLS, with a certificate made for 127.0.0.1: (url, CA file)."""
    import subprocess
    import time

    import redis

    from local_stack.servers import free_port

    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
         "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"rediss://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, ssl_ca_certs=str(cert), socket_connect_timeout=0.5)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    client.close()
    yield url, str(cert)
    process.terminate()
    process.wait(10)
