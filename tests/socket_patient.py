"""A socket.io client as the website widget is, for the live tests (Rasa's socketio channel)."""

from __future__ import annotations

import asyncio
import uuid

import socketio


class SocketPatient:
    """A session (`session_request`), messages out (`user_uttered`), bot messages into a queue. Long-polling:
    python-engineio's websocket client needs a newer aiohttp than Rasa's."""

    def __init__(self, url: str) -> None:
        self.url, self.session = url, uuid.uuid4().hex
        self.client = socketio.AsyncClient(reconnection=False)
        self.replies: asyncio.Queue[dict] = asyncio.Queue()

    async def __aenter__(self) -> SocketPatient:
        confirmed = asyncio.Event()
        self.client.on("bot_uttered", self.replies.put)
        self.client.on("session_confirm", lambda _sid: confirmed.set())
        await self.client.connect(self.url, socketio_path="/socket.io", transports=["polling"])
        try:
            await self.client.emit("session_request", {"session_id": self.session})
            await asyncio.wait_for(confirmed.wait(), 30)
        except BaseException:
            await self.client.disconnect()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.client.disconnect()

    async def say(self, text: str) -> None:
        await self.client.emit("user_uttered", {"message": text, "session_id": self.session})

    async def turn(self, text: str) -> list[str]:
        """Send `text`, wait for Rasa's acknowledgement; the bot texts of this turn."""
        await self.client.call("user_uttered", {"message": text, "session_id": self.session}, timeout=60)
        await asyncio.sleep(0.2)  # emits for this turn arrive before the acknowledgement; be generous
        got = []
        while not self.replies.empty():
            got.append(self.replies.get_nowait().get("text", ""))
        return got

    async def reply_with(self, needle: str, timeout: float = 15) -> str:
        """The text of the first bot message containing `needle` (earlier ones are skipped)."""
        while needle not in (text := (await asyncio.wait_for(self.replies.get(), timeout)).get("text", "")):
            pass
        return text
