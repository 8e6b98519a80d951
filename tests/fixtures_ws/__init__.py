"""The local WebSocket API's test material: Powertools' own API Gateway WebSocket event fixtures
(aws-powertools/powertools-lambda-python, tests/events/apiGatewayWebSocketApi*.json, MIT-0), and
handlers standing in for the stream and broadcaster functions (handlers.py)."""
