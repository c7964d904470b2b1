"""Declarative base with a naming convention, the engine and request-scoped sessions."""

from __future__ import annotations

import os
import threading

from sqlalchemy import MetaData, create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(url: str, *, pool_size: int = 10, statement_timeout_ms: int = 600_000) -> Engine:
    return create_engine(
        url,
        pool_pre_ping=True,  # a restarted database is noticed and reconnected without a restart
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        pool_recycle=1800,
        connect_args={
            "connect_timeout": 5,
            "options": f"-c statement_timeout={statement_timeout_ms} -c TimeZone=UTC",
            "application_name": "batchsvc",
        },
    )


class Database:
    """Engine and session factory of one process, created lazily after any fork.

    gunicorn forks workers after importing the app; a pool inherited across a fork would
    share sockets between processes, so each process builds its own on first use.
    """

    def __init__(self, url_factory, *, pool_size: int = 10, statement_timeout_ms: int = 600_000):
        self._url_factory = url_factory
        self._pool_size = pool_size
        self._statement_timeout_ms = statement_timeout_ms
        self._lock = threading.Lock()
        self._pid = None
        self._engine = None
        self._sessionmaker = None

    @property
    def engine(self) -> Engine:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._engine = make_engine(
                        self._url_factory(),
                        pool_size=self._pool_size,
                        statement_timeout_ms=self._statement_timeout_ms,
                    )
                    self._sessionmaker = sessionmaker(self._engine, expire_on_commit=False)
                    self._pid = os.getpid()
        return self._engine

    def session(self) -> Session:
        self.engine  # noqa: B018 - makes sure the factory belongs to this process
        return self._sessionmaker()

    def dispose(self) -> None:
        if self._engine is not None and self._pid == os.getpid():
            self._engine.dispose()
        self._pid = None
