"""Declarative base and the regional mixin that every tenant-data table uses."""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from typing import Any, ClassVar, Final

from sqlalchemy import DateTime, ForeignKeyConstraint, MetaData, String, Uuid, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Fixed names keep migrations and the rendered CockroachDB DDL stable across SQLAlchemy versions.
NAMING: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Chosen when the schema is first migrated; changing it later needs a migration that re-embeds.
EMBEDDING_DIM: Final[int] = int(os.environ.get("AUTOSPEAK_EMBEDDING_DIM", "384"))

class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    # PostgreSQL and CockroachDB both store JSONB.
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONB, list[Any]: JSONB}


def utcnow_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Global:
    """Marker for the directory tables: small, no personal data, readable from every region."""


class Regional:
    """A tenant's data, kept in the tenant's home region.

    `region` is always the tenant's home region (enforced by a foreign key to the tenant directory),
    never the region of the node or cell that wrote the row. It is part of the primary key because a
    PostgreSQL partitioned table needs the partition key in every unique constraint.
    """

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    region: Mapped[str] = mapped_column(String(8), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)


def regional_args(table: str, *extra: Any) -> tuple[Any, ...]:
    """Table args for a regional table: the residency foreign key first, then the table's own."""
    return (
        ForeignKeyConstraint(
            ["tenant_id", "region"],
            ["tenants.id", "tenants.home_region"],
            name=f"fk_{table}_tenant_home",
        ),
        *extra,
    )


def same_region_fk(columns: list[str], target: str, ondelete: str | None = None) -> ForeignKeyConstraint:
    """A reference to another regional row, which is by construction in the same region."""
    return ForeignKeyConstraint(
        [*columns, "region"], [f"{target}.id", f"{target}.region"], ondelete=ondelete
    )


def regional_models() -> list[type[Regional]]:
    return sorted(
        (m.class_ for m in Base.registry.mappers if issubclass(m.class_, Regional)),
        key=lambda cls: cls.__tablename__,  # type: ignore[attr-defined]
    )


def global_models() -> list[type[Global]]:
    return sorted(
        (m.class_ for m in Base.registry.mappers if issubclass(m.class_, Global)),
        key=lambda cls: cls.__tablename__,  # type: ignore[attr-defined]
    )


TOKEN_ROLES: Final = ("owner", "admin", "operator", "viewer")
