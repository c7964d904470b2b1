"""Typed tables: batch summaries and the object store, keyed by (tenant, environment)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from batchsvc.db import Base


class BatchSummary(Base):
    """The record of one batch load; `doc` is the summary exactly as served."""

    __tablename__ = "batch_summaries"

    tenant: Mapped[str] = mapped_column(String(256), primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    name: Mapped[str | None] = mapped_column(Text)
    user: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    body_hash: Mapped[str] = mapped_column(String(64))
    doc: Mapped[dict] = mapped_column(JSONB)

    __table_args__ = (
        Index("ix_batch_summaries_newest", "tenant", "environment", text("timestamp DESC"), "id"),
        Index(None, "tenant", "environment", "name"),
    )


class StoredObject(Base):
    """One object of a tenant's store; server fields live in columns, the rest in `doc`."""

    __tablename__ = "objects"

    tenant: Mapped[str] = mapped_column(String(256), primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    doc: Mapped[dict] = mapped_column(JSONB)
    version: Mapped[int] = mapped_column(Integer)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    user: Mapped[str] = mapped_column(Text)
    batch: Mapped[str] = mapped_column(String(128))

    __table_args__ = (Index("ix_objects_newest", "tenant", "environment", text("updated DESC"), "id"),)
