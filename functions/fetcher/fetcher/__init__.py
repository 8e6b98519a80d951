"""The scheduled fetcher: the only caller of the exchange."""
