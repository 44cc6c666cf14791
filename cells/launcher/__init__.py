"""The cell launcher: starts the embedded services a cell needs (NATS, PostgreSQL, the cells).

It sits above both planes (it seeds the control plane's database and starts workers); nothing in
the runtime imports it. The NATS names and assets both planes share are in `cells.contract.jetstream`.
"""

from cells.launcher.nats import NatsStartError, NatsSupercluster, nats_server_binary

__all__ = ["NatsStartError", "NatsSupercluster", "nats_server_binary"]
