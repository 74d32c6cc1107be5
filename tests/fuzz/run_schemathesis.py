"""Fuzz the HTTP API with Schemathesis against a real host: ``make fuzz`` (CI runs it).

Starts ``durableflow serve`` on a copy of the integration-test project (SQLite by default,
``--postgres`` for a fresh schema in ``DURABLEFLOW_TEST_PG_DSN``) with a token, runs ``st run`` over
``/api/openapi.json`` with every check and every phase (examples, coverage, fuzzing,
stateful, the last following the document's links), and exits with Schemathesis's status.
The host's log is printed when the run fails, so a 500's traceback is in the CI output.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "tests" / "integration" / "host_project"
CONFIG = Path(__file__).with_name("schemathesis.toml")
BIN = Path(sys.executable).parent
PG_DSN = os.environ.get("DURABLEFLOW_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
CI_SEED = "20261130"
READY = re.compile(r"serving \d+ workflow\(s\) on (http://\S+)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres", action="store_true", help="run on PostgreSQL (default: SQLite)"
    )
    parser.add_argument("--max-examples", type=int, help="test cases per operation")
    args = parser.parse_args()
    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="durableflow-fuzz-") as tmp:
        project = Path(shutil.copytree(PROJECT, Path(tmp) / "project"))
        log_path = project / "host.log"
        command = [str(BIN / "durableflow"), "serve", "--port", "0", "--grace", "1"]
        schema = f"fuzz_{os.getpid()}"
        if args.postgres:
            separator = "&" if "?" in PG_DSN else "?"
            command += ["--storage", f"{PG_DSN}{separator}schema={schema}"]
        env = {**os.environ, "DURABLEFLOW_TOKEN": token, "DURABLEFLOW_FUZZ_TOKEN": token}
        with log_path.open("wb") as log:
            host = subprocess.Popen(command, cwd=project, env=env, stdout=log, stderr=log)
        try:
            url = _wait_ready(host, log_path)
            st = [
                str(BIN / "st"),
                "--config-file",
                str(CONFIG),
                "run",
                f"{url}/api/openapi.json",
                "--checks",
                "all",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--generation-database",
                "none",
                "--workers",
                "1",
                "--no-color",
            ]
            # CI fuzzes with a fixed seed (reproducible: a red build replays the same
            # cases); a developer's run explores new ones unless DURABLEFLOW_FUZZ_SEED is set
            seed = os.environ.get("DURABLEFLOW_FUZZ_SEED") or (
                CI_SEED if os.environ.get("CI") == "true" else None
            )
            if seed:
                st += ["--seed", seed]
            if args.max_examples:
                st += ["--max-examples", str(args.max_examples)]
            status = subprocess.run(st, env=env, check=False).returncode
        finally:
            host.terminate()
            host.wait(30)
            if args.postgres:
                asyncio.run(_drop_schema(schema))
        output = log_path.read_text(errors="replace")
        if status != 0 or "Traceback" in output:
            print("---- host log ----\n" + output[-20000:])
            return status or 1
    return 0


async def _drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN, timeout=10)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def _wait_ready(host: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if host.poll() is not None:
            raise SystemExit(f"the host exited:\n{log_path.read_text(errors='replace')}")
        match = READY.search(log_path.read_text(errors="replace"))
        if match:
            return match.group(1)
        time.sleep(0.05)
    raise SystemExit("the host did not start within 60 s")


if __name__ == "__main__":
    sys.exit(main())
