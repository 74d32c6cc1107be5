"""Run the order-processing example end to end, in a few seconds.

Starts ``durableflow serve`` on a free port with its SQLite file in a temporary
directory, places an order through the example's own route (``POST /orders``), sends the
approval event through the host's API, waits for the instance to complete, prints its
output and steps, and stops the host with SIGTERM::

    python docs/examples/orders/run_example.py

Only the standard library is used on the client side, to show the API is plain HTTP.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def call(method: str, url: str, body: Any = None, timeout: float = 40.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{method} {url} -> {exc.code}: {exc.read().decode()}") from None
    return json.loads(raw) if raw else None


def wait_until_up(base: str, host: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.poll() is not None:
            raise SystemExit(f"the host exited with status {host.returncode}")
        try:
            call("GET", f"{base}/healthz", timeout=1.0)
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    raise SystemExit(f"the host did not come up within {timeout:g}s")


def main() -> int:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="durableflow-orders-") as tmp:
        command = [
            sys.executable,
            "-m",
            "durableflow_runtime",
            "serve",
            "--config",
            str(HERE / "durableflow.toml"),
            "--port",
            str(port),
            "--storage",
            f"sqlite:///{tmp}/state.db",
        ]
        print("$", " ".join(command[2:]), flush=True)
        host = subprocess.Popen(command)
        try:
            wait_until_up(base, host)
            order = {"order_id": "order-1001", "item": "book", "quantity": 2}
            print(f"POST /orders {json.dumps(order)}")
            print("  ->", call("POST", f"{base}/orders", order))

            instance = f"{base}/api/workflows/order-processing/instances/order-1001"
            approval = {"approved": True, "by": "alice"}
            print(f"POST .../order-1001/events/approval {json.dumps(approval)}")
            call("POST", f"{instance}/events/approval", approval)

            started = time.monotonic()
            result = call("GET", f"{instance}/result?timeout=30")
            print(
                f"GET .../order-1001/result -> {result['status']} after "
                f"{time.monotonic() - started:.1f}s"
            )
            if result["status"] != "complete":
                print(json.dumps(result, indent=2))
                return 1
            print("output:", json.dumps(result["output"], indent=2))

            detail = call("GET", instance)
            print("steps:")
            for step in detail["steps"]:
                error = step["attempt_log"][0]["error"] if step["attempts"] > 1 else None
                note = f"  (attempt 1: {error['name']}: {error['message']})" if error else ""
                print(
                    f"  {step['name']:<18} {step['type']:<15} {step['status']:<9} "
                    f"attempts={step['attempts']}{note}"
                )
        finally:
            if host.poll() is None:
                host.send_signal(signal.SIGTERM)
            code = host.wait(30)
        print(f"host stopped with exit status {code}")
        return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
