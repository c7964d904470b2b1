"""Typed tables: batch summaries and the object store, keyed by (tenant, environment)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Double,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
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
        # The common list filters (status=…, user=…, or the same in `_filter`), newest first.
        Index("ix_batch_summaries_status_newest", "tenant", "environment", "status", text("timestamp DESC"), "id"),
        Index("ix_batch_summaries_user_newest", "tenant", "environment", "user", text("timestamp DESC"), "id"),
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
    reason: Mapped[str | None] = mapped_column(Text)  # of the batch that made this version
    # Set when a rollback or an object delete made this (earlier) version current again: when
    # and by which batch. Null for a version written by `batch` at `updated`.
    restored_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    restored_by: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (Index("ix_objects_newest", "tenant", "environment", text("updated DESC"), "id"),)


class ObjectVersion(Base):
    """A state an object had and no longer has (SPEC §12): superseded by a batch that changed
    it, or removed. Written only when something changes: loads that change nothing add nothing.

    A row is the `objects` row as it was, plus: `seq`, which orders one object's archived states;
    `valid_to`, when the state stopped being current (it was current from `restored_at`, when a
    rollback or delete brought it back, else from `updated`: the span as-of reads look in);
    `superseded_by`, the batch that ended it; `removed`, that the object was removed then rather
    than given another version.
    """

    __tablename__ = "object_versions"

    tenant: Mapped[str] = mapped_column(String(256), primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    doc: Mapped[dict] = mapped_column(JSONB)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    user: Mapped[str] = mapped_column(Text)
    batch: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    restored_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    restored_by: Mapped[str | None] = mapped_column(String(128))
    valid_to: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    superseded_by: Mapped[str] = mapped_column(String(128))
    removed: Mapped[bool] = mapped_column(Boolean)


class BatchChange(Base):
    """The change log of one batch for one kind of item: the keys it created, updated and
    removed. What a rollback walks; one row per batch and kind, none for a batch that changed
    nothing. Data kinds (points, curves, matrices, events) join with their own `kind`."""

    __tablename__ = "batch_changes"

    tenant: Mapped[str] = mapped_column(String(256), primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    batch: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created: Mapped[list[str]] = mapped_column(ARRAY(Text))
    updated: Mapped[list[str]] = mapped_column(ARRAY(Text))
    removed: Mapped[list[str]] = mapped_column(ARRAY(Text))


class HistoryWatermark(Base):
    """How far back history is complete in one tenant's environment: versions superseded
    before `pruned_before` were pruned, so as-of reads before it may have no answer (410)."""

    __tablename__ = "history_watermarks"

    tenant: Mapped[str] = mapped_column(String(256), primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    pruned_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BatchStamp(Base):
    """The stamp of one batch that wrote data: a compact number that data rows and observations
    carry to say which batch wrote them, and when (`at`, the batch's time). Stamp 0, which has no
    row, marks data written before history was kept (SPEC §12)."""

    __tablename__ = "batch_stamps"

    tenant: Mapped[str] = mapped_column(String(256), primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    stamp: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    batch: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("tenant", "environment", "batch"),)


class DataRowKey:
    """The key every data row starts with: whose, which object, which property; and the stamp
    of the batch that wrote the row as it is."""

    tenant: Mapped[str] = mapped_column(String(256), primary_key=True, sort_order=-4)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True, sort_order=-3)
    object_id: Mapped[str] = mapped_column(String(256), primary_key=True, sort_order=-2)
    property: Mapped[str] = mapped_column(Text, primary_key=True, sort_order=-1)
    stamp: Mapped[int] = mapped_column(BigInteger, server_default=text("0"), sort_order=10)


class Tenant(Base):
    """A tenant's compact surrogate: the integer that packed data rows carry instead of its text id."""

    __tablename__ = "tenants"

    tenant: Mapped[str] = mapped_column(String(256), primary_key=True)
    key: Mapped[int] = mapped_column(Integer, Identity(), unique=True)


class Series(Base):
    """A time series property of an object, named by a compact id that its chunks carry.

    `span` is how much time one chunk of it holds ('D' a UTC day, 'M' a month, 'Y' a year),
    chosen from its points when it is first written (see store/series/)."""

    __tablename__ = "series"

    tenant_key: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    object_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    property: Mapped[str] = mapped_column(Text, primary_key=True)
    id: Mapped[int] = mapped_column(Integer, Identity())
    span: Mapped[str] = mapped_column(String(1))

    __table_args__ = (UniqueConstraint("tenant_key", "id"),)


class SeriesChunk(Base):
    """The observations of one series in one span (day, month or year), as parallel arrays.

    `times` are microseconds since 1970-01-01 UTC, ascending; `vals` the numbers (NULL where an
    observation's value is not a float64); `codes` how each time was written and each value typed
    (one code when all share it); `extras` the rest of the observations that have more than a
    time and a number, keyed by their time (store/series/ reads and writes this layout)."""

    __tablename__ = "series_chunks"

    tenant_key: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    times: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    vals: Mapped[list[float | None]] = mapped_column(ARRAY(Double))
    codes: Mapped[list[int]] = mapped_column(ARRAY(SmallInteger))
    extras: Mapped[dict | None] = mapped_column(JSONB)
    # per point, the stamp of the batch that wrote it as it is (one when all share it, like codes)
    stamps: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), server_default=text("'{0}'"))


