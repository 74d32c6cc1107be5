"""The server's API models: the same fields as the OpenAPI schemas, the same JSON as before."""

from __future__ import annotations

from typing import Any

import attrs
import orjson
import pytest

from durableflow_runtime.engine import InstanceRecord
from durableflow_runtime.openapi import build_openapi
from durableflow_runtime.server import (
    Attempt,
    InstanceDetail,
    InstanceList,
    InstanceSummary,
    Rollback,
    Step,
    iso,
)
from durableflow_runtime.store.base import InstanceRow, StepRow

T0 = 1_767_225_600.25  # 2026-01-01T00:00:00.25Z


def _row(**changes: Any) -> InstanceRow:
    row = InstanceRow(
        key=7,
        workflow="orders",
        id="o-1",
        status="errored",
        params=b'{"n":1}',
        output=None,
        error={"name": "ValueError", "message": "no"},
        created_at=T0,
        started_at=T0 + 1,
        ended_at=T0 + 2,
        run_at=None,
        epoch=3,
        generation=1,
        pause_requested=False,
    )
    return attrs.evolve(row, **changes)


def _step() -> StepRow:
    return StepRow(
        name="charge",
        count=1,
        seq=0,
        type="do",
        status="complete",
        attempts=2,
        attempt_log=[
            {"started_at": T0, "ended_at": T0 + 0.5, "error": {"name": "E", "message": "m"}},
            {"started_at": T0 + 1, "ended_at": None, "error": None},
        ],
        output=b'{"cents":5}',
        started_at=T0,
        ended_at=T0 + 1.5,
        host="h1",
    )


@pytest.mark.parametrize(
    ("model", "schema"),
    [
        (Attempt, "Attempt"),
        (Step, "Step"),
        (Rollback, "Rollback"),
        (InstanceDetail, "InstanceDetail"),
        (InstanceSummary, "InstanceSummary"),
        (InstanceList, "InstanceList"),
    ],
)
def test_each_model_has_the_fields_of_its_schema_in_order(model: type, schema: str) -> None:
    """A model and the OpenAPI schema of the same name list the same fields, in wire order."""
    properties = build_openapi()["components"]["schemas"][schema]["properties"]
    assert [f.name for f in attrs.fields(model)] == list(properties)


def test_the_instance_detail_json_is_the_shape_the_api_has_always_answered() -> None:
    """The detail built from the engine's record is the JSON the engine used to build, byte for byte."""
    detail = InstanceDetail.from_record(InstanceRecord(_row(), [_step()]))
    expected = {
        "id": "o-1",
        "workflow": "orders",
        "status": "errored",
        "error": {"name": "ValueError", "message": "no"},
        "output": None,
        "params": {"n": 1},
        "created_at": "2026-01-01T00:00:00.250000Z",
        "started_at": "2026-01-01T00:00:01.250000Z",
        "ended_at": "2026-01-01T00:00:02.250000Z",
        "steps": [
            {
                "name": "charge",
                "count": 1,
                "type": "do",
                "status": "complete",
                "attempts": 2,
                "attempt_log": [
                    {
                        "started_at": "2026-01-01T00:00:00.250000Z",
                        "ended_at": "2026-01-01T00:00:00.750000Z",
                        "error": {"name": "E", "message": "m"},
                    },
                    {
                        "started_at": "2026-01-01T00:00:01.250000Z",
                        "ended_at": None,
                        "error": None,
                    },
                ],
                "output": {"cents": 5},
                "error": None,
                "started_at": "2026-01-01T00:00:00.250000Z",
                "ended_at": "2026-01-01T00:00:01.750000Z",
                "wake_at": None,
                "host": "h1",
                "rollback": None,
            }
        ],
        "actions": ["restart"],
        "run_retries": 0,
        "parent": None,
        "children": [],
        "priority": 0,
        "concurrency_key": None,
        "version": None,
        "blocked": None,
    }
    assert orjson.dumps(detail.to_json()) == orjson.dumps(expected)


def test_the_instance_list_json_is_the_shape_the_api_has_always_answered() -> None:
    """A page of instances is ``{"instances": [summary...], "next_cursor"}``, byte for byte."""
    page = InstanceList.from_rows([_row(status="running", error=None, ended_at=None)], "6")
    expected = {
        "instances": [
            {
                "id": "o-1",
                "status": "running",
                "error": None,
                "created_at": "2026-01-01T00:00:00.250000Z",
                "started_at": "2026-01-01T00:00:01.250000Z",
                "ended_at": None,
                "version": None,
            }
        ],
        "next_cursor": "6",
    }
    assert orjson.dumps(page.to_json()) == orjson.dumps(expected)


def test_iso_is_utc_with_a_z() -> None:
    """Timestamps are ISO 8601 in UTC ending in ``Z``; ``None`` stays ``None``."""
    assert iso(0.0) == "1970-01-01T00:00:00Z"
    assert iso(None) is None
