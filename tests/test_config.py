"""Settings: regions, endpoints, the secret key, option checks."""

from __future__ import annotations

import dataclasses
import math

import pytest
import requests

from amp_pandas._config import (
    EU_URL,
    STANDARD_URL,
    Secret,
    SendSettings,
    check_endpoint,
    require_key,
    resolve_settings,
)
from amp_pandas.errors import ConfigurationError, InsecureEndpointError, MissingApiKeyError

KEY = "0123456789abcdefDISTINCT1a2b"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMPLITUDE_API_KEY", raising=False)


# ---------------------------------------------------------------- Secret
def test_secret_never_shows_itself() -> None:
    s = Secret(KEY)
    for text in (repr(s), str(s), f"{s}", f"{s:>20}", format(s, ""), repr([s]), repr({"k": s})):
        assert KEY not in text
        assert "DISTINCT" not in text
    assert repr(s) == "Secret('•••• 1a2b')"
    assert s.masked == "•••• 1a2b"
    assert s.reveal() == KEY


@pytest.mark.parametrize(
    "key, masked", [("abcdefghijk", "••••"), ("abcdefghijkl", "•••• ijkl"), ("", "••••")]
)
def test_secret_masks_short_keys_entirely(key: str, masked: str) -> None:
    assert Secret(key).masked == masked


def test_secret_compares_by_value() -> None:
    assert Secret(KEY) == Secret(KEY)
    assert Secret(KEY) != Secret(KEY + "x")
    assert len({Secret(KEY), Secret(KEY)}) == 1


# ---------------------------------------------------------------- regions and endpoints
@pytest.mark.parametrize(
    "region, url", [("standard", STANDARD_URL), ("eu", EU_URL), ("EU", EU_URL), (" eu ", EU_URL)]
)
def test_region_selects_endpoint(region: str, url: str) -> None:
    assert resolve_settings(region=region).endpoint == url


def test_unknown_region_names_the_valid_values() -> None:
    with pytest.raises(ConfigurationError, match=r"'standard', 'eu'.*got 'us'"):
        resolve_settings(region="us")


def test_server_url_overrides_region() -> None:
    s = resolve_settings(region="eu", server_url="https://proxy.example.com/identify")
    assert s.endpoint == "https://proxy.example.com/identify"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/identify",
        "http://127.5.6.7/identify",
        "http://localhost:1/identify",
        "http://LOCALHOST/identify",
        "http://[::1]:9000/identify",
        "https://example.com/identify",
    ],
)
def test_allowed_endpoints(url: str) -> None:
    assert resolve_settings(server_url=url).endpoint == url


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/identify",
        "http://10.0.0.1/identify",
        "http://128.0.0.1/identify",
        "http://localhost.example.com/identify",
        "http://[::2]/identify",
    ],
)
def test_plain_http_to_remote_hosts_is_refused(url: str) -> None:
    with pytest.raises(InsecureEndpointError, match="plain http://"):
        resolve_settings(server_url=url)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "api2.amplitude.com/identify", "https://"])
def test_malformed_endpoints_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="server_url"):
        check_endpoint(url)


def test_replace_cannot_smuggle_an_insecure_endpoint() -> None:
    s = resolve_settings()
    with pytest.raises(InsecureEndpointError):
        dataclasses.replace(s, endpoint="http://example.com/identify")


# ---------------------------------------------------------------- the key
def test_key_from_argument_env_or_none(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_settings().api_key is None  # fine for dry runs
    monkeypatch.setenv("AMPLITUDE_API_KEY", "env-key-0123456789")
    assert resolve_settings().api_key == Secret("env-key-0123456789")
    assert resolve_settings(api_key=KEY).api_key == Secret(KEY)  # argument wins


def test_blank_key_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMPLITUDE_API_KEY", "   ")
    assert resolve_settings().api_key is None
    assert resolve_settings(api_key="").api_key is None


def test_require_key() -> None:
    assert require_key(resolve_settings(api_key=f"  {KEY}\n")) == KEY
    with pytest.raises(MissingApiKeyError, match="api_key=.*AMPLITUDE_API_KEY"):
        require_key(resolve_settings())


def test_settings_repr_hides_key() -> None:
    s = resolve_settings(api_key=KEY, session=requests.Session())
    assert KEY not in repr(s) and "DISTINCT" not in repr(s)
    assert "•••• 1a2b" in repr(s)


def test_defaults_match_the_contract() -> None:
    s = resolve_settings()
    assert (s.batch_size, s.max_workers, s.timeout, s.throttle_pause, s.throttle_budget) == (
        1000,
        6,
        30.0,
        15.0,
        600.0,
    )
    assert (s.retry_ambiguous, s.max_retries, s.backoff, s.backoff_max) == (False, 6, 0.5, 30.0)
    assert (s.interrupt_grace, s.progress, s.session) == (5.0, True, None)


# ---------------------------------------------------------------- options
@pytest.mark.parametrize(
    "option, value, message",
    [
        ("batch_size", 0, "batch_size .* integer from 1 to 2000; got 0"),
        ("batch_size", 2001, "from 1 to 2000"),
        ("batch_size", 10.5, "integer"),
        ("batch_size", True, "integer"),
        ("max_workers", 0, "max_workers"),
        ("timeout", 0, "timeout .* above 0"),
        ("timeout", math.nan, "timeout"),
        ("timeout", math.inf, "timeout"),
        ("throttle_pause", -1, "throttle_pause .* ≥ 0"),
        ("max_retries", -1, "max_retries"),
        ("backoff", "1", "backoff"),
        ("progress", "yes", "progress must be True or False"),
        ("retry_ambiguous", 1, "retry_ambiguous"),
    ],
)
def test_out_of_range_options_are_refused(option: str, value: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        resolve_settings(**{option: value})


def test_option_values_are_normalised() -> None:
    import numpy as np

    s = resolve_settings(batch_size=np.int64(500), timeout=2, throttle_budget=math.inf)
    assert s.batch_size == 500 and type(s.batch_size) is int
    assert s.timeout == 2.0 and type(s.timeout) is float
    assert s.throttle_budget == math.inf


def test_unknown_option_is_a_type_error_that_suggests_the_close_one() -> None:
    # An unknown keyword is a TypeError, as for any Python function (preview.send() takes
    # its options through here).
    with pytest.raises(TypeError, match="'batchsize' .did you mean 'batch_size'") as info:
        resolve_settings(batchsize=10)
    assert not isinstance(info.value, ConfigurationError)


def test_session_must_be_a_session() -> None:
    with pytest.raises(ConfigurationError, match="session"):
        resolve_settings(session="not a session")  # type: ignore[arg-type]
    session = requests.Session()
    assert resolve_settings(session=session).session is session


def test_settings_are_frozen() -> None:
    s = resolve_settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.batch_size = 5  # type: ignore[misc]
    assert isinstance(s, SendSettings)
