"""The fan-out of each slot to the WebSocket connections."""
