"""mesocare/socketio_manager.py on the local Redis: JSON on the channel, nothing unpickled, own messages
not delivered twice, and local delivery that never depends on Redis."""

from __future__ import annotations

import asyncio
import json
import pickle
import uuid
from typing import Any

import redis.asyncio as aioredis
from socketio import AsyncServer

from mesocare.socketio_manager import JsonRedisManager, share_across_instances

REDIS_URL = "redis://127.0.0.1:6379/1"  # running on every machine of this kind: a failure, never a skip


class Exploit:
    """Would run code if the listener unpickled it."""

    ran = False

    def __reduce__(self) -> tuple[Any, tuple]:
        return (setattr, (Exploit, "ran", True))


async def _received(channel: str, payloads: list[bytes]) -> list[dict]:
    manager = JsonRedisManager(REDIS_URL, channel=channel)
    got: list[dict] = []

    async def listen() -> None:
        async for message in manager._listen():
            got.append(message)

    task = asyncio.create_task(listen())
    publisher = aioredis.Redis.from_url(REDIS_URL)
    for _ in range(50):  # until the listener has subscribed
        if (await publisher.pubsub_numsub(channel))[0][1] >= 1:
            break
        await asyncio.sleep(0.05)
    for payload in payloads:
        await publisher.publish(channel, payload)
    await asyncio.sleep(0.5)
    task.cancel()
    await publisher.close()
    return got


def test_only_json_objects_come_off_the_channel_and_nothing_is_unpickled() -> None:
    channel = f"test-socketio-{uuid.uuid4().hex}"
    emit = {"method": "emit", "event": "bot_uttered", "data": {"text": "hi"}, "room": "r", "host_id": "x"}
    got = asyncio.run(_received(channel, [pickle.dumps(Exploit()), b"not json", json.dumps([1]).encode(),
                                          json.dumps(emit).encode()]))
    assert got == [emit]
    assert not Exploit.ran


def _with_one_client(url: str, channel: str) -> tuple[JsonRedisManager, list]:
    """A server with the manager and one client in room "session-1"; the list: what the client receives."""
    sio = AsyncServer(async_mode="asgi")
    manager = share_across_instances(sio, url, channel)
    sent: list = []

    async def fake_send(eio_sid: str, pkt: Any) -> None:  # the transport: what the client receives
        sent.append(json.loads(pkt.data[1:])[1])  # socket.io EVENT packet "2[event, data]"

    sio._send_eio_packet = fake_send
    manager.connect("eio-1", "/")
    manager.enter_room(manager.sid_from_eio_sid("eio-1", "/"), "/", "session-1")
    return manager, sent


def test_emits_reach_local_clients_and_go_out_as_json_once() -> None:
    async def run() -> tuple[list, list[dict]]:
        channel = f"test-socketio-{uuid.uuid4().hex}"
        manager, sent = _with_one_client(REDIS_URL, channel)
        listener = aioredis.Redis.from_url(REDIS_URL)
        pubsub = listener.pubsub()
        await pubsub.subscribe(channel)
        await manager.emit("bot_uttered", {"text": "hello"}, room="session-1")
        published = []
        for _ in range(20):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message:
                published.append(json.loads(message["data"]))
        # what another instance published is delivered here; our own message is not delivered again
        await manager._handle_emit({**published[0], "host_id": "other", "data": {"text": "from staff"}})
        await manager._handle_emit(published[0])
        await pubsub.close()
        await listener.close()
        return sent, published

    sent, published = asyncio.run(run())
    assert sent == [{"text": "hello"}, {"text": "from staff"}]
    assert len(published) == 1 and published[0]["room"] == "session-1" and published[0]["method"] == "emit"


def test_local_clients_get_their_messages_while_redis_is_down() -> None:
    async def run() -> list:
        manager, sent = _with_one_client("redis://127.0.0.1:1/0", "unreachable")  # nothing listens there
        await manager.emit("bot_uttered", {"text": "Please call 999 now."}, room="session-1")
        return sent

    assert asyncio.run(run()) == [{"text": "Please call 999 now."}]
