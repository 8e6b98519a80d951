"""The exchanges: a shared base (errors, one transport, pacing), one module per exchange, a registry.

Only the fetcher imports this package; the read path never reaches an exchange.
"""
