"""Pages, JSON/SSE feeds, Prometheus exposition and Grafana dashboards (see DESIGN.md)."""
