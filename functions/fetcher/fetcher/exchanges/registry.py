"""The exchanges the fetcher can speak to, by the names EXCHANGES uses.

Adding an exchange is a module beside this one (its client, its parser, its ``Exchange`` and a
``SPEC``) and one line below.
"""

from __future__ import annotations

from fetcher.exchanges import binance, coinbase, kraken
from fetcher.exchanges.base import BuildContext, Exchange, ExchangeSpec
from market_data.config import ConfigurationError, Settings, exchange_base_url

REGISTRY: dict[str, ExchangeSpec] = {
    spec.name: spec
    for spec in (
        binance.SPEC,
        binance.US_SPEC,
        coinbase.SPEC,
        kraken.SPEC,
    )
}


def check_known(names: tuple[str, ...]) -> None:
    """An exchange EXCHANGES names that the fetcher cannot speak to stops start-up, named."""
    unknown = [name for name in names if name not in REGISTRY]
    if unknown:
        raise ConfigurationError(
            f"invalid configuration: EXCHANGES: unknown exchange {unknown[0]!r}: "
            f"known ones are {', '.join(REGISTRY)}"
        )


def base_url(settings: Settings, name: str) -> str:
    """Where the fetcher asks ``name``: its <NAME>_API_BASE_URL, else the exchange's own API."""
    return exchange_base_url(settings, name, REGISTRY[name].base_url)


def build_exchanges(names: tuple[str, ...], shared: BuildContext) -> dict[str, Exchange]:
    """The configured exchanges in EXCHANGES order, each on its base URL (``shared`` has the
    container's client, settings and batch pool)."""
    check_known(names)
    exchanges: dict[str, Exchange] = {}
    for name in names:
        url = base_url(shared.settings, name)
        exchanges[name] = REGISTRY[name].build(
            BuildContext(shared.http, url, shared.settings, shared.batches)
        )
    return exchanges
