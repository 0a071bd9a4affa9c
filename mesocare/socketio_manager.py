"""socket.io across several Rasa instances (`make run-prod`): python-socketio's Redis manager, speaking JSON.

A socket.io client is connected to one Rasa instance; a bot message for it may come from another (a staff
reply goes through whichever instance nginx picks). With this client manager an emit is delivered to this
instance's own clients at once, never through Redis (so an emergency instruction does not depend on Redis),
and published on a Redis channel for the other instances, which deliver it to theirs; an instance ignores
what it published itself. python-socketio's own Redis manager pickles its messages and unpickles whatever
arrives on the channel; this one sends JSON and never unpickles. While Redis is down, only the
cross-instance part is lost (a warning says so).

Used when MESOCARE_SOCKETIO_REDIS_URL is set (mesocare/prod.py sets it); channel MESOCARE_SOCKETIO_CHANNEL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import RedisError
from socketio import AsyncManager, AsyncRedisManager, AsyncServer

log = logging.getLogger(__name__)

RETRY_S = 1.0
WARN_EVERY_S = 60.0


class JsonRedisManager(AsyncRedisManager):
    """AsyncRedisManager: local clients first, other instances through Redis in JSON (module docstring)."""

    name = "mesocare-json-redis"
    _warned_at = float("-inf")

    async def emit(self, event: str, data: Any, namespace: str | None = None, room: str | None = None,
                   skip_sid: str | None = None, callback: Any = None, **kwargs: Any) -> None:
        namespace = namespace or "/"
        await AsyncManager.emit(self, event, data, namespace, room=room, skip_sid=skip_sid, callback=callback)
        if kwargs.get("ignore_queue") or callback is not None:
            return  # a message from another instance; acknowledgements stay local (Rasa asks for none)
        await self._publish({"method": "emit", "event": event, "data": data, "namespace": namespace,
                             "room": room, "skip_sid": skip_sid, "callback": None, "host_id": self.host_id})

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        if message.get("host_id") != self.host_id:  # ours went to our clients already
            await super()._handle_emit(message)

    async def _publish(self, data: dict[str, Any]) -> Any:
        try:
            return await self.redis.publish(self.channel, json.dumps(data))
        except (RedisError, OSError) as exc:
            if time.monotonic() - self._warned_at > WARN_EVERY_S:  # one line a minute, not one per message
                self._warned_at = time.monotonic()
                log.warning("socket.io: Redis unavailable (%s); messages reach this instance's clients only",
                            type(exc).__name__)
            self._redis_connect()
            return None

    async def _listen(self) -> AsyncIterator[dict[str, Any]]:
        """Decoded messages of the channel; only JSON objects pass, anything else is dropped."""
        while True:
            try:
                async for message in super()._listen():
                    try:
                        data = json.loads(message)
                    except (TypeError, ValueError):
                        continue
                    if isinstance(data, dict):
                        yield data
            except (RedisError, OSError) as exc:
                log.warning("socket.io: cannot listen on Redis (%s); retrying", type(exc).__name__)
                await asyncio.sleep(RETRY_S)
                self._redis_connect()


def share_across_instances(sio: AsyncServer, url: str, channel: str) -> JsonRedisManager:
    """Give `sio` (before it serves) the JSON Redis manager on `channel`."""
    manager = JsonRedisManager(url, channel=channel)
    manager.set_server(sio)
    sio.manager = manager
    sio.manager_initialized = False  # started with the first connection, as python-socketio does
    return manager