class SeriesVersion(Base):
    """Observations of one chunk that batch `superseded` replaced or removed (SPEC §12), in the
    chunk layout: the points as they were, each with the stamp of the batch that had written it.
    Only changed points are kept: appending observations adds no row here."""

    __tablename__ = "series_versions"

    tenant_key: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    superseded: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    superseded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    times: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    vals: Mapped[list[float | None]] = mapped_column(ARRAY(Double))
    codes: Mapped[list[int]] = mapped_column(ARRAY(SmallInteger))
    stamps: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    extras: Mapped[dict | None] = mapped_column(JSONB)


class Curve(DataRowKey, Base):
    """One forward curve of a curve property: its contracts for one curve date."""

    __tablename__ = "curves"

    ondate: Mapped[date] = mapped_column(Date, primary_key=True)
    doc: Mapped[dict] = mapped_column(JSONB)


class Matrix(DataRowKey, Base):
    """One matrix of a matrix property for one date."""

    __tablename__ = "matrices"

    ondate: Mapped[date] = mapped_column(Date, primary_key=True)
    doc: Mapped[dict] = mapped_column(JSONB)


class Event(DataRowKey, Base):
    """One event of an event-list property, keyed by its id."""

    __tablename__ = "events"

    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    eventtime: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    doc: Mapped[dict] = mapped_column(JSONB)

    __table_args__ = (Index("ix_events_by_time", "tenant", "environment", "object_id", "property", "eventtime"),)


class DataVersion(Base):
    """A state a curve date, matrix date or event had until batch `superseded` replaced or
    removed it (SPEC §12). `kind` is curves, matrices or events; `key` the curve or matrix date
    (YYYY-MM-DD) or the event id; `made` the stamp of the batch that had written the state."""

    __tablename__ = "data_versions"

    tenant: Mapped[str] = mapped_column(String(256), primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    object_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    property: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    superseded: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    superseded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    made: Mapped[int] = mapped_column(BigInteger)
    eventtime: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    doc: Mapped[dict] = mapped_column(JSONB)


class ApiKey(Base):
    """An API key of one tenant's user: its roles, lifetime and keyed hash, never the key.

    Logins find a key by its id before they know the tenant (the id is inside the key), hence
    the index on `id`; key ids are 96 random bits, so the index need not be unique, and the
    table can be distributed by tenant like every other.
    """

    __tablename__ = "api_keys"

    tenant: Mapped[str] = mapped_column(String(256), primary_key=True)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user: Mapped[str] = mapped_column(Text)
    roles: Mapped[list[str]] = mapped_column(ARRAY(Text))
    name: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str | None] = mapped_column(Text)
    expires: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    key_hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index(None, "id"),
        Index("ix_api_keys_newest", "tenant", text("created DESC"), "id"),
    )
