from datetime import timedelta

import pytest

from durableflow import ResolvedStepConfig, RetryConfig, StepConfig, ValidationError
from durableflow._config import resolve_config
from durableflow._duration import to_seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("250 milliseconds", 0.25),
        ("10 seconds", 10),
        ("1.5 hours", 5400),
        ("5m", 300),
        ("7 days", 7 * 86400),
        ("2 weeks", 14 * 86400),
        ("1 month", 30 * 86400),
        ("1 year", 365 * 86400),
        ("1 ms", 0.001),
        ("3s", 3),
        ("2 h", 7200),
        ("1d", 86400),
        ("1w", 7 * 86400),
        (1500, 1.5),
        (0.5, 0.0005),
        (timedelta(minutes=2), 120),
    ],
)
def test_durations_parse(value, seconds):
    """Every duration form of the contract converts to the right number of seconds."""
    assert to_seconds(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["ten seconds", "10 fortnights", "", "-5 s", "5", True, None, -1, "7d\n", "1\ts", "٣ s"],
)
def test_bad_durations_name_the_value(value):
    """A bad duration is a ValueError whose message names the bad value."""
    with pytest.raises(ValueError, match="duration"):
        to_seconds(value)


def test_config_defaults_and_partial_merge():
    """Defaults are limit 5, 10 s exponential, 10 min timeout; a partial config overrides field by field."""
    assert resolve_config(None) == ResolvedStepConfig(5, 10.0, "exponential", 600.0)
    merged = resolve_config({"retries": {"limit": 2}})
    assert merged == ResolvedStepConfig(2, 10.0, "exponential", 600.0)
    merged = resolve_config(StepConfig(retries=RetryConfig(delay="1 second", backoff="linear")))
    assert merged == ResolvedStepConfig(5, 1.0, "linear", 600.0)
    base = ResolvedStepConfig(1, 2.0, "constant", 30.0)
    assert resolve_config({"timeout": "1 minute"}, base) == ResolvedStepConfig(
        1, 2.0, "constant", 60.0
    )


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"retry": {}}, "unknown key"),
        ({"retries": {"limit": 1, "jitter": True}}, "unknown key"),
        ({"retries": {"limit": -1}}, "limit"),
        ({"retries": {"backoff": "fibonacci"}}, "backoff"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "soon"}, "timeout"),
    ],
)
def test_bad_config_is_a_clear_error(config, fragment):
    """Unknown keys and bad values in a step config are errors naming what is wrong."""
    with pytest.raises(ValidationError, match=fragment):
        resolve_config(config)


def test_backoff_delays():
    """constant waits d, linear d*n, exponential d*2^(n-1) before retry n."""
    assert [
        ResolvedStepConfig(delay=2, backoff="constant").delay_before_retry(n) for n in (1, 2, 3)
    ] == [2, 2, 2]
    assert [
        ResolvedStepConfig(delay=2, backoff="linear").delay_before_retry(n) for n in (1, 2, 3)
    ] == [2, 4, 6]
    assert [
        ResolvedStepConfig(delay=2, backoff="exponential").delay_before_retry(n) for n in (1, 2, 3)
    ] == [2, 4, 8]
