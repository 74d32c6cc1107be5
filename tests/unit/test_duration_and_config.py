import re
from datetime import timedelta

import attrs
import pytest

from durableflow import (
    Backoff,
    ResolvedRetryConfig,
    ResolvedStepConfig,
    RetryableError,
    RetryConfig,
    Sensitivity,
    StepConfig,
    ValidationError,
)
from durableflow._config import delay_function, resolve_config
from durableflow._duration import to_seconds

YEAR = 365.25 * 86400
MONTH = YEAR / 12

#: The grammar, one row per form: OpenWorkflow's units and aliases, decimals, optional
#: space, any case, a bare number string as milliseconds, and the non-string forms.
DURATIONS = [
    # milliseconds
    ("250 milliseconds", 0.25),
    ("1 millisecond", 0.001),
    ("1 ms", 0.001),
    ("250ms", 0.25),
    ("5 msec", 0.005),
    ("5msecs", 0.005),
    # seconds
    ("10 seconds", 10),
    ("1 second", 1),
    ("3s", 3),
    ("3 sec", 3),
    ("3secs", 3),
    ("0.25s", 0.25),
    (".5 s", 0.5),
    # minutes
    ("5m", 300),
    ("5 min", 300),
    ("5mins", 300),
    ("1 minute", 60),
    ("2 minutes", 120),
    # hours
    ("1.5 hours", 5400),
    ("1.5h", 5400),
    ("2 h", 7200),
    ("2hr", 7200),
    ("2 hrs", 7200),
    ("1 hour", 3600),
    # days and weeks
    ("1d", 86400),
    ("1 day", 86400),
    ("7 days", 7 * 86400),
    ("1w", 7 * 86400),
    ("1 week", 7 * 86400),
    ("2 weeks", 14 * 86400),
    # months: a twelfth of a year
    ("1mo", MONTH),
    ("1 month", MONTH),
    ("2 months", 2 * MONTH),
    # years: 365.25 days
    ("1y", YEAR),
    ("1 yr", YEAR),
    ("2yrs", 2 * YEAR),
    ("1 year", YEAR),
    ("1.5 years", 1.5 * YEAR),
    # case, spaces around the parts
    ("10 SECONDS", 10),
    ("1.5H", 5400),
    ("5 Min", 300),
    ("  10 s  ", 10),
    ("10   s", 10),
    # a bare number string is milliseconds, like a number
    ("100", 0.1),
    ("1.5", 0.0015),
    ("0", 0),
    ("0 s", 0),
    # numbers and timedeltas
    (0, 0),
    (1500, 1.5),
    (0.5, 0.0005),
    (timedelta(minutes=2), 120),
    (timedelta(0), 0),
]


@pytest.mark.parametrize(("value", "seconds"), DURATIONS)
def test_durations_parse(value, seconds):
    """Every duration form of the grammar converts to the right number of seconds."""
    assert to_seconds(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        "ten seconds",
        "10 fortnights",
        "",
        "   ",
        "s",
        "1h30m",
        "1e3 s",
        "+5 s",
        "1. s",
        "5 s s",
        True,
        None,
        [5],
        "7d\n",
        "1\ts",
        "\u0663 s",
    ],
)
def test_bad_durations_name_the_field_and_value(value):
    """A duration that does not parse is a ValidationError naming the field and the value."""
    with pytest.raises(ValidationError, match="retries 'delay'") as info:
        to_seconds(value, what="retries 'delay'")
    assert repr(value) in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("-5 s", "negative"),
        ("-100", "negative"),
        (-1, "negative"),
        (-0.5, "negative"),
        (timedelta(seconds=-1), "negative"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (float("-inf"), "finite"),
    ],
)
def test_negative_nan_and_infinite_durations_are_refused(value, reason):
    """Negative, NaN and infinite durations are refused, naming the field and the value."""
    with pytest.raises(ValidationError, match=reason) as info:
        to_seconds(value, what="step 'timeout'")
    assert "step 'timeout'" in str(info.value) and repr(value) in str(info.value)


def _resolved(
    limit: int,
    delay: float | None,
    backoff: Backoff,
    timeout: float,
    sensitive: Sensitivity | None = None,
) -> ResolvedStepConfig:
    return ResolvedStepConfig(
        retries=ResolvedRetryConfig(
            limit, None if delay is None else timedelta(seconds=delay), backoff
        ),
        timeout=timedelta(seconds=timeout),
        sensitive=sensitive,
    )


