"""``make bench``: the service measured against its physical limits, side by side in one run."""
