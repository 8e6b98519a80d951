"""Offline local stack: the service handlers on local stand-ins, plus exchange simulators."""
