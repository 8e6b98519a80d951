"""Logger (and, later, metrics and tracer) created once, shared by every function."""

from aws_lambda_powertools import Logger

# POWERTOOLS_SERVICE_NAME and POWERTOOLS_LOG_LEVEL come from the template.
logger = Logger()
