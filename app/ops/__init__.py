"""Operations: Prometheus metrics, the /metrics endpoint, draining on shutdown."""
