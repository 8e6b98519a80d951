"""Whitelist submissions: recorded here, verified by the fetcher (see its issue)."""