def test_config_defaults_and_partial_merge():
    """Defaults are limit 5, 10 s exponential, 10 min timeout; a partial config overrides field by field."""
    assert resolve_config(None) == _resolved(5, 10.0, "exponential", 600.0)
    assert resolve_config({}) == ResolvedStepConfig()
    merged = resolve_config({"retries": {"limit": 2}})
    assert merged == _resolved(2, 10.0, "exponential", 600.0)
    merged = resolve_config(StepConfig(retries=RetryConfig(delay="1 second", backoff="linear")))
    assert merged == _resolved(5, 1.0, "linear", 600.0)
    base = _resolved(1, 2.0, "constant", 30.0)
    assert resolve_config({"timeout": "1 minute"}, base) == _resolved(1, 2.0, "constant", 60.0)
    assert resolve_config({"sensitive": "output"}, base) == _resolved(
        1, 2.0, "constant", 30.0, "output"
    )


def test_resolved_config_has_cloudflares_shape():
    """The resolved config is {retries: {limit, delay, backoff}, timeout, sensitive}, as
    Cloudflare's ResolvedStepConfig, and its fields make a valid step config."""
    config = resolve_config(StepConfig(timeout="1 minute", sensitive="output"))
    assert config.retries.limit == 5
    assert config.retries.delay == timedelta(seconds=10)
    assert config.retries.backoff == "exponential"
    assert config.timeout == timedelta(minutes=1)
    assert config.sensitive == "output"
    as_dict = {
        "retries": attrs.asdict(config.retries),
        "timeout": config.timeout,
        "sensitive": config.sensitive,
    }
    assert resolve_config(as_dict) == config
    assert ResolvedStepConfig.from_json(config.to_json()) == config


def test_a_delay_function_resolves_to_no_delay():
    """A function delay is resolved to None (Cloudflare omits it); the function is taken
    from the live config."""

    def delay(attempt: int, error: BaseException) -> str:
        return f"{attempt} seconds"

    for config in (
        {"retries": {"limit": 3, "delay": delay}},
        StepConfig(retries=RetryConfig(limit=3, delay=delay)),
    ):
        resolved = resolve_config(config)
        assert resolved.retries.delay is None and resolved.retries.limit == 3
        assert resolved.delay_before_retry(2) == 0
        assert delay_function(config) is delay
        assert ResolvedStepConfig.from_json(resolved.to_json()) == resolved
    assert delay_function({"retries": {"delay": "1 s"}}) is None
    assert delay_function(None) is None


def test_configs_stored_in_the_flat_form_still_read():
    """A step config stored before the nested shape (limit, delay, backoff, timeout at the
    top) reads back as the same config."""
    flat = {"limit": 2, "delay": 0.5, "backoff": "linear", "timeout": 30.0}
    assert ResolvedStepConfig.from_json(flat) == _resolved(2, 0.5, "linear", 30.0)


def test_retryable_error_reads_its_retry_after():
    """RetryableError takes retry_after as any duration; a bad one names the field."""
    assert RetryableError("busy", retry_after="1.5s").retry_after == 1.5
    assert RetryableError("busy", retry_after=250).retry_after == 0.25
    assert RetryableError("busy").retry_after is None
    with pytest.raises(ValidationError, match="retry_after"):
        RetryableError("busy", retry_after="-1 s")


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"retry": {}}, "unknown key"),
        ({"retries": {"limit": 1, "jitter": True}}, "unknown key"),
        ({"retries": {"limit": -1}}, "limit"),
        ({"retries": {"backoff": "fibonacci"}}, "backoff"),
        ({"retries": {"delay": "-1 s"}}, "retries 'delay' '-1 s': must not be negative"),
        ({"retries": {"delay": float("nan")}}, "retries 'delay' nan"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "soon"}, "timeout"),
        ({"timeout": float("inf")}, "step 'timeout' inf"),
        ({"sensitive": "input"}, "sensitive"),
        ({"sensitive": True}, "sensitive"),
    ],
)
def test_bad_config_is_a_clear_error(config, fragment):
    """Unknown keys and bad values in a step config are errors naming what is wrong."""
    with pytest.raises(ValidationError, match=re.escape(fragment)):
        resolve_config(config)


def test_backoff_delays():
    """constant waits d, linear d*n, exponential d*2^(n-1) before retry n."""
    cases: list[tuple[Backoff, list[int]]] = [
        ("constant", [2, 2, 2]),
        ("linear", [2, 4, 6]),
        ("exponential", [2, 4, 8]),
    ]
    for backoff, expected in cases:
        config = _resolved(5, 2.0, backoff, 600.0)
        assert [config.delay_before_retry(n) for n in (1, 2, 3)] == expected
