"""`make run-prod` (mesocare/prod.py): two Rasa instances and two action servers behind nginx, against the
machine's PostgreSQL, Redis and RabbitMQ, on private databases, queue and lock prefix. Fails (never skips)
when one of those services is missing."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests
from socket_patient import SocketPatient
from sqlalchemy import create_engine, text

from mesocare.prod import (
    ProdConfig,
    ProdError,
    ProdPorts,
    check_services,
    drop_database,
    nginx_config,
    pool_sizes,
    prepare,
    warm_up,
)
from mesocare.runner import Stack, free_port, new_secrets
from mesocare.settings import RASA_JWT_SECRET, ROOT
from mesocare.staff.messages import rasa_api_headers

MODEL = Path(os.environ.get("MESOCARE_TEST_MODEL", ROOT / "models" / "mesocare.tar.gz"))
PG = "postgresql+psycopg2://postgres@127.0.0.1:5432"
BROKER = "amqp://guest:guest@127.0.0.1:5672/"
RED_FLAG = "since the injections my vision has gone blurry"
QUESTIONS = [
    "what is mesolifting", "who is it for", "how should I prepare", "does it hurt",
    "how long is the recovery", "what side effects can I get", "when will I see results",
    "how many stages are there", "can I wear makeup afterwards", "is there an allergy test",
    "how do I book", "can I drink alcohol before the treatment",
]
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
               "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
               "--logfile", "/var/log/redis/ci.log"]
RABBITMQCTL = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
RABBITMQ_OUTAGE_S = 12.0


@dataclass
class Prod:
    stack: Stack
    cfg: ProdConfig
    ports: ProdPorts
    jwt_secret: str

    @property
    def public(self) -> str:
        return self.cfg.public_url

    def instance(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports.rasa[i % len(self.ports.rasa)]}"

    def tracker_events(self, sender: str) -> list[dict]:
        resp = requests.get(f"{self.instance(0)}/conversations/{sender}/tracker",
                            params={"include_events": "ALL"}, headers=rasa_api_headers(self.jwt_secret),
                            timeout=30)
        resp.raise_for_status()
        return resp.json()["events"]

    def tracker_user_texts(self, sender: str) -> list[str]:
        return [e["text"] for e in self.tracker_events(sender) if e["event"] == "user"]

    def red_flag_escalations(self) -> dict[str, int]:
        engine = create_engine(self.cfg.db_url)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT conversation_id, count(*) FROM escalations "
                                     "WHERE trigger = 'red_flag' GROUP BY conversation_id")).all()
        engine.dispose()
        return {cid: n for cid, n in rows}


def post(url: str, sender: str, message: str, timeout: float = 90) -> list[dict]:
    resp = requests.post(f"{url}/webhooks/rest/webhook", json={"sender": sender, "message": message},
                         timeout=timeout)
    resp.raise_for_status()
    return resp.json()


def is_emergency(replies: list[dict]) -> bool:
    return any(r.get("custom", {}).get("data", {}).get("urgency") == "emergency" for r in replies)


async def _queue_messages(name: str, delete: bool) -> int:
    import aio_pika

    conn = await aio_pika.connect(BROKER)
    try:
        channel = await conn.channel()
        queue = await channel.declare_queue(name, passive=True)
        count = queue.declaration_result.message_count
        if delete:
            await queue.delete(if_unused=False, if_empty=False)
        return count
    finally:
        await conn.close()


async def _audit_queue(name: str) -> None:
    """A durable queue bound to Rasa's fanout exchange: a copy of every event Rasa publishes."""
    import aio_pika

    conn = await aio_pika.connect(BROKER)
    try:
        channel = await conn.channel()
        exchange = await channel.declare_exchange("rasa-exchange", aio_pika.ExchangeType.FANOUT)
        queue = await channel.declare_queue(name, durable=True)
        await queue.bind(exchange, "")
    finally:
        await conn.close()


