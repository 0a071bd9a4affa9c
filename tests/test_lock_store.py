"""mesocare.lock_store.SafeRedisLockStore against the machine's Redis (fails, never skips, without it)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from rasa.utils.endpoints import EndpointConfig

from mesocare.lock_store import SafeRedisLockStore
from mesocare.runner import free_port

REDIS_DB = 1


@pytest.fixture
def prefix() -> Iterator[str]:
    tag = f"locktest{uuid.uuid4().hex[:10]}"
    client = redis.Redis(port=6379, db=REDIS_DB, socket_timeout=2)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        pytest.fail(f"Redis on 127.0.0.1:6379 is needed: {type(exc).__name__}")
    yield tag
    for key in client.scan_iter(f"{tag}:*"):
        client.delete(key)


def store(prefix: str, port: int = 6379) -> SafeRedisLockStore:
    return SafeRedisLockStore(EndpointConfig(url="127.0.0.1", port=port, db=REDIS_DB, key_prefix=prefix))


def test_two_instances_never_get_the_same_ticket(prefix: str) -> None:
    """Rasa's store issues tickets by GET then SET; ours in a transaction: no number is handed out twice."""
    stores = [store(prefix), store(prefix)]
    tickets: list[int] = []
    lock = threading.Lock()

    def take(s: SafeRedisLockStore) -> None:
        for _ in range(100):
            number = s.issue_ticket("conv", lock_lifetime=60)
            with lock:
                tickets.append(number)

    threads = [threading.Thread(target=take, args=(s,)) for s in stores for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(tickets) == 400
    assert len(set(tickets)) == 400


def test_one_conversation_is_handled_by_one_instance_at_a_time(prefix: str) -> None:
    a, b = store(prefix), store(prefix)
    inside: list[int] = []
    overlaps: list[bool] = []

    async def turn(s: SafeRedisLockStore, n: int) -> None:
        async with s.lock("conv", lock_lifetime=30, wait_time_in_seconds=0.02):
            overlaps.append(bool(inside))
            inside.append(n)
            await asyncio.sleep(0.05)
            inside.remove(n)

    async def main() -> None:
        await asyncio.gather(*(turn(a if n % 2 else b, n) for n in range(10)))

    asyncio.run(main())
    assert len(overlaps) == 10 and not any(overlaps)
    assert not redis.Redis(db=REDIS_DB).exists(f"{prefix}:lock:conv")  # released: nothing left behind


def test_redis_unreachable_the_turn_goes_on_under_a_local_lock(prefix: str) -> None:
    s = store(prefix, port=free_port())  # nothing listens there
    order: list[str] = []

    async def turn(n: int) -> None:
        async with s.lock("conv", wait_time_in_seconds=0.01):
            order.append(f"in{n}")
            await asyncio.sleep(0.02)
            order.append(f"out{n}")

    async def main() -> None:
        await asyncio.gather(turn(1), turn(2))

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 3
    assert order in (["in1", "out1", "in2", "out2"], ["in2", "out2", "in1", "out1"])
