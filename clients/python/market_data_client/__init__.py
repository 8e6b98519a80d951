"""A client of the market-data service."""
