"""Tenant scoping: every query on regional data is filtered by one tenant and its home region.

Two layers, so that forgetting one does not leak data:
- `scoped_select(Model, scope)` writes the filter into the statement explicitly;
- a session bound to a scope with `tenant_session` gets the same filter added to every ORM
  select/update/delete on a regional model (SQLAlchemy's `with_loader_criteria`), and a session with
  no scope refuses such statements unless they are marked `unscoped(stmt, reason)`.
New regional rows in a scoped session take the scope's tenant and region, and a row naming another
tenant or region is refused before it reaches the database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from sqlalchemy import Delete, Select, Update, delete, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from control.db.base import Regional
from control.db.topology import check_region

R = TypeVar("R", bound=Regional)
S = TypeVar("S", Select[Any], Update, Delete)

_SCOPE_KEY: Final = "autospeak.tenant_scope"
_UNSCOPED_OPTION: Final = "autospeak_unscoped"
_STMT_SCOPE_OPTION: Final = "autospeak_scope"


class UnscopedQueryError(RuntimeError):
    """A statement touched regional data without a tenant scope."""


class ScopeViolation(RuntimeError):
    """A row was written for a tenant or region other than the session's scope."""


@dataclass(frozen=True, slots=True)
class TenantScope:
    tenant_id: uuid.UUID
    region: str

    def __post_init__(self) -> None:
        if not isinstance(self.tenant_id, uuid.UUID):
            raise TypeError("tenant_id must be a UUID")
        check_region(self.region)

    def new(self, model: type[R], **values: Any) -> R:
        """Construct a regional row owned by this tenant in its home region."""
        return model(tenant_id=self.tenant_id, region=self.region, **values)


def _require_regional(model: type[Any]) -> None:
    if not (isinstance(model, type) and issubclass(model, Regional)):
        raise TypeError(f"{model!r} is not a regional model; directory tables need no tenant scope")


def _filters(model: type[Regional], scope: TenantScope) -> tuple[Any, Any]:
    return (model.tenant_id == scope.tenant_id, model.region == scope.region)


# The scoped_* builders also carry their scope as an execution option, so that they run in any
# session and the session-level guard still applies the same scope to every table they join.


def scoped_select(model: type[R], scope: TenantScope) -> Select[tuple[R]]:
    _require_regional(model)
    return select(model).where(*_filters(model, scope)).execution_options(**{_STMT_SCOPE_OPTION: scope})


def scoped_update(model: type[Regional], scope: TenantScope) -> Update:
    _require_regional(model)
    return update(model).where(*_filters(model, scope)).execution_options(**{_STMT_SCOPE_OPTION: scope})


def scoped_delete(model: type[Regional], scope: TenantScope) -> Delete:
    _require_regional(model)
    return delete(model).where(*_filters(model, scope)).execution_options(**{_STMT_SCOPE_OPTION: scope})


def unscoped(stmt: S, reason: str) -> S:
    """Mark a deliberate cross-tenant statement (token lookup by hash, residency audit, ...)."""
    if not reason.strip():
        raise ValueError("say why the statement is not tenant scoped")
    return stmt.execution_options(**{_UNSCOPED_OPTION: reason})


def tenant_session(session: AsyncSession | Session, scope: TenantScope) -> AsyncSession | Session:
    """Bind `session` to one tenant; every regional query through it is filtered by the scope."""
    current = session.info.get(_SCOPE_KEY)
    if current is not None and current != scope:
        raise ScopeViolation("a session serves one tenant scope for its whole life")
    session.info[_SCOPE_KEY] = scope
    return session


def scope_of(session: AsyncSession | Session) -> TenantScope | None:
    return session.info.get(_SCOPE_KEY)


@event.listens_for(Session, "do_orm_execute")
def _add_tenant_criteria(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete):
        return
    if state.is_column_load or state.is_relationship_load:
        return  # follow-up loads of rows the scoped query already returned
    if state.execution_options.get(_UNSCOPED_OPTION):
        return
    if not any(issubclass(m.class_, Regional) for m in state.all_mappers):
        return
    session_scope: TenantScope | None = state.session.info.get(_SCOPE_KEY)
    stmt_scope: TenantScope | None = state.execution_options.get(_STMT_SCOPE_OPTION)
    if session_scope is not None and stmt_scope is not None and session_scope != stmt_scope:
        raise ScopeViolation("statement scoped to another tenant than its session")
    scope = session_scope or stmt_scope
    if scope is None:
        raise UnscopedQueryError(
            "query on regional data without a tenant scope: use tenant_session() or unscoped(stmt, reason)"
        )
    tenant_id, region = scope.tenant_id, scope.region
    state.statement = state.statement.options(
        with_loader_criteria(
            Regional,
            lambda cls: (cls.tenant_id == tenant_id) & (cls.region == region),
            include_aliases=True,
        )
    )


@event.listens_for(Session, "before_flush")
def _stamp_new_rows(session: Session, _ctx: Any, _instances: Any) -> None:
    scope: TenantScope | None = session.info.get(_SCOPE_KEY)
    if scope is None:
        return
    for obj in (*session.new, *session.dirty):
        if not isinstance(obj, Regional):
            continue
        if obj.tenant_id is None:
            obj.tenant_id = scope.tenant_id
        if obj.region is None:
            obj.region = scope.region
        if (obj.tenant_id, obj.region) != (scope.tenant_id, scope.region):
            raise ScopeViolation(
                f"{type(obj).__name__} for tenant {obj.tenant_id} in {obj.region!r} "
                f"written through a session scoped to {scope.tenant_id} in {scope.region!r}"
            )
