"""What the server tells its operators: Prometheus metrics (``metrics``, ``state``) and one JSON
access log line per HTTP request (``access``)."""
