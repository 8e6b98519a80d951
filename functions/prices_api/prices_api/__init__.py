"""The cache-only read API: prices, health and the OpenAPI description. Never calls an exchange."""
