"""The escalation worker of `make run-prod`: RabbitMQ consumer for mesocare.worker.handle_event.

Rasa's Pika event broker (endpoints.prod.yml) publishes every tracker event to the fanout exchange
`rasa-exchange`, bound to the durable queue MESOCARE_BROKER_QUEUE. This process consumes that queue and
hands each event to `mesocare.worker.handle_event` (the red-flag path, idempotent with the action), then
acknowledges it: an event is acknowledged only after it was handled, so a crash repeats it, never loses it.
It also delivers the escalation outbox. `python -m mesocare.prod_worker --ready FILE` touches FILE once it
consumes, and every few seconds after (the runner's readiness check).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from pathlib import Path

import aio_pika

from mesocare import logscrub, outbox
from mesocare.settings import configured
from mesocare.worker import handle_event

log = logging.getLogger("mesocare.prod_worker")

EXCHANGE = "rasa-exchange"  # rasa.core.brokers.pika.RABBITMQ_EXCHANGE
PREFETCH = 32
TICK_S = 5.0
RETRY_S = 2.0


async def consume(url: str, queue_name: str, ready: Path | None, stop: asyncio.Event) -> None:
    """Consume until `stop` is set; reconnects by itself (aio_pika's robust connection)."""
    connection = await aio_pika.connect_robust(url)
    loop = asyncio.get_running_loop()
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.FANOUT)
        queue = await channel.declare_queue(queue_name, durable=True)  # as Rasa declares it
        await queue.bind(exchange, "")

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            try:
                event = json.loads(message.body)
            except ValueError:
                log.error("broker message is not JSON: dropped")
                await message.reject(requeue=False)
                return
            try:
                await loop.run_in_executor(None, handle_event, event)
            except Exception as exc:  # noqa: BLE001 - keep the event: it goes back to the queue
                log.error("broker event failed (%s): requeued", type(exc).__name__)
                await asyncio.sleep(RETRY_S)
                await message.nack(requeue=True)
                return
            await message.ack()

        await queue.consume(on_message)
        log.info("worker: consuming queue %s", queue_name)
        while not stop.is_set():
            if ready is not None:
                ready.touch()
            await loop.run_in_executor(None, outbox.deliver_if_due)
            try:
                await asyncio.wait_for(stop.wait(), TICK_S)
            except asyncio.TimeoutError:
                pass
    log.info("worker: stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Consume Rasa's events from RabbitMQ (run-prod worker).")
    parser.add_argument("--ready", type=Path, help="file touched while consuming (readiness)")
    args = parser.parse_args(argv)
    url, queue = configured("MESOCARE_BROKER_URL"), configured("MESOCARE_BROKER_QUEUE")
    if not url or not queue:
        raise SystemExit("error: MESOCARE_BROKER_URL and MESOCARE_BROKER_QUEUE must be set (make run-prod)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logscrub.install()

    async def run() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await consume(url, queue, args.ready, stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
