"""The WebSocket API function."""