async def _drain(name: str) -> list[dict]:
    """Take every message now in queue `name` (decoded events)."""
    import aio_pika

    conn = await aio_pika.connect(BROKER)
    try:
        channel = await conn.channel()
        queue = await channel.declare_queue(name, passive=True)
        events = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            events.append(json.loads(message.body))
        return events
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prod]:
    if not MODEL.exists():
        pytest.fail(f"No trained model at {MODEL}: run `make train` first")
    tag = f"prodtest{uuid.uuid4().hex[:10]}"
    cfg = ProdConfig(
        public_port=free_port(), db_url=f"{PG}/{tag}", tracker_db_url=f"{PG}/{tag}_tracker",
        lock_prefix=tag, broker_queue=tag, var_dir=tmp_path_factory.mktemp("prod"),
        # a killed instance's conversation is locked until its ticket expires: keep that short here
        lock_lifetime_s=20,
    )
    ports = ProdPorts.free(2, 2)
    secrets = new_secrets()
    try:
        stack = prepare(cfg, ports, MODEL, secrets)
    except ProdError as exc:  # PostgreSQL, Redis or RabbitMQ missing: a failure, never a skip
        pytest.fail(str(exc.code))
    stack.start()
    try:
        stack.wait_ready(timeout=420)
        warm_up(ports, secrets[RASA_JWT_SECRET])
        yield Prod(stack, cfg, ports, secrets[RASA_JWT_SECRET])
    finally:
        stack.stop()
        for url in (cfg.db_url, cfg.tracker_db_url):
            drop_database(url)
        try:
            asyncio.run(_queue_messages(tag, delete=True))
        except Exception:  # noqa: BLE001 - the queue may not exist if Rasa never started
            pass


def test_pools_fit_under_max_connections() -> None:
    """N x (pool + overflow) + (M + 2) x 15 + 10 <= max_connections; too much is refused."""
    assert pool_sizes(ProdConfig(rasa_instances=2, action_instances=2), 100) == (5, 10)
    pool, overflow = pool_sizes(ProdConfig(rasa_instances=4, action_instances=2), 100)
    assert 4 * (pool + overflow) + 4 * 15 + 10 <= 100
    with pytest.raises(ProdError, match="max_connections"):
        pool_sizes(ProdConfig(rasa_instances=2, sql_pool_size=20, sql_max_overflow=20), 100)
    with pytest.raises(ProdError, match="TICKET_LOCK_LIFETIME"):
        ProdConfig(lock_lifetime_s=10, action_timeout_s=6).check()


