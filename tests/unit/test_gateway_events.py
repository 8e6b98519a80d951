"""Local requests become the events API Gateway HTTP APIs (payload 2.0) would send."""

from __future__ import annotations

from local_stack.gateway import _path_pattern, build_event


def test_a_get_becomes_a_v2_event_with_route_key_query_and_source_ip() -> None:
    event = build_event(
        method="GET",
        target="/api/market-data/prices?pairs=BTC/USDT&pairs=ETH/USDT&empty=",
        headers={"host": "127.0.0.1:3000", "user-agent": "curl/8"},
        body=b"",
        source_ip="127.0.0.1",
        route_key="GET /api/market-data/prices",
        path_parameters={},
    )
    assert event["version"] == "2.0"
    assert event["routeKey"] == event["requestContext"]["routeKey"] == "GET /api/market-data/prices"
    assert event["rawPath"] == "/api/market-data/prices"
    assert event["queryStringParameters"] == {"pairs": "BTC/USDT,ETH/USDT", "empty": ""}  # repeats joined
    assert event["requestContext"]["http"] == {
        "method": "GET",
        "path": "/api/market-data/prices",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "curl/8",
    }
    assert "body" not in event and event["isBase64Encoded"] is False


def test_binary_bodies_are_base64_and_path_parameters_are_extracted() -> None:
    event = build_event(
        method="POST",
        target="/x",
        headers={},
        body=b"\xff\x00",
        source_ip="127.0.0.1",
        route_key="POST /x",
        path_parameters={"pair": "SOL-USDT"},
    )
    assert event["isBase64Encoded"] is True and event["body"] == "/wA="
    assert event["pathParameters"] == {"pair": "SOL-USDT"}
    pattern = _path_pattern("/api/market-data/whitelist/{pair}")
    match = pattern.match("/api/market-data/whitelist/SOL-USDT")
    assert match and match.groupdict() == {"pair": "SOL-USDT"}
    assert not pattern.match("/api/market-data/whitelist/SOL/USDT")
