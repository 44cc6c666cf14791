"""The control plane's Prometheus metrics: API latency by route template, the voice webhook's slot
requests, event consumer lag and counts, webhook deliveries, and database and NATS health.

`install_metrics(app, ...)` adds them (and GET /metrics) to a control app; a cell then reports its
runtime's parts through the same `ControlMetrics` (see control/cell/app.py).
"""

from control.observability.http import METRICS_KEY, control_metrics, install_metrics
from control.observability.metrics import ControlMetrics

__all__ = ["METRICS_KEY", "ControlMetrics", "control_metrics", "install_metrics"]
