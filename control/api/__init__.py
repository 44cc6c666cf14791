"""The per-cell control API: a Quart app serving one region's tenants (see DESIGN.md, "Regional cells")."""

from control.api.app import create_control_app
from control.api.auth import bootstrap_tenant
from control.api.settings import ControlSettings

__all__ = ["ControlSettings", "bootstrap_tenant", "create_control_app"]
