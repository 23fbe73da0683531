"""The shop's database: tables (SQLAlchemy 2 declarative) and the async engine.

``SHOP_DATABASE_URL`` picks the database: a SQLite file by default (``sqlite:///shop.db``,
relative to the working directory), PostgreSQL with ``postgresql://user@host/db``. Plain
URLs are given the async driver (``aiosqlite``, ``asyncpg``), so the usual forms work.

Why async SQLAlchemy: every burrow handler here and every route is a coroutine, so one
event loop drives the database too, with no thread hop per query; asyncpg is the fastest
PostgreSQL driver for Python. The engine is created lazily (first use in each process: the
API, each worker and the scheduler have their own) and the schema with it.

SQLite serialises writers. Every transaction here starts with ``BEGIN IMMEDIATE`` (the
write lock up front, waiting up to ``busy_timeout``), so two writers never deadlock on a
lock upgrade, and the file is in WAL mode so readers in other processes are not blocked.
On PostgreSQL the default READ COMMITTED is enough: each check-and-change is one
conditional ``UPDATE`` (row-locked and re-evaluated) or an insert against a unique key.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    event,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

URL_VARIABLE = "SHOP_DATABASE_URL"
DEFAULT_URL = "sqlite:///shop.db"
#: Key of the PostgreSQL advisory lock that serialises schema creation across processes.
SCHEMA_LOCK = 0x5B0B


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class Product(Base):
    """A product and its stock. ``stock + sold == initial_stock`` always holds."""

    __tablename__ = "products"
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    price_cents: Mapped[int] = mapped_column(Integer)
    stock: Mapped[int] = mapped_column(Integer)
    sold: Mapped[int] = mapped_column(Integer, default=0)
    initial_stock: Mapped[int] = mapped_column(Integer)
    #: The warehouse cannot ship it: fulfilment always fails (to show compensation).
    broken: Mapped[bool] = mapped_column(Boolean, default=False)


class Order(Base):
    """The write model: an order's current status (``pending`` → ``reserved`` →
    ``confirmed``; or ``rejected`` for want of stock; or ``cancelled`` by compensation)."""

    __tablename__ = "orders"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    qty: Mapped[int] = mapped_column(Integer)
    phone: Mapped[str] = mapped_column(String(32))
    amount_cents: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_orders_status_created", "status", "created_at"),)


class ProcessedEvent(Base):
    """Events a consumer has applied, written in the same transaction as the effect: a
    redelivered event finds its row and changes nothing."""

    __tablename__ = "processed_events"
    consumer: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    processed_at: Mapped[float] = mapped_column(Float)


class Payment(Base):
    """The charge of an order (one per order: the primary key)."""

    __tablename__ = "payments"
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    charged_at: Mapped[float] = mapped_column(Float)


class Refund(Base):
    """The refund of a compensated order (one per order: the primary key)."""

    __tablename__ = "refunds"
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    refunded_at: Mapped[float] = mapped_column(Float)


class Compensation(Base):
    """The claim of an order's compensation: inserting it is what makes the compensation
    run once, however often the dead-letter hook is called."""

    __tablename__ = "compensations"
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    reason: Mapped[str] = mapped_column(String(500))
    stock_released: Mapped[int] = mapped_column(Integer)
    compensated_at: Mapped[float] = mapped_column(Float)


class SmsOutbox(Base):
    """SMS messages sent, one per notified event (the SMS gateway's side of the story)."""

    __tablename__ = "sms_outbox"
    event_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(32), index=True)
    phone: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(String(320))
    sent_at: Mapped[float] = mapped_column(Float)


class AuditEvent(Base):
    """The audit trail: every order event as it was published (the event-sourced view)."""

    __tablename__ = "order_events"
    event_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(32), index=True)
    type: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[float] = mapped_column(Float)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


def async_url(url: str) -> URL:
    """``url`` with the async driver of its database (``sqlite`` → ``sqlite+aiosqlite``,
    ``postgresql``/``postgres`` → ``postgresql+asyncpg``); other drivers as given.

    Raises:
        ValueError: not a SQLite or PostgreSQL URL.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(
        f"{URL_VARIABLE}: the shop runs on SQLite or PostgreSQL, not {backend!r} "
        "(e.g. sqlite:///shop.db or postgresql://postgres@127.0.0.1/shop)"
    )


def insert_ignoring_duplicates(table: Any, dialect: str, values: dict[str, Any]) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for ``table`` in ``dialect``: its rowcount is 1
    when the row was new, 0 when its key existed (the claim was someone else's)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).values(**values).on_conflict_do_nothing()


class Database:
    """The engine and sessions of one process, created on first use with the schema.

    Args:
        url: a SQLAlchemy URL (default ``SHOP_DATABASE_URL``, else ``sqlite:///shop.db``).
    """

    def __init__(self, url: str | None = None) -> None:
        self.url = async_url(url or os.environ.get(URL_VARIABLE) or DEFAULT_URL)
        self.dialect = self.url.get_backend_name()
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._ready = asyncio.Lock()

    async def sessions(self) -> async_sessionmaker[AsyncSession]:
        """The session factory, after creating the engine and the schema if needed."""
        if self._sessions is None:
            async with self._ready:
                if self._sessions is None:
                    engine = self._make_engine()
                    await self._create_schema(engine)
                    self._engine = engine
                    self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        return self._sessions

    def _make_engine(self) -> AsyncEngine:
        if self.dialect == "sqlite":
            engine = create_async_engine(self.url, connect_args={"timeout": 60})
            _sqlite_immediate_transactions(engine)
            return engine
        return create_async_engine(self.url, pool_size=10, max_overflow=20, pool_pre_ping=True)

    async def _create_schema(self, engine: AsyncEngine) -> None:
        """Create the tables once, however many processes start at the same moment."""
        async with engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(text(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})"))
            await conn.run_sync(Base.metadata.create_all)
            empty = (await conn.execute(select(Product.sku).limit(1))).first() is None
            if empty:
                await conn.execute(insert(Product), list(DEFAULT_PRODUCTS))

    async def dispose(self) -> None:
        """Close the pool (the next use opens a new one)."""
        engine, self._engine, self._sessions = self._engine, None, None
        if engine is not None:
            await engine.dispose()


def _sqlite_immediate_transactions(engine: AsyncEngine) -> None:
    """WAL mode, a long busy timeout, and ``BEGIN IMMEDIATE`` for every transaction (the
    pysqlite driver's own deferred BEGIN is switched off)."""

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


#: The catalogue a new database starts with (``PUT /products/{sku}`` changes it).
DEFAULT_PRODUCTS: tuple[dict[str, Any], ...] = (
    {"sku": "tea", "name": "Green tea, 100 g", "price_cents": 450, "stock": 1000},
    {"sku": "mug", "name": "Stoneware mug", "price_cents": 1200, "stock": 300},
    {"sku": "kettle", "name": "Copper kettle", "price_cents": 3500, "stock": 20},
    {
        "sku": "cursed-lamp",
        "name": "Lamp the warehouse cannot ship",
        "price_cents": 9900,
        "stock": 1000,
        "broken": True,
    },
)
DEFAULT_PRODUCTS = tuple(
    {"sold": 0, "broken": False, **p, "initial_stock": p["stock"]} for p in DEFAULT_PRODUCTS
)


def changed(result: Any) -> int:
    """The number of rows an INSERT or UPDATE result changed."""
    return int(result.rowcount)
