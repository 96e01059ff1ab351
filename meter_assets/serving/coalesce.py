"""Concurrent reads coalesced into one statement per PostgreSQL round trip.

Each read costs far more in its round trip (the event loop, two socket writes and their
wake-ups, PostgreSQL's protocol work) than in the query itself. A request queues its key
and waits; up to `drainers` tasks, each holding a pooled connection, answer everything
queued in one statement. At low load a batch is one request and nothing waits longer;
under load the requests that arrived during one round trip share the next.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence

from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool


class Coalescer:
    """Answers `fetch(key)` with the text the statement returns for that key.

    `sql` takes the parameters `params(keys)` builds from a batch of keys and returns one row
    per key, in order, as (ordinal from 1, key's customer, text); the customer is checked
    against the key's, so no answer can reach another customer's request. A batch whose
    statement fails is asked again one key at a time, so only the key at fault fails.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        sql: str,
        params: Callable[[Sequence[tuple]], dict],
        drainers: int,
        max_batch: int = 64,
    ):
        self.pool = pool
        self.sql = sql
        self.params = params
        self.drainers = drainers
        self.max_batch = max_batch
        self.queue: list[tuple[tuple, asyncio.Future]] = []
        self.running = 0
        self.statements = 0

    async def fetch(self, key: tuple[int, Hashable]) -> str | None:
        future = asyncio.get_running_loop().create_future()
        self.queue.append((key, future))
        if self.running < self.drainers:
            self.running += 1
            asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            async with self.pool.connection() as conn:
                while self.queue:
                    batch, self.queue = self.queue[: self.max_batch], self.queue[self.max_batch :]
                    await self._answer(conn, batch)
        except Exception as error:  # no connection: nobody queued may wait forever
            queued, self.queue = self.queue, []
            self._fail(queued, error)
        finally:
            self.running -= 1

    async def _answer(self, conn, batch: list[tuple[tuple, asyncio.Future]]) -> None:
        try:
            rows = await self._rows(conn, [key for key, _ in batch])
        except Exception as error:
            if len(batch) == 1:
                self._fail(batch, error)
                return
            # one request's fault must not become its neighbours': ask again, one by one
            for single in batch:
                await self._answer(conn, [single])
            return
        for (_, future), row in zip(batch, rows, strict=True):
            if not future.done():
                future.set_result(row[2])

    async def _rows(self, conn, keys: list[tuple]) -> list[tuple]:
        self.statements += 1
        cursor = conn.cursor(row_factory=tuple_row)
        await cursor.execute(self.sql, self.params(keys), prepare=True)
        rows = await cursor.fetchall()
        if [(row[0], row[1]) for row in rows] != [(n, key[0]) for n, key in enumerate(keys, start=1)]:
            raise RuntimeError("coalesced answers do not match the keys asked")
        return rows

    @staticmethod
    def _fail(batch, error: BaseException) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(error)
