"""Engine and session factory. Built once per process (API lifespan, worker main)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def make_engine(url: str, *, pool_size: int = 10, connect_timeout: int = 5) -> AsyncEngine:
    """hide_parameters: a failing statement's error never prints the customer's data into
    logs. A server that does not answer fails a new connection after ``connect_timeout``
    seconds and a wait for a pooled one after 10, instead of holding the caller forever."""
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=20,
        pool_pre_ping=True,
        pool_timeout=10,
        hide_parameters=True,
        connect_args={"connect_timeout": connect_timeout},
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session whose work is committed when the block ends and rolled back when it raises;
    its connection goes back to the pool either way."""
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


def make_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for reads that need one statement's consistency only: autocommit, so a read
    costs its queries and no ``BEGIN``/``COMMIT`` round trips. Same pool as ``engine``."""
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
    )
