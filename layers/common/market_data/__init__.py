"""Shared code of the market-data functions: configuration, models, cache and DynamoDB access."""