def test_a_missing_service_stops_run_prod_with_one_line() -> None:
    with pytest.raises(ProdError, match="Redis at 127.0.0.1:.* does not answer"):
        check_services(ProdConfig(redis_url=f"redis://127.0.0.1:{free_port()}/1"))
    with pytest.raises(ProdError, match="RabbitMQ at 127.0.0.1:.* does not answer"):
        check_services(ProdConfig(broker_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/"))


def test_nginx_config_exposes_no_internal_port_publicly(tmp_path: Path) -> None:
    ports = ProdPorts.free(2, 2)
    conf = nginx_config(ProdConfig(public_host="0.0.0.0"), ports, tmp_path)
    listens = [line.split()[1].rstrip(";") for line in conf.splitlines() if line.strip().startswith("listen")]
    public = [x for x in listens if not x.startswith("127.0.0.1:")]
    assert public and all(x == "0.0.0.0:8081" for x in public)
    assert f"127.0.0.1:{ports.action_proxy}" in listens and f"127.0.0.1:{ports.rasa_api_proxy}" in listens
    assert conf.count(f"server 127.0.0.1:{ports.rasa[1]} ") == 2  # REST and socket.io upstreams


@pytest.mark.live
def test_public_address_serves_channels_site_and_staff_only(prod: Prod) -> None:
    replies = post(prod.public, f"pub-{uuid.uuid4().hex}", "what is mesolifting")
    assert replies and replies[0].get("text")
    handshake = requests.get(f"{prod.public}/socket.io/", params={"EIO": "4", "transport": "polling"},
                             headers={"Origin": prod.public}, timeout=10)
    assert handshake.status_code == 200 and '"sid"' in handshake.text
    assert requests.get(f"{prod.public}/", timeout=10).status_code == 200
    staff_host = f"{prod.cfg.staff_hostname}:{prod.cfg.public_port}"
    staff = requests.get(f"{prod.public}/login", headers={"Host": staff_host}, timeout=10)
    assert staff.status_code == 200 and "password" in staff.text.lower()
    # Rasa's HTTP API (even with a valid JWT) and the action server's paths are not reachable publicly
    auth = rasa_api_headers(prod.jwt_secret)
    for path in ("/conversations/x/tracker", "/model", "/model/parse", "/status", "/version", "/domain",
                 "/webhook", "/health", "/actions"):
        for method in ("GET", "POST"):
            resp = requests.request(method, f"{prod.public}{path}", headers=auth, json={}, timeout=10)
            assert resp.status_code in (403, 404), (method, path, resp.status_code)
    assert requests.get(f"{prod.public}/webhooks/rest/webhook", timeout=10).status_code == 403
    # the internal action address is on 127.0.0.1 only and still wants the shared secret
    internal = f"http://127.0.0.1:{prod.ports.action_proxy}/webhook"
    assert requests.post(internal, json={}, timeout=10).status_code == 401


def scripted_conversations(tag: str, count: int, turns: int, red_turn: int, mark: str
                           ) -> tuple[dict[str, list[str]], set[str]]:
    """`count` conversations of `turns` numbered questions (every text distinct); every fifth has the red flag
    at `red_turn`. Returns {conversation id: texts} and the red-flag conversations."""
    run = uuid.uuid4().hex[:8]
    conversations = {}
    for c in range(count):
        texts = [QUESTIONS[(c + t) % len(QUESTIONS)] + " " + mark.format(t + 1) for t in range(turns)]
        if c % 5 == 0:
            texts[red_turn] = RED_FLAG
        conversations[f"{tag}-{run}-{c:02d}"] = texts
    return conversations, {cid for cid, texts in conversations.items() if RED_FLAG in texts}


@pytest.mark.live
def test_fifty_conversations_alternating_instances(prod: Prod) -> None:
    """50 conversations x 10 turns at once, each turn to the other instance: nothing lost or doubled,
    exactly one escalation per red-flag conversation, the emergency reply on the red-flag turn."""
    conversations, red = scripted_conversations("load", 50, 10, red_turn=3, mark="({})")
    answered: dict[str, list[list[dict]]] = {}

    def talk(item: tuple[int, tuple[str, list[str]]]) -> None:
        c, (cid, texts) = item
        answered[cid] = [post(prod.instance(c + t), cid, msg) for t, msg in enumerate(texts)]

    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(talk, enumerate(conversations.items())))

    for cid, texts in conversations.items():
        assert all(answered[cid]), f"{cid}: a turn got no answer"
        assert prod.tracker_user_texts(cid) == texts, cid
        if cid in red:
            assert is_emergency(answered[cid][3]), cid
    escalated = {cid: n for cid, n in prod.red_flag_escalations().items() if cid in conversations}
    assert escalated == {cid: 1 for cid in red}
    # every event went through RabbitMQ to the worker, which acknowledged it after handling it
    assert _wait(lambda: asyncio.run(_queue_messages(prod.cfg.broker_queue, delete=False)) == 0, 60)


@pytest.mark.live
def test_redis_down_the_patient_still_gets_the_emergency_reply(prod: Prod) -> None:
    """Rasa's own Redis lock store would raise LockError and the REST channel answer []; ours falls back
    to the instance's own lock (mesocare/lock_store.py): the reply and the escalation still happen."""
    sender = f"redis-{uuid.uuid4().hex}"
    try:
        subprocess.run(["redis-cli", "shutdown", "nosave"], capture_output=True, timeout=10)
        assert _wait(lambda: not _redis_up(), 10), "Redis did not stop"
        started = time.monotonic()
        replies = post(prod.public, sender, RED_FLAG, timeout=30)
        assert is_emergency(replies), replies
        assert time.monotonic() - started < 10
        assert prod.red_flag_escalations().get(sender) == 1
        assert post(prod.instance(1), sender, "what is mesolifting", timeout=30)
        # socket.io: emits cannot go through Redis; the instance holding the socket delivers them itself
        async def over_socket() -> str:
            async with SocketPatient(prod.instance(0)) as patient:
                await patient.say(RED_FLAG)
                return await patient.reply_with("999")

        assert "999" in asyncio.run(over_socket())
    finally:
        if not _redis_up():
            subprocess.run(REDIS_START, check=True, timeout=30)
        assert _wait(_redis_up, 20), "Redis did not come back"
    # Redis back: the instances use it again
    assert post(prod.instance(0), f"redis-back-{uuid.uuid4().hex}", "does it hurt")
    assert prod.tracker_user_texts(sender) == [RED_FLAG, "what is mesolifting"]


@pytest.mark.live
def test_a_reply_sent_through_the_other_instance_reaches_a_socketio_patient(prod: Prod) -> None:
    """The patient's socket is held by instance 0; a bot message executed on instance 1 (as a staff reply is,
    through whichever instance nginx picks) reaches it live through Redis (mesocare/socketio_manager.py)."""
    channel = f"{prod.cfg.lock_prefix}-socketio"
    redis_client = redis.Redis.from_url(prod.cfg.redis_url)

    def listening() -> bool:  # an instance listens from its first socket.io client on (and after a restart)
        return dict(redis_client.pubsub_numsub(channel)).get(channel.encode(), 0) >= 1

    async def run() -> tuple[str, dict]:
        async with SocketPatient(prod.instance(0)) as patient:
            await patient.say("hello")
            await patient.reply_with("automated assistant")  # the greeting, from instance 0
            assert await asyncio.to_thread(_wait, listening, 60), "instance 0 does not listen on Redis"
            resp = await asyncio.to_thread(
                requests.post, f"{prod.instance(1)}/conversations/{patient.session}/execute",
                params={"output_channel": "latest"}, json={"name": "utter_goodbye"},
                headers=rasa_api_headers(prod.jwt_secret), timeout=30)
            resp.raise_for_status()
            return await patient.reply_with("Goodbye", timeout=10), resp.json()

    text, body = asyncio.run(run())
    assert text.startswith("Goodbye, and take care") and body["tracker"]["sender_id"]


@pytest.mark.live
def test_rabbitmq_down_the_action_path_covers_then_the_broker_path_recovers(prod: Prod) -> None:
    """RabbitMQ stopped (`rabbitmqctl stop_app`, always started again): every patient is answered and the
    action path stores exactly one escalation per red-flag conversation. RabbitMQ back: with both action
    servers stopped (so only the worker can store a case) red flags in new conversations are escalated
    from the queue: Rasa and the worker reconnected by themselves, and every event of the outage reached
    RabbitMQ afterwards (an audit queue bound to Rasa's fanout exchange holds each one exactly once).

    What Rasa (rasa/core/brokers/pika.py, aio-pika 8 robust connection) does with the events of the outage:
    publishing is a background task, so the turn never waits for the broker; a failed publish is logged at
    error level (mesocare/logscrub.py redacts the event) and the event is kept in the instance's memory
    (`_unpublished_events`), then published again by the reconnect callback once RabbitMQ answers (aio-pika
    retries every 5 s), in each instance's order: a conversation whose turns went to both instances may
    reach the worker out of order. Buffered, not lost, unless the instance stops or dies before RabbitMQ
    is back: that buffer is in memory only (then the action path's record is the only one)."""
    if not Path(RABBITMQCTL).exists():  # a failure, never a skip (like a missing service in `prod`)
        pytest.fail("rabbitmqctl not found: RabbitMQ must be installed for tests/test_prod.py")
    run = uuid.uuid4().hex[:8]
    down_red = [f"rmq-down-{run}-red-{i}" for i in range(3)]
    down_plain = [f"rmq-down-{run}-faq-{i}" for i in range(2)]
    back_red = [f"rmq-back-{run}-red-{i}" for i in range(3)]
    worker = prod.stack.service("worker")
    assert worker.proc is not None and worker.log_path is not None
    worker_pid = worker.proc.pid
    audit = f"{prod.cfg.broker_queue}_audit"
    asyncio.run(_audit_queue(audit))
    timings: dict[str, float] = {}
    try:
        try:
            started = time.monotonic()
            subprocess.run([RABBITMQCTL, "stop_app"], check=True, capture_output=True, timeout=60)
            assert _wait(lambda: not _amqp_up(), 10), "RabbitMQ still accepts connections"
            stopped = time.monotonic()
            timings["stop_app"] = stopped - started
            for i, cid in enumerate(down_red):
                started = time.monotonic()
                assert is_emergency(post(prod.instance(i), cid, RED_FLAG, timeout=30)), cid
                timings[f"red flag reply {i}"] = time.monotonic() - started
                assert post(prod.instance(i + 1), cid, "what is mesolifting", timeout=30), cid
            for i, cid in enumerate(down_plain):
                assert post(prod.instance(i), cid, QUESTIONS[i + 2], timeout=30), cid
            # stored by the action path: nothing reaches the worker while RabbitMQ is down
            escalated = {c: n for c, n in prod.red_flag_escalations().items()
                         if c.startswith(f"rmq-down-{run}")}
            assert escalated == {cid: 1 for cid in down_red}
            # longer than aio-pika's 5 s reconnect interval: Rasa's and the worker's first attempts fail
            time.sleep(max(0.0, RABBITMQ_OUTAGE_S - (time.monotonic() - stopped)))
            assert not _amqp_up(), "RabbitMQ came back during phase 1"
        finally:
            # Rasa's exchange is not durable: RabbitMQ's restart drops it with the audit queue's binding
            # (the worker's and Rasa's robust channels declare and bind again). Rasa is held still (SIGSTOP)
            # until the audit queue is bound again, so that it sees what Rasa publishes on reconnecting.
            rasa = [svc.proc for svc in prod.stack.services
                    if svc.name.startswith("rasa-") and svc.proc and svc.proc.poll() is None]
            for proc in rasa:
                os.killpg(proc.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                subprocess.run([RABBITMQCTL, "start_app"], capture_output=True, timeout=120)
                subprocess.run([RABBITMQCTL, "await_startup"], capture_output=True, timeout=120)
                assert _wait(_amqp_up, 60), "RabbitMQ did not come back"
                timings["start_app"] = time.monotonic() - started
                asyncio.run(_audit_queue(audit))
            finally:
                for proc in rasa:
                    os.killpg(proc.pid, signal.SIGCONT)
        down_ids = _escalation_ids(prod, down_red)

        # phase 2: only the worker can store a case (both action servers stopped)
        actions = [svc.name for svc in prod.stack.services if svc.name.startswith("actions-")]
        try:
            for name in actions:
                prod.stack.stop_service(name)
            started = time.monotonic()
            for i, cid in enumerate(back_red):
                assert is_emergency(post(prod.instance(i), cid, RED_FLAG, timeout=30)), cid
            # Rasa and the worker retry every 5 s: allow a few rounds
            stored = _wait(lambda: set(back_red) <= set(prod.red_flag_escalations()), 45)
            assert stored, "the worker stored no escalation from the queue after RabbitMQ came back"
            timings["broker path: escalations stored"] = time.monotonic() - started
        finally:
            for name in actions:
                if prod.stack.service(name).proc.poll() is not None:
                    prod.stack.start_service(name)
        escalated = {c: n for c, n in prod.red_flag_escalations().items()
                     if c.startswith((f"rmq-down-{run}", f"rmq-back-{run}"))}
        assert escalated == {cid: 1 for cid in down_red + back_red}

        # every event of these conversations reached RabbitMQ once, the outage's included
        conversations = down_red + down_plain + back_red
        stored_events = sorted((cid, e["event"], e["timestamp"])
                               for cid in conversations for e in prod.tracker_events(cid))
        published: list[dict] = []

        def caught_up() -> bool:
            published.extend(e for e in asyncio.run(_drain(audit)) if e.get("sender_id") in conversations)
            return len(published) >= len(stored_events)

        assert _wait(caught_up, 30), f"{len(published)} of {len(stored_events)} events reached RabbitMQ"
        assert sorted((e["sender_id"], e["event"], e["timestamp"]) for e in published) == stored_events
    finally:
        asyncio.run(_queue_messages(audit, delete=True))
    # the worker reconnected by itself (same process, its log says it retried) and handled the outage's
    # events after the restart: it merged them into the action's records
    assert worker.proc.pid == worker_pid and worker.proc.poll() is None
    merged = _wait(lambda: all(f"escalation {i} merged" in worker.log_path.read_text() for i in down_ids), 30)
    assert merged, "the red flags sent while RabbitMQ was down never reached the worker"
    log_text = worker.log_path.read_text()
    assert re.search(r"Connection attempt to .* failed", log_text), "the worker never retried"
    assert "guest:guest@" not in log_text
    assert _wait(lambda: asyncio.run(_queue_messages(prod.cfg.broker_queue, delete=False)) == 0, 60)
    stamps = {cid: [e["timestamp"] for e in published if e["sender_id"] == cid] for cid in conversations}
    print("timings (s):", {k: round(v, 1) for k, v in timings.items()}, "| events in RabbitMQ:",
          len(published), "| order kept per conversation:", all(t == sorted(t) for t in stamps.values()))


@pytest.mark.live
def test_kill_one_instance_mid_run(prod: Prod) -> None:
    """kill -9 one Rasa instance while 20 conversations run: the client retries the failed turn on the
    other instance; every patient is answered and no escalation is lost (runs last: it kills rasa-2)."""
    conversations, red = scripted_conversations("kill", 20, 6, red_turn=2, mark="[{}]")
    answered: dict[str, list[list[dict]]] = {}
    retried: dict[str, set[int]] = {cid: set() for cid in conversations}
    sent = itertools.count()
    victim = prod.stack.service("rasa-2").proc
    assert victim is not None

    def send(cid: str, c: int, t: int, msg: str) -> list[dict]:
        if next(sent) == 30:
            os.kill(victim.pid, signal.SIGKILL)
        for attempt in range(4):
            try:
                return post(prod.instance(c + t + attempt), cid, msg, timeout=30)
            except requests.RequestException:  # a real client tries again: the other instance
                retried[cid].add(t)
        raise AssertionError(f"{cid} turn {t}: no instance answered")

    def talk(item: tuple[int, tuple[str, list[str]]]) -> None:
        c, (cid, texts) = item
        answered[cid] = [send(cid, c, t, msg) for t, msg in enumerate(texts)]

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(talk, enumerate(conversations.items())))
    assert victim.wait(timeout=10) == -signal.SIGKILL
    assert any(retried.values()), "the kill hit no turn in flight"

    for cid, texts in conversations.items():
        assert all(answered[cid]), cid
        got = prod.tracker_user_texts(cid)
        # at least once: a turn the killed instance had stored before dying may appear twice, nothing else
        deduped = [m for i, m in enumerate(got) if i == 0 or m != got[i - 1]]
        assert deduped == texts, cid
        assert len(got) - len(texts) <= len(retried[cid]), cid
        if cid in red:
            assert is_emergency(answered[cid][2]), cid
    escalated = {cid: n for cid, n in prod.red_flag_escalations().items() if cid in conversations}
    assert escalated == {cid: 1 for cid in red}
    # nginx takes the dead instance out: the public address keeps answering
    for i in range(6):
        assert post(prod.public, f"after-kill-{uuid.uuid4().hex[:8]}-{i}", "how do I book", timeout=30)


def _redis_up() -> bool:
    ping = subprocess.run(["redis-cli", "ping"], capture_output=True, text=True, timeout=5)
    return ping.stdout.strip() == "PONG"


def _amqp_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
        return True
    except OSError:
        return False


def _escalation_ids(prod: Prod, conversations: list[str]) -> list[int]:
    engine = create_engine(prod.cfg.db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id FROM escalations WHERE trigger = 'red_flag' "
                                 "AND conversation_id = ANY(:c)"), {"c": conversations}).all()
    engine.dispose()
    return [r[0] for r in rows]


def _wait(check, seconds: float) -> bool:  # noqa: ANN001 - a predicate
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False

