"""The OpenAPI 3.1 document of the host's HTTP API, served at ``GET /api/openapi.json``.

Built in code so that it lives beside the routes; a test checks that every route the
server registers is described here, and that nothing here is missing from the server.
The schemas of instances (``InstanceDetail``, ``Step``, ``Attempt``, ``InstanceSummary``,
``InstanceList``) are the JSON of the attrs models of the same name in
``server/_models.py``; a unit test holds their fields together.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from durableflow._types import STATUSES

#: The largest integer a query parameter takes (18 digits, as the host parses them).
_MAX_QUERY_INT = 10**18 - 1

__all__ = ["build_openapi"]

_STATUSES = list(STATUSES)

_ID_PATTERN = "^[A-Za-z0-9_][A-Za-z0-9_-]*$"
_UNITS = "ms|milliseconds?|s|seconds?|m|minutes?|h|hours?|d|days?|w|weeks?|months?|y|years?"
#: The SDK's duration strings (units in lower case; the host also takes upper case).
DURATION_PATTERN = f"^ *([0-9]{{1,15}}(\\.[0-9]{{1,15}})?|\\.[0-9]{{1,15}}) *({_UNITS}) *$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "null"}]}


_TIME = _nullable({"type": "string", "format": "date-time"})

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {
                        "type": "string",
                        "description": "Machine-readable: invalid_json, invalid_request, "
                        "invalid_params, limit_exceeded, unauthorized, forbidden, not_found, "
                        "method_not_allowed, instance_exists, invalid_transition, "
                        "payload_too_large, unsupported_media_type, internal, "
                        "store_unavailable, storage_full.",
                    },
                    "message": {"type": "string", "description": "One sentence for a human."},
                },
            }
        },
    },
    "Status": {"type": "string", "enum": _STATUSES},
    "ErrorInfo": _nullable(
        {
            "type": "object",
            "required": ["name", "message"],
            "properties": {"name": {"type": "string"}, "message": {"type": "string"}},
        }
    ),
    "InstanceRef": {
        "type": "object",
        "required": ["id", "status"],
        "properties": {"id": {"type": "string"}, "status": _ref("Status")},
    },
    "CreateInstance": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "id": {
                "type": "string",
                "minLength": 1,
                "maxLength": 100,
                "pattern": _ID_PATTERN,
                "description": "Default: a new UUID4 string.",
            },
            "params": {
                "description": "The instance's params: any JSON value, nested at most "
                "128 levels. It is validated against the workflow's params type "
                "(`params_type` in GET /api/workflows): params that do not structure into "
                "it, or missing params where the type requires them, are a 400 "
                "`invalid_params` naming the field, and nothing is stored."
            },
            "priority": {
                **_nullable({"type": "integer", "minimum": 0, "maximum": 100}),
                "description": "Among queued instances of this workflow, higher starts "
                "first (default, and null: 0).",
            },
            "concurrency_key": {
                **_nullable({"type": "string", "minLength": 1, "maxLength": 256}),
                "description": "The key the workflow's key_concurrency counts this instance "
                "under (default, and null: read from the params by the workflow's "
                "concurrency_key path).",
            },
        },
    },
    "BatchEntry": {
        "type": "object",
        "additionalProperties": False,
        "description": "One instance of a batch: an id and params (the batch's instances "
        "get priority 0 and their workflow's concurrency key).",
        "properties": {
            "id": {
                "type": "string",
                "minLength": 1,
                "maxLength": 100,
                "pattern": _ID_PATTERN,
                "description": "Default: a new UUID4 string.",
            },
            "params": {"description": "The instance's params, as in CreateInstance."},
        },
    },
    "CreateBatch": {
        "type": "object",
        "required": ["instances"],
        "additionalProperties": False,
        "properties": {
            "instances": {
                "type": "array",
                "minItems": 1,
                "maxItems": 100,
                "items": _ref("BatchEntry"),
            }
        },
    },
    "BatchCreated": {
        "type": "object",
        "required": ["instances"],
        "properties": {"instances": {"type": "array", "items": _ref("InstanceRef")}},
    },
    "Workflow": {
        "type": "object",
        "required": ["name", "binding", "class_name"],
        "properties": {
            "name": {"type": "string"},
            "binding": {"type": "string"},
            "class_name": {"type": "string"},
            "module": {"type": "string"},
            "params_type": _nullable({"type": "string"}),
            "params_schema": {
                **_nullable({"type": "object"}),
                "description": "The JSON Schema (2020-12) of the params, derived from the "
                "params type (attrs classes and dataclasses, nested ones in $defs; enums as "
                "enum; lists, optional fields, defaults); null when the workflow declares no "
                "params type. The host still checks params with cattrs.",
            },
            "schedules": {
                "type": "array",
                "items": _ref("WorkflowSchedule"),
                "description": "The [[schedules]] that start it.",
            },
            "version": {
                **_nullable({"type": "string"}),
                "description": "The version of the current class: new instances record it.",
            },
            "previous": {
                "type": "array",
                "description": "The older classes (config `previous`) that run the "
                "instances of their versions.",
                "items": {
                    "type": "object",
                    "required": ["version", "class_name"],
                    "properties": {
                        "version": {"type": "string"},
                        "class_name": {"type": "string"},
                    },
                },
            },
            "defaults": {
                **_ref("ResolvedStepConfig"),
                "description": "Step config defaults (durations in seconds).",
            },
            "counts": {
                "type": "object",
                "description": "GET /api/workflows/{name} only: how many stored instances "
                "the workflow has in each status (statuses with none are left out).",
                "additionalProperties": {"type": "integer", "minimum": 0},
            },
        },
    },
    "ResolvedStepConfig": {
        "type": "object",
        "description": "A step config with every default applied, in the shape of "
        "Cloudflare's ResolvedStepConfig; durations in seconds.",
        "required": ["retries", "timeout", "sensitive"],
        "properties": {
            "retries": {
                "type": "object",
                "required": ["limit", "delay", "backoff"],
                "properties": {
                    "limit": {"type": "integer", "minimum": 0},
                    "delay": {
                        **_nullable({"type": "number", "minimum": 0}),
                        "description": "null when the delay is a function",
                    },
                    "backoff": {"type": "string", "enum": ["constant", "linear", "exponential"]},
                },
            },
            "timeout": {"type": "number", "exclusiveMinimum": 0},
            "sensitive": _nullable({"type": "string", "enum": ["output"]}),
        },
    },
    "WorkflowSchedule": {
        "type": "object",
        "required": ["name", "cron", "timezone", "next_instance", "paused"],
        "properties": {
            "name": {"type": "string"},
            "cron": {"type": "string"},
            "timezone": {"type": "string"},
            "next_instance": {
                **_TIME,
                "description": "When the next instance starts (null while paused).",
            },
            "paused": {"type": "boolean"},
        },
    },
    "Schedule": {
        "type": "object",
        "required": [
            "name",
            "workflow",
            "cron",
            "timezone",
            "catch_up",
            "paused",
            "next_instance",
            "last_tick",
        ],
        "properties": {
            "name": {"type": "string"},
            "workflow": {"type": "string"},
            "cron": {"type": "string"},
            "timezone": {"type": "string"},
            "catch_up": {"type": "string", "enum": ["latest", "all", "none"]},
            "paused": {"type": "boolean"},
            "next_instance": _TIME,
            "last_tick": {**_TIME, "description": "The last tick started (by any host)."},
        },
    },
    "ScheduleList": {
        "type": "object",
        "required": ["schedules"],
        "properties": {"schedules": {"type": "array", "items": _ref("Schedule")}},
    },
    "WorkflowVersions": {
        "type": "object",
        "required": ["versions"],
        "properties": {
            "versions": {
                "type": "array",
                "description": "Each version this host has a class for, then each other "
                "version that instances not yet finished recorded: whether it is the "
                "current one (new instances get it), whether this host has its code, and "
                "how many of its instances are not finished (when 0 and not current, its "
                "class can be removed from `previous`).",
                "items": {
                    "type": "object",
                    "required": ["version", "class_name", "current", "code", "in_flight"],
                    "properties": {
                        "version": _nullable({"type": "string"}),
                        "class_name": _nullable({"type": "string"}),
                        "current": {"type": "boolean"},
                        "code": {"type": "boolean"},
                        "in_flight": {"type": "integer", "minimum": 0},
                    },
                },
            }
        },
    },
    "History": {
        "type": "object",
        "required": ["format", "workflow", "id", "version", "status", "created_at", "steps"],
        "properties": {
            "format": {"type": "string", "const": "durableflow.history/1"},
            "workflow": {"type": "string"},
            "id": {"type": "string"},
            "version": _nullable({"type": "string"}),
            "status": _ref("Status"),
            "error": {
                **_ref("ErrorInfo"),
                "description": "What ended an errored instance: replaying code that ends "
                "with the same error counts as a replay.",
            },
            "created_at": {"type": "number", "description": "Seconds since the epoch."},
            "generation": {"type": "integer", "description": "Restarts so far."},
            "params": {"description": "The params (absent when none were given)."},
            "steps": {
                "type": "array",
                "description": "Every step as stored, in the order the steps started.",
                "items": {
                    "type": "object",
                    "required": ["name", "count", "seq", "type", "status"],
                    "properties": {
                        "name": {"type": "string"},
                        "count": {"type": "integer"},
                        "seq": {"type": "integer"},
                        "type": {"type": "string", "enum": ["do", "sleep", "wait_for_event"]},
                        "status": {"type": "string"},
                        "attempts": {"type": "integer"},
                        "attempt_log": {"type": "array", "items": {"type": "object"}},
                        "output": {"description": "The result (absent when none is stored)."},
                        "error": _ref("ErrorInfo"),
                        "started_at": _nullable({"type": "number"}),
                        "ended_at": _nullable({"type": "number"}),
                        "wake_at": _nullable({"type": "number"}),
                        "config": _nullable({"type": "object"}),
                    },
                },
            },
        },
    },
    "WorkflowDetail": {"allOf": [_ref("Workflow"), _ref("WorkflowVersions")]},
    "WorkflowList": {
        "type": "object",
        "required": ["workflows"],
        "properties": {"workflows": {"type": "array", "items": _ref("Workflow")}},
    },
    "InstanceSummary": {
        "type": "object",
        "required": ["id", "status", "error", "created_at", "started_at", "ended_at"],
        "properties": {
            "id": {"type": "string"},
            "status": _ref("Status"),
            "error": _ref("ErrorInfo"),
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": _TIME,
            "ended_at": _TIME,
            "version": {
                **_nullable({"type": "string"}),
                "description": "The version of the workflow class that created it.",
            },
        },
    },
    "InstanceList": {
        "type": "object",
        "required": ["instances", "next_cursor"],
        "properties": {
            "instances": {"type": "array", "items": _ref("InstanceSummary")},
            "next_cursor": _nullable({"type": "string"}),
        },
    },
    "Attempt": {
        "type": "object",
        "required": ["started_at", "ended_at", "error"],
        "properties": {"started_at": _TIME, "ended_at": _TIME, "error": _ref("ErrorInfo")},
    },
    "Rollback": {
        "type": "object",
        "required": [
            "status",
            "attempts",
            "attempt_log",
            "error",
            "started_at",
            "ended_at",
            "wake_at",
        ],
        "properties": {
            "status": {
                "type": "string",
                "enum": ["running", "retrying", "complete", "failed"],
                "description": "failed: the handler exhausted its retries (the other "
                "rollbacks ran on).",
            },
            "attempts": {"type": "integer"},
            "attempt_log": {"type": "array", "items": _ref("Attempt")},
            "error": _ref("ErrorInfo"),
            "started_at": _TIME,
            "ended_at": _TIME,
            "wake_at": {**_TIME, "description": "When a pending retry of the handler is due."},
        },
    },
    "TerminateOptions": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "rollback": {
                "type": "boolean",
                "description": "Run the rollback handlers of the instance's steps first "
                "(status rollingBack), then end it terminated. Default false.",
            },
            "cascade": {
                "type": "boolean",
                "description": "Also terminate the instance's running child workflows, and "
                "theirs. Without it (the default) children go on running.",
            },
        },
    },
    "Step": {
        "type": "object",
        "required": [
            "name",
            "type",
            "status",
            "attempts",
            "attempt_log",
            "output",
            "error",
            "started_at",
            "ended_at",
            "wake_at",
        ],
        "properties": {
            "name": {"type": "string"},
            "count": {"type": "integer", "description": "1-based occurrence of the name."},
            "type": {
                "type": "string",
                "enum": ["do", "sleep", "wait_for_event", "run_workflow", "start_workflow"],
            },
            "status": {
                "type": "string",
                "description": "running, retrying, waiting, complete, failed or cancelled (a wait "
                "run() cancelled or left behind).",
            },
            "attempts": {"type": "integer"},
            "attempt_log": {"type": "array", "items": _ref("Attempt")},
            "output": {
                "description": "The step's result (any JSON value); the string "
                '"[redacted]" for a step configured with sensitive="output".'
            },
            "error": _ref("ErrorInfo"),
            "started_at": _TIME,
            "ended_at": _TIME,
            "wake_at": {
                **_TIME,
                "description": "When a sleep, a wait's timeout or a pending retry is due.",
            },
            "host": {
                **_nullable({"type": "string"}),
                "description": "The host that ran the latest attempt (several hosts share "
                "a PostgreSQL store); null for sleeps and waits.",
            },
            "rollback": {
                **_nullable(_ref("Rollback")),
                "description": "The run of the step's rollback handler, once the instance "
                "rolled back; null before, and for steps without a handler.",
            },
            "event_type": {
                **_nullable({"type": "string"}),
                "description": "wait_for_event steps only: the event type waited for.",
            },
            "payload_schema": {
                **_nullable({"type": "object"}),
                "description": "wait_for_event steps only: the JSON Schema of the payload "
                "the wait declares, or null when it declares no payload type.",
            },
            "child": {
                **_nullable(
                    {
                        "type": "object",
                        "required": ["workflow", "id"],
                        "properties": {"workflow": {"type": "string"}, "id": {"type": "string"}},
                    }
                ),
                "description": "run_workflow and start_workflow steps only: the child "
                "instance the step started.",
            },
            "hook_token": {
                **_nullable({"type": "string"}),
                "description": "wait_for_event steps only: the token of a hook (a wait "
                "resumed by POST /api/hooks/{token}), or null.",
            },
        },
    },
    "InstanceDetail": {
        "type": "object",
        "required": [
            "id",
            "status",
            "error",
            "output",
            "params",
            "created_at",
            "started_at",
            "ended_at",
            "steps",
        ],
        "properties": {
            "id": {"type": "string"},
            "workflow": {"type": "string"},
            "status": _ref("Status"),
            "error": _ref("ErrorInfo"),
            "output": {"description": "What run() returned (any JSON value)."},
            "params": {"description": "The params given at creation (any JSON value)."},
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": _TIME,
            "ended_at": _TIME,
            "steps": {"type": "array", "items": _ref("Step")},
            "actions": {
                "type": "array",
                "items": {
                    "type": "string",
                    "enum": [
                        "pause",
                        "resume",
                        "terminate",
                        "restart",
                        "terminate_rollback",
                        "send_event",
                    ],
                },
                "description": "What the instance's status allows now: the control "
                "actions the state rules accept (and that change something; "
                'terminate_rollback is terminate with {"rollback": true}), and '
                "send_event until the instance has ended.",
            },
            "run_retries": {
                "type": "integer",
                "description": "How many times run() ran again under the workflow's "
                "run_retries policy.",
            },
            "parent": {
                **_nullable(_ref("Relative")),
                "description": "The instance that started this one with step.run_workflow "
                "or step.start_workflow; null when none did (or it was deleted).",
            },
            "children": {
                "type": "array",
                "items": _ref("Relative"),
                "description": "The instances this one started, oldest first.",
            },
            "priority": {"type": "integer", "minimum": 0, "maximum": 100},
            "concurrency_key": _nullable({"type": "string"}),
            "version": {
                **_nullable({"type": "string"}),
                "description": "The version of the workflow class that created it: it "
                "always runs on the class of this version.",
            },
            "blocked": {
                **_nullable({"type": "string"}),
                "description": 'Why a runnable instance is not running: first "no code '
                "for version 'v1' on this host\" (queued or waiting, no class of its "
                "version here), then a flow limit: 'concurrency limit 20 reached', 'rate "
                "limit 100/minute reached'; else null.",
            },
        },
    },
    "Relative": {
        "type": "object",
        "additionalProperties": False,
        "required": ["workflow", "id", "status"],
        "properties": {
            "workflow": {"type": "string"},
            "id": {"type": "string"},
            "status": _ref("Status"),
        },
    },
    "InstanceStatus": {
        "type": "object",
        "required": ["id", "status", "error", "output"],
        "properties": {
            "id": {"type": "string"},
            "status": _ref("Status"),
            "error": _ref("ErrorInfo"),
            "output": {"description": "What run() returned, once complete."},
        },
    },
    "InstanceResult": {
        "type": "object",
        "required": ["id", "status", "error", "output", "done"],
        "properties": {
            "id": {"type": "string"},
            "status": _ref("Status"),
            "error": _ref("ErrorInfo"),
            "output": {"description": "What run() returned, once complete."},
            "done": {
                "type": "boolean",
                "description": "True once the instance is complete, errored or terminated.",
            },
        },
    },
    "EventAccepted": {
        "type": "object",
        "required": ["id", "type"],
        "properties": {"id": {"type": "string"}, "type": {"type": "string"}},
    },
    "HookResumed": {
        "type": "object",
        "required": ["workflow", "instance_id"],
        "properties": {
            "workflow": {"type": "string", "description": "The waiting instance's workflow."},
            "instance_id": {"type": "string", "description": "The waiting instance's id."},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "const": "ok"}},
    },
    "StepRef": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "description": "The count-th step called name of kind type, in the order the steps "
        "started.",
        "properties": {
            "name": {
                "type": "string",
                "minLength": 1,
                "maxLength": 256,
                "pattern": "^[^\\u0000-\\u001f\\u007f]*$",
            },
            "count": {"type": "integer", "minimum": 1, "default": 1},
            "type": {"type": "string", "enum": ["do", "sleep", "wait_for_event"], "default": "do"},
        },
    },
    "Restart": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "from": {
                "oneOf": [_ref("StepRef"), {"type": "null"}],
                "description": "Restart from this step: the history before it is kept, it "
                "and every step started after it are dropped, with the events they "
                "consumed. Absent or null: from the start. A step not in the history is "
                "a 400.",
            }
        },
    },
    "BulkRequest": {
        "type": "object",
        "required": ["action"],
        "additionalProperties": False,
        "description": "Exactly one of ids and status.",
        "oneOf": [{"required": ["ids"]}, {"required": ["status"]}],
        "properties": {
            "action": {
                "type": "string",
                "enum": ["pause", "resume", "terminate", "restart", "delete"],
            },
            "ids": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1000,
                "items": {"type": "string", "pattern": _ID_PATTERN, "maxLength": 100},
            },
            "status": _ref("Status"),
        },
    },
    "BulkResult": {
        "type": "object",
        "required": ["id", "result", "reason", "status"],
        "properties": {
            "id": {"type": "string"},
            "result": {"type": "string", "enum": ["applied", "skipped"]},
            "reason": {
                "oneOf": [{"type": "string"}, {"type": "null"}],
                "description": "Why it was skipped: not found, or what its status does not allow.",
            },
            "status": {
                "oneOf": [_ref("Status"), {"type": "null"}],
                "description": "Its status afterwards (null once deleted or not found).",
            },
        },
    },
    "BulkAnswer": {
        "type": "object",
        "required": ["action", "results", "applied", "skipped", "more"],
        "properties": {
            "action": {"type": "string"},
            "results": {"type": "array", "items": _ref("BulkResult")},
            "applied": {"type": "integer", "minimum": 0},
            "skipped": {"type": "integer", "minimum": 0},
            "more": {
                "type": "boolean",
                "description": "With status: more instances had it than this call took "
                "(1,000 at most); call again.",
            },
        },
    },
    "Prune": {
        "type": "object",
        "required": ["older_than"],
        "additionalProperties": False,
        "properties": {
            "older_than": {
                "oneOf": [
                    {"type": "string", "pattern": DURATION_PATTERN, "maxLength": 40},
                    {"type": "number", "minimum": 0, "maximum": 1e300},
                ],
                "description": 'A duration: "7 days", "12h", "30 minutes", or a number of '
                "milliseconds, at most 100 years. Instances that ended longer ago than this "
                "are deleted.",
                "examples": ["7 days"],
            },
            "status": {
                "type": "string",
                "enum": ["complete", "errored", "terminated"],
                "description": "Only instances with this status (default: all three).",
            },
            "workflow": {
                "type": "string",
                "pattern": _ID_PATTERN,
                "description": "Only this workflow's instances (default: every workflow's).",
            },
        },
    },
    "StreamChunk": {
        "type": "object",
        "description": "One chunk of a stream: the data of an SSE event, a line of NDJSON.",
        "required": ["index", "data", "encoding", "step", "attempt", "time"],
        "properties": {
            "index": {
                "type": "integer",
                "minimum": 0,
                "description": "0-based position in the stream; the SSE event id.",
            },
            "data": {
                "description": "What the step wrote: a JSON value (a str stays a string), "
                "or base64 text of bytes when encoding is base64."
            },
            "encoding": {"type": "string", "enum": ["json", "base64"]},
            "step": {"type": "string", "description": "The step that wrote it."},
            "attempt": {
                "type": "integer",
                "minimum": 1,
                "description": "Its attempt (a retried attempt's chunks stay).",
            },
            "time": {"type": "string", "format": "date-time"},
        },
    },
    "StreamInfo": {
        "type": "object",
        "required": ["name", "chunks", "bytes"],
        "properties": {
            "name": {"type": "string"},
            "chunks": {"type": "integer", "minimum": 0},
            "bytes": {
                "type": "integer",
                "minimum": 0,
                "description": "Stored size of its chunks (bytes as base64 text).",
            },
        },
    },
    "StreamList": {
        "type": "object",
        "required": ["streams"],
        "properties": {"streams": {"type": "array", "items": _ref("StreamInfo")}},
    },
    "LogEntry": {
        "type": "object",
        "required": ["seq", "time", "level", "message", "fields", "step", "attempt"],
        "properties": {
            "seq": {
                "type": "integer",
                "minimum": 1,
                "description": "Position in the instance's log; pages go by it.",
            },
            "time": {"type": "string", "format": "date-time"},
            "level": {"type": "string", "enum": ["debug", "info", "warning", "error"]},
            "message": {"type": "string"},
            "fields": {"type": "object", "description": "The keyword fields given with it."},
            "step": _nullable(
                {"type": "string", "description": "The step that logged it (null: run())."}
            ),
            "attempt": _nullable({"type": "integer", "minimum": 1}),
        },
    },
    "LogPage": {
        "type": "object",
        "required": ["logs", "next_after"],
        "properties": {
            "logs": {"type": "array", "items": _ref("LogEntry")},
            "next_after": _nullable(
                {
                    "type": "integer",
                    "description": "The `after` of the next page; null when this page "
                    "reached the end of what is logged so far.",
                }
            ),
        },
    },
    "Pruned": {
        "type": "object",
        "required": ["deleted"],
        "properties": {
            "deleted": {
                "type": "integer",
                "minimum": 0,
                "description": "Instances deleted, each with its steps and events.",
            }
        },
    },
}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ok(
    status: str, description: str, schema: str, links: dict[str, Any] | None = None
) -> dict[str, Any]:
    answer = {"description": description, "content": _json_content(_ref(schema))}
    if links:
        answer["links"] = links
    return {status: answer}


def _errors(*statuses: str, store: bool = True) -> dict[str, Any]:
    """Error answers: those named, and those any operation may give (``store``: it reads
    the store, so 503 too)."""
    text = {
        "400": "Bad JSON, a bad id, params or query parameter.",
        "401": "Missing or wrong bearer token.",
        "403": "A write from another site (see [server] cors_origins), or, on a host "
        "without a token, a Host header that does not name this machine.",
        "404": "Unknown workflow or instance.",
        "405": "The path exists, the method does not (the Allow header lists the methods).",
        "409": "The id exists, or the instance's state does not allow the action.",
        "413": "The body or a payload is over its size limit.",
        "415": "A body that is not sent as Content-Type: application/json.",
        "500": "A defect of the host (logged there with its traceback).",
        "503": "The store cannot be reached or written (store_unavailable); retry later.",
        "507": "The store's disk is full (storage_full); reads still work.",
    }
    every = ("403", "405", "500", "503") if store else ("403", "405", "500")
    wanted = dict.fromkeys([*statuses, *every])
    return {s: {"description": text[s], "content": _json_content(_ref("Error"))} for s in wanted}


def _writes(*statuses: str) -> dict[str, Any]:
    """The error answers of an operation that writes: also 415, 503 and 507."""
    return _errors(*statuses, "415", "503", "507")


def _instance_links(id_expression: str) -> dict[str, Any]:
    """OpenAPI links from a create to what can be done with the new instance."""
    targets = {
        "DescribeInstance": "describeInstance",
        "InstanceStatus": "instanceStatus",
        "PauseInstance": "pauseInstance",
        "ResumeInstance": "resumeInstance",
        "TerminateInstance": "terminateInstance",
        "RestartInstance": "restartInstance",
        "SendEvent": "sendEvent",
        # not readStream: it answers only when the instance ends (a wait may take hours)
        "ListStreams": "listStreams",
        "InstanceLogs": "instanceLogs",
    }
    parameters = {"name": "$request.path.name", "id": id_expression}
    return {
        link: {"operationId": operation, "parameters": parameters}
        for link, operation in targets.items()
    }


def _param(name: str, where: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


_NAME = _param("name", "path", "The workflow's name.", {"type": "string", "pattern": _ID_PATTERN})
_ID = _param("id", "path", "The instance's id.", {"type": "string"})


_TOKEN = _param(
    "token",
    "path",
    "The token the wait registered (wait_for_event(..., token=)).",
    {"type": "string", "pattern": "^[A-Za-z0-9_.:~@-]+$", "minLength": 1, "maxLength": 256},
)


def _webhook(method: str, *, first: bool) -> dict[str, Any]:
    """A webhook URL: no bearer token, any body, answers without a body."""
    empty = {"description": ""}
    return {
        "operationId": "callWebhook" if first else f"callWebhook{method.title()}",
        "summary": "An outside service calls a webhook made by step.create_webhook; the "
        "URL's random token is the secret (no bearer token). Answers have no body.",
        "tags": ["hooks"],
        "security": [],
        "parameters": [
            _param("token", "path", "The webhook's token.", {"type": "string", "minLength": 1})
        ],
        "requestBody": {
            "required": False,
            "description": "Any body, of any content type, up to the body limit.",
            "content": {"*/*": {"schema": {}}},
        },
        "responses": {
            "202": {**empty, "description": "Taken: the waiting instance resumes."},
            "401": {**empty, "description": "The signature does not verify."},
            "404": {**empty, "description": "No such webhook."},
            "410": {**empty, "description": "It took a request already, or its instance ended."},
            "413": {
                "description": "The body is over the limit.",
                "content": _json_content(_ref("Error")),
            },
            "500": {
                "description": "A defect of the host.",
                "content": _json_content(_ref("Error")),
            },
            "503": {
                "description": "The store cannot be reached or written; retry later.",
                "content": _json_content(_ref("Error")),
            },
            "507": {
                "description": "The store's disk is full.",
                "content": _json_content(_ref("Error")),
            },
        },
    }


def _control(action: str, what: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": f"{action}Instance",
        "summary": what,
        "tags": ["instances"],
        "parameters": [_NAME, _ID],
        "responses": {
            **_ok("200", "The instance's status afterwards.", "InstanceRef"),
            **_writes("401", "404", "409"),
        },
    }
    if action == "terminate":
        operation["requestBody"] = {
            "required": False,
            "content": _json_content(_ref("TerminateOptions")),
        }
        operation["responses"].update(_writes("400"))
    return {"post": operation}


@functools.cache
def _schedule_action(action: str, what: str) -> dict[str, Any]:
    name = _param("name", "path", "The schedule's name.", {"type": "string"})
    return {
        "post": {
            "operationId": f"{action}Schedule",
            "summary": what,
            "tags": ["schedules"],
            "parameters": [name],
            "responses": {
                **_ok("200", "The schedule afterwards.", "Schedule"),
                **_errors("401", "404"),
            },
        }
    }


def _document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "The host is up. Needs no token.",
                "tags": ["host"],
                "security": [],
                "responses": _ok("200", "Up.", "Health"),
            }
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "tags": ["host"],
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document.",
                        "content": _json_content({"type": "object"}),
                    },
                    **_errors("401", store=False),
                },
            }
        },
        "/api/workflows": {
            "get": {
                "operationId": "listWorkflows",
                "summary": "The workflows this host runs.",
                "tags": ["workflows"],
                "responses": {
                    **_ok("200", "The workflows.", "WorkflowList"),
                    **_errors("401", store=False),
                },
            }
        },
        "/api/workflows/{name}": {
            "get": {
                "operationId": "describeWorkflow",
                "summary": "One workflow, with the JSON Schema of its params and its "
                "instance counts per status and its in-flight instances per version.",
                "tags": ["workflows"],
                "parameters": [_NAME],
                "responses": {
                    **_ok("200", "The workflow.", "WorkflowDetail"),
                    **_errors("401", "404"),
                },
            }
        },
        "/api/workflows/{name}/instances": {
            "post": {
                "operationId": "createInstance",
                "summary": "Create and start an instance.",
                "tags": ["instances"],
                "parameters": [_NAME],
                "requestBody": {
                    "required": False,
                    "content": _json_content(_ref("CreateInstance")),
                },
                "responses": {
                    **_ok("201", "Created.", "InstanceRef", _instance_links("$response.body#/id")),
                    **_writes("400", "401", "404", "409", "413"),
                },
            },
            "get": {
                "operationId": "listInstances",
                "summary": "Instances, newest first, one page at a time.",
                "tags": ["instances"],
                "parameters": [
                    _NAME,
                    _param("status", "query", "Only instances with this status.", _ref("Status")),
                    _param(
                        "version",
                        "query",
                        "Only instances created at this version of the workflow's code.",
                        {"type": "string", "minLength": 1, "maxLength": 64},
                    ),
                    _param(
                        "limit",
                        "query",
                        "Page size (default 50).",
                        {"type": "integer", "minimum": 1, "maximum": 1000},
                    ),
                    _param(
                        "cursor",
                        "query",
                        "The next_cursor of the previous page: a decimal number (the "
                        "instances below that row key). Anything else is a 400.",
                        {"type": "string", "pattern": "^[0-9]{1,19}$"},
                    ),
                    _param(
                        "id_prefix",
                        "query",
                        "Only instances whose id starts with this, taken literally and "
                        "case-sensitively (% and _ are no wildcards).",
                        {"type": "string", "minLength": 1, "maxLength": 100},
                    ),
                    _param(
                        "created_after",
                        "query",
                        "Only instances created at or after this ISO 8601 time (UTC when "
                        "it has no offset).",
                        {"type": "string", "format": "date-time"},
                    ),
                    _param(
                        "created_before",
                        "query",
                        "Only instances created before this ISO 8601 time.",
                        {"type": "string", "format": "date-time"},
                    ),
                ],
                "responses": {
                    **_ok("200", "One page.", "InstanceList"),
                    **_errors("400", "401", "404"),
                },
            },
        },
        "/api/workflows/{name}/instances/batch": {
            "post": {
                "operationId": "createInstances",
                "summary": "Create up to 100 instances, all or nothing.",
                "tags": ["instances"],
                "parameters": [_NAME],
                "requestBody": {"required": True, "content": _json_content(_ref("CreateBatch"))},
                "responses": {
                    **_ok(
                        "201",
                        "All created.",
                        "BatchCreated",
                        _instance_links("$response.body#/instances/0/id"),
                    ),
                    **_writes("400", "401", "404", "409", "413"),
                },
            }
        },
        "/api/workflows/{name}/instances/{id}": {
            "get": {
                "operationId": "describeInstance",
                "summary": "Everything about an instance, with every step.",
                "tags": ["instances"],
                "parameters": [_NAME, _ID],
                "responses": {
                    **_ok("200", "The instance.", "InstanceDetail"),
                    **_errors("401", "404"),
                },
            },
            "delete": {
                "operationId": "deleteInstance",
                "summary": "Delete an instance in any status, with everything stored for it; "
                "a running one stops first. Its id can be used again.",
                "tags": ["instances"],
                "parameters": [_NAME, _ID],
                "responses": {
                    "204": {"description": "Deleted."},
                    **_writes("401", "404"),
                },
            },
        },
        "/api/workflows/{name}/instances/{id}/status": {
            "get": {
                "operationId": "instanceStatus",
                "summary": "Status, error and output only.",
                "tags": ["instances"],
                "parameters": [_NAME, _ID],
                "responses": {
                    **_ok("200", "The status.", "InstanceStatus"),
                    **_errors("401", "404"),
                },
            }
        },
        "/api/workflows/{name}/instances/{id}/result": {
            "get": {
                "operationId": "instanceResult",
                "summary": "Wait (long poll) until the instance ends, at most `timeout` seconds.",
                "description": "Answers as soon as the instance is complete, errored or "
                "terminated (`done: true`), or when the wait runs out (`done: false`). "
                "Also answers early, with `done: false`, when the host shuts down.",
                "tags": ["instances"],
                "parameters": [
                    _NAME,
                    _ID,
                    _param(
                        "timeout",
                        "query",
                        "Seconds to wait at most (default 30, at most 300; 0 answers at once).",
                        {"type": "number", "minimum": 0, "maximum": 300},
                    ),
                ],
                "responses": {
                    **_ok("200", "The status when the wait ended.", "InstanceResult"),
                    **_errors("400", "401", "404"),
                },
            }
        },
        "/api/workflows/{name}/instances/{id}/history": {
            "get": {
                "operationId": "instanceHistory",
                "summary": "The instance's recorded history, to replay against new code.",
                "description": "What `durableflow instances export` writes and "
                "`durableflow.testing.replay(WorkflowClass, history)` reads. Times are "
                "seconds since the epoch, as stored.",
                "tags": ["instances"],
                "parameters": [_NAME, _ID],
                "responses": {
                    **_ok("200", "The history.", "History"),
                    **_errors("401", "404"),
                },
            }
        },
        "/api/workflows/{name}/instances/{id}/pause": _control(
            "pause", "Pause; a running step finishes first (waitingForPause)."
        ),
        "/api/workflows/{name}/instances/{id}/resume": _control("resume", "Resume a paused one."),
        "/api/workflows/{name}/instances/{id}/terminate": _control(
            "terminate",
            'Stop for good; with {"rollback": true}, run the rollback handlers of its '
            'steps first (status rollingBack, then terminated); with {"cascade": true}, '
            "also terminate its running child workflows.",
        ),
        "/api/workflows/{name}/instances/{id}/restart": {
            "post": {
                **_control("restart", "Run again: from the start, or from a step.")["post"],
                "requestBody": {"required": False, "content": _json_content(_ref("Restart"))},
                "responses": {
                    **_ok("200", "The instance's status afterwards.", "InstanceRef"),
                    **_writes("400", "401", "404", "409"),
                },
            }
        },
        "/api/workflows/{name}/instances/actions": {
            "post": {
                "operationId": "bulkAction",
                "summary": "Pause, resume, terminate, restart or delete up to 1,000 instances, "
                "by id or by status; one result per instance.",
                "tags": ["instances"],
                "parameters": [_NAME],
                "requestBody": {"required": True, "content": _json_content(_ref("BulkRequest"))},
                "responses": {
                    **_ok("200", "What happened to each instance.", "BulkAnswer"),
                    **_writes("400", "401", "404"),
                },
            }
        },
        "/api/workflows/{name}/instances/{id}/events/{type}": {
            "post": {
                "operationId": "sendEvent",
                "summary": "Deliver an event; the first wait_for_event for its type takes it.",
                "tags": ["instances"],
                "parameters": [
                    _NAME,
                    _ID,
                    _param(
                        "type",
                        "path",
                        "The event's type.",
                        {"type": "string", "pattern": _ID_PATTERN, "maxLength": 100},
                    ),
                ],
                "requestBody": {
                    "required": False,
                    "description": "The event's payload: any JSON value (empty: null).",
                    "content": _json_content({}),
                },
                "responses": {
                    **_ok(
                        "202", "Stored; delivered when the instance waits for it.", "EventAccepted"
                    ),
                    **_writes("400", "401", "404", "409", "413"),
                },
            }
        },
        "/api/workflows/{name}/instances/{id}/streams": {
            "get": {
                "operationId": "listStreams",
                "summary": "The instance's streams, with their sizes.",
                "tags": ["streams"],
                "parameters": [_NAME, _ID],
                "responses": {
                    **_ok("200", "The streams, by name.", "StreamList"),
                    **_errors("401", "404"),
                },
            }
        },
        "/api/workflows/{name}/instances/{id}/streams/{stream}": {
            "get": {
                "operationId": "readStream",
                "summary": "Read a stream as Server-Sent Events, or as JSON lines.",
                "description": "Sends the chunks from index `from` (or after `Last-Event-ID`, "
                "which wins) on, then each new chunk as a step writes it, and ends when the "
                "instance has ended and every chunk was sent, or when the host shuts down. "
                "As `text/event-stream`, each chunk is an event whose `id` is its index and "
                "whose `data` is a StreamChunk; the last event is `event: end` with "
                '`{"status"}`. With `Accept: application/x-ndjson`, each line is a '
                "StreamChunk.",
                "tags": ["streams"],
                "parameters": [
                    _NAME,
                    _ID,
                    _param(
                        "stream",
                        "path",
                        "The stream's name (`default` when the step gave none).",
                        {"type": "string", "pattern": _ID_PATTERN, "maxLength": 64},
                    ),
                    _param(
                        "from",
                        "query",
                        "The index of the first chunk to send (default 0).",
                        {"type": "integer", "minimum": 0, "maximum": _MAX_QUERY_INT},
                    ),
                    _param(
                        "Last-Event-ID",
                        "header",
                        "The index of the last chunk a reconnecting reader got: sending "
                        "resumes after it.",
                        {"type": "string", "pattern": "^[0-9]{1,18}$"},
                    ),
                ],
                "responses": {
                    "200": {
                        "description": "The stream, until the instance ends.",
                        "content": {
                            "text/event-stream": {
                                "schema": {
                                    "type": "object",
                                    "description": "One Server-Sent Event: a chunk (`id` "
                                    "its index, `data` a StreamChunk as JSON), or the last "
                                    '`event: end` whose `data` is `{"status"}`.',
                                    "properties": {
                                        "id": {"type": "string"},
                                        "event": {"type": "string"},
                                        "data": {"type": "string"},
                                        "retry": {"type": "integer"},
                                    },
                                    "required": ["data"],
                                }
                            },
                            "application/x-ndjson": {
                                "schema": {
                                    "type": "string",
                                    "description": "One StreamChunk per line.",
                                }
                            },
                        },
                    },
                    **_errors("400", "401", "404"),
                },
            }
        },
        "/api/workflows/{name}/instances/{id}/logs": {
            "get": {
                "operationId": "instanceLogs",
                "summary": "One page of the instance's log (ctx.log and step.log), oldest first.",
                "tags": ["logs"],
                "parameters": [
                    _NAME,
                    _ID,
                    _param(
                        "after",
                        "query",
                        "Only entries with a seq above this (default 0: from the start).",
                        {"type": "integer", "minimum": 0, "maximum": _MAX_QUERY_INT},
                    ),
                    _param(
                        "limit",
                        "query",
                        "Entries per page, 1 to 1000 (default 100).",
                        {"type": "integer", "minimum": 1, "maximum": 1000},
                    ),
                ],
                "responses": {
                    **_ok("200", "The page.", "LogPage"),
                    **_errors("400", "401", "404"),
                },
            }
        },
        "/api/hooks/{token}": {
            "post": {
                "operationId": "resumeHook",
                "summary": "Resume the wait_for_event that registered this token (a hook), "
                "whatever its workflow and instance. A payload sent before the wait is "
                "registered is refused (404), not kept.",
                "tags": ["hooks"],
                "parameters": [_TOKEN],
                "requestBody": {
                    "required": False,
                    "description": "The payload: any JSON value (empty: null); checked "
                    "against the wait's payload_type when it has one (400 naming the field).",
                    "content": _json_content({}),
                },
                "responses": {
                    **_ok("202", "Stored; the waiting instance resumes.", "HookResumed"),
                    **_writes("400", "401", "404", "413"),
                },
            }
        },
        **{
            "/hooks/{token}": {
                method.lower(): _webhook(method, first=method == "POST")
                for method in ("POST", "PUT", "PATCH")
            }
        },
        "/api/schedules": {
            "get": {
                "operationId": "listSchedules",
                "summary": "The schedules of the config, with their shared state.",
                "tags": ["schedules"],
                "responses": {
                    **_ok("200", "The schedules.", "ScheduleList"),
                    **_errors("401"),
                },
            }
        },
        "/api/schedules/{name}/pause": _schedule_action(
            "pause", "Stop starting instances, on every host sharing the store."
        ),
        "/api/schedules/{name}/resume": _schedule_action(
            "resume", "Start instances again from the next tick (missed ones are skipped)."
        ),
        "/api/instances/prune": {
            "post": {
                "operationId": "pruneInstances",
                "summary": "Delete finished instances (complete, errored, terminated) that "
                "ended longer ago than older_than, with their steps and events.",
                "tags": ["instances"],
                "requestBody": {"required": True, "content": _json_content(_ref("Prune"))},
                "responses": {
                    **_ok("200", "How many instances were deleted.", "Pruned"),
                    **_errors("400", "401", "404"),
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "durableflow host API",
            "version": "1",
            "description": "Create and steer durable workflow instances. Errors are "
            '`{"error": {"code", "message"}}`. When the host has a token, every /api '
            "request needs `Authorization: Bearer <token>`.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def build_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh copy the caller may change)."""
    return copy.deepcopy(_document())
