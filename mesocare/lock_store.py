"""Rasa's Redis lock store, made atomic and safe when Redis is down (endpoints.prod.yml: lock_store).

Rasa 3.6's RedisLockStore changes a lock by read-modify-write (GET, then SET): two instances taking a
ticket for one conversation in the same instant can both get the same number and process the conversation
at once, and a release can overwrite a ticket just issued. Here every change is a Redis transaction
(WATCH/MULTI, retried on conflict).

When Redis cannot be reached, Rasa's store raises LockError before the message is handled and the REST
channel answers `[]`: the patient gets nothing, not even the emergency instruction, and nothing is
escalated. Here the turn goes on under this instance's own in-memory lock instead (one warning per outage,
no conversation id or text): each instance still handles a conversation's turns one at a time, and the
red-flag reply and its escalation go out. What is lost while Redis is down is only the guarantee across
instances (two instances could process one conversation together if its messages reached both at once;
socket.io is sticky per client address in nginx, and escalations are idempotent per conversation).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from typing import Any

import redis
from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, InMemoryLockStore, LockError, RedisLockStore
from rasa.utils.endpoints import EndpointConfig

logger = logging.getLogger(__name__)
TICKET_ATTEMPTS = 3  # tickets one message may take when the one it waited on expired

REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
DEFAULT_SOCKET_TIMEOUT_S = 2.0  # Rasa's default is 10 s: a hung Redis would hold every turn that long
WARN_EVERY_S = 60.0
LockChange = Callable[[TicketLock | None], TicketLock | None]


class SafeRedisLockStore(RedisLockStore):
    """Atomic tickets in Redis; this instance's own lock while Redis is unreachable."""

    def __init__(self, endpoint_config: EndpointConfig) -> None:
        kwargs: dict[str, Any] = dict(endpoint_config.kwargs or {})
        kwargs.setdefault("socket_timeout", DEFAULT_SOCKET_TIMEOUT_S)
        super().__init__(host=endpoint_config.url or "localhost", **kwargs)
        self._local = InMemoryLockStore()
        self._warned_at = 0.0

    def _transact(self, conversation_id: str, change: LockChange) -> None:
        """Read the lock, apply `change`, write the result (None: delete) in one Redis transaction; a
        concurrent write by another instance makes it start again."""
        key = self.key_prefix + conversation_id
        while True:
            with self.red.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    lock = change(TicketLock.from_dict(json.loads(raw)) if raw else None)
                    pipe.multi()
                    if lock is None or not lock.tickets:
                        pipe.delete(key)
                    else:
                        pipe.set(key, lock.dumps())
                    pipe.execute()
                    return
                except redis.exceptions.WatchError:
                    continue

    def issue_ticket(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME) -> int:
        """A new ticket, taken atomically."""
        issued: list[int] = []

        def add(lock: TicketLock | None) -> TicketLock:
            lock = lock or self.create_lock(conversation_id)
            issued[:] = [lock.issue_ticket(lock_lifetime)]
            return lock

        self._transact(conversation_id, add)
        return issued[0]

    def update_lock(self, conversation_id: str) -> None:
        """Drop expired tickets, atomically."""

        def expire(lock: TicketLock | None) -> TicketLock | None:
            if lock:
                lock.remove_expired_tickets()
            return lock

        self._transact(conversation_id, expire)

    def finish_serving(self, conversation_id: str, ticket_number: int) -> None:
        """Remove this ticket; the lock goes when no ticket is left (atomically, so a ticket another
        instance issued meanwhile is never lost)."""

        def remove(lock: TicketLock | None) -> TicketLock | None:
            if lock:
                lock.remove_ticket_for(ticket_number)
            return lock

        self._transact(conversation_id, remove)

    def cleanup(self, conversation_id: str, ticket_number: int) -> None:
        """Release the ticket; a Redis failure here is logged, not raised (the ticket expires by itself)."""
        try:
            self.finish_serving(conversation_id, ticket_number)  # deletes the lock when it is empty
        except REDIS_DOWN:
            self._warn("lock store: Redis unreachable while releasing a lock; it expires by itself")

    @asynccontextmanager
    async def lock(
        self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME, wait_time_in_seconds: float = 1
    ) -> AsyncGenerator[TicketLock, None]:
        """Rasa's ticket lock in Redis; this instance's in-memory lock when Redis is unreachable."""
        try:
            for attempt in range(TICKET_ATTEMPTS):
                ticket = self.issue_ticket(conversation_id, lock_lifetime)
                try:
                    acquired = await self._acquire_lock(conversation_id, ticket, wait_time_in_seconds)
                    break
                except LockError:
                    # Our ticket vanished while we waited (it expired behind a crashed instance's ticket):
                    # Rasa would drop the message (REST answers []); queue again instead, a few times.
                    if attempt == TICKET_ATTEMPTS - 1:
                        raise
                    logger.warning("lock store: ticket lost while waiting; queueing again")
        except REDIS_DOWN:
            self._warn("lock store: Redis unreachable; this instance uses its own lock until it is back")
            async with self._local.lock(conversation_id, lock_lifetime, wait_time_in_seconds) as local:
                yield local
            return
        try:
            yield acquired
        finally:
            self.cleanup(conversation_id, ticket)

    def _warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S or not self._warned_at:
            self._warned_at = now
            logger.warning(text)

