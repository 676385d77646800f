"""A private single-node KRaft Kafka broker for tests that stop and restart the broker, so the
shared broker of ``scripts/services`` (and other test runs using it) is never disturbed. Same jars
and configuration as ``scripts/services kafka_start``, on free ports with its own data folder."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

KAFKA_LIBS = Path(os.environ.get("PARLEY_KAFKA_LIBS", Path.home() / ".cache/parley/kafka-libs"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class KafkaBroker:
    def __init__(self, directory: Path) -> None:
        if not (KAFKA_LIBS / ".complete").exists():
            raise RuntimeError(
                f"Kafka jars are missing in {KAFKA_LIBS}: run scripts/services start kafka"
            )
        self.directory = directory
        self.port = free_port()
        self.controller_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.config = directory / "server.properties"
        self.config.write_text(
            f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{self.controller_port}
listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={directory / "data"}
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
"""
        )
        # A cluster id is a UUID in URL-safe base64 without padding (what random-uuid prints).
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        subprocess.run(
            [
                "java",
                "-cp",
                f"{KAFKA_LIBS}/*",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster,
                "-c",
                str(self.config),
            ],
            check=True,
            capture_output=True,
        )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 90) -> None:
        log = open(self.directory / "server.log", "ab")
        self.process = subprocess.Popen(
            [
                "java",
                "-Xms128m",
                "-Xmx384m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Dlog4j2.level=WARN",
                "-cp",
                f"{KAFKA_LIBS}/*",
                "kafka.Kafka",
                str(self.config),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while not port_open(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"test Kafka broker exited, see {self.directory / 'server.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"test Kafka broker did not open port {self.port}")
            time.sleep(0.2)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the broker: SIGKILL (a crash) or SIGTERM (a clean shutdown)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        while port_open(self.port):
            time.sleep(0.1)
