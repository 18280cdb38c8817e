"""The public API: exports, identify()'s signature and overloads, and how it checks arguments."""

from __future__ import annotations

import builtins
import dataclasses
import inspect
import itertools
import math
import re
import subprocess
import sys
import traceback
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

import amp_pandas
from amp_pandas import AmplitudeAccessor, IdentifyPreview, SendResult, literal
from amp_pandas._amplitude import OPERATIONS
from amp_pandas._config import OPTION_NAMES, SendSettings
from amp_pandas._identify import identify
from amp_pandas.errors import (
    AmpPandasError,
    ArgumentError,
    ColumnNotFoundError,
    ConfigurationError,
    InsecureEndpointError,
    MissingApiKeyError,
    UnknownFieldError,
)
from amp_pandas.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent

#: identify()'s sending options and their defaults, as the README documents them.
SENDING_OPTIONS: dict[str, Any] = {
    "batch_size": 1000,
    "max_workers": 6,
    "timeout": 30.0,
    "throttle_pause": 15.0,
    "throttle_budget": 600.0,
    "retry_ambiguous": False,
    "max_retries": 6,
    "backoff": 0.5,
    "backoff_max": 30.0,
    "interrupt_grace": 5.0,
    "progress": True,
}
MAPPING_ARGS = ("user_id", "device_id", *OPERATIONS, "unset", "groups", "fields", "nulls")
WHERE_ARGS = ("dry_run", "api_key", "region", "server_url", "session")
#: The sync arguments and their annotations and defaults, by hand.
SYNC_ARGS = {
    "sync": ("str | None", None),
    "ledger": ("str | os.PathLike[str] | None", None),
    "removed": ("RemovedMode", "keep"),
}


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMPLITUDE_API_KEY", raising=False)


def frame() -> pd.DataFrame:
    return pd.DataFrame({"uid": ["user-1", "user-2"], "plan": ["pro", "free"], "n": [1, 2]})


def params(func: Any) -> list[inspect.Parameter]:
    return list(inspect.signature(func).parameters.values())[1:]  # without self / df


def names_argument(arg: str, message: str) -> bool:
    """Whether the message names ``arg`` as an argument (``set:``, ``nulls=``, ``x must``...)."""
    pattern = rf"(?<![\w$]){re.escape(arg)}(?:[:=]| must| holds| is| \()"
    return re.search(pattern, message) is not None


# ------------------------------------------------------------------------------------ exports
def test_all_is_explicit_sorted_and_complete() -> None:
    assert amp_pandas.__all__ == [
        "AmplitudeAccessor",
        "FIELDS",
        "IdentifyPreview",
        "Ledger",
        "SendResult",
        "__version__",
        "errors",
        "identify_file",
        "literal",
    ]
    assert amp_pandas.__all__ == sorted(amp_pandas.__all__)
    for name in amp_pandas.__all__:
        assert getattr(amp_pandas, name) is not None


def test_a_send_returns_the_exported_result_class(sb: Sandbox) -> None:
    result = frame().amplitude.identify(
        user_id="uid", set=["plan"], server_url=sb.url, api_key=sb.api_key, progress=False
    )
    assert type(result) is amp_pandas.SendResult
    assert result.status.tolist() == ["success", "success"]
    preview = frame().amplitude.identify(user_id="uid", set=["plan"], dry_run=True)
    assert type(preview) is amp_pandas.IdentifyPreview


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "error",
    [ArgumentError, ColumnNotFoundError, UnknownFieldError, ConfigurationError,
     MissingApiKeyError, InsecureEndpointError],
)  # fmt: skip
def test_every_argument_and_configuration_error_is_a_value_error(error: type) -> None:
    assert issubclass(error, ValueError)
    assert issubclass(error, AmpPandasError)


def test_the_hierarchy_drawn_in_the_errors_module_matches_the_classes() -> None:
    doc = amp_pandas.errors.__doc__ or ""
    drawn = dict(re.findall(r"[├└]── (\w+)(?: \((\w+)\))?", doc))
    classes = {
        name: obj
        for name in amp_pandas.errors.__all__
        if isinstance(obj := getattr(amp_pandas.errors, name), type)
    }
    assert set(drawn) == set(classes) - {"AmpPandasError", "AmpPandasWarning"}
    for name, builtin in drawn.items():
        if builtin:  # "(ValueError)" drawn next to the class
            assert issubclass(classes[name], getattr(builtins, builtin))
    for name, cls in classes.items():  # each direct child of the base that is a ValueError says so
        if cls.__bases__[0] is AmpPandasError and issubclass(cls, ValueError):
            assert drawn[name] == "ValueError", name


# ------------------------------------------------------------------------------------ signature
def test_accessor_and_function_take_exactly_the_same_arguments() -> None:
    accessor, function = params(AmplitudeAccessor.identify), params(identify)
    assert [p.name for p in accessor] == [p.name for p in function]
    for a, f in zip(accessor, function, strict=True):
        assert (a.kind, a.default, a.annotation) == (f.kind, f.default, f.annotation), a.name


def test_every_argument_is_keyword_only_and_there_is_no_catch_all() -> None:
    for func in (AmplitudeAccessor.identify, identify):
        kinds = {p.kind for p in params(func)}
        assert kinds == {inspect.Parameter.KEYWORD_ONLY}


@pytest.mark.parametrize("func", [AmplitudeAccessor.identify, identify])
def test_one_operation_keyword_per_operation_of_the_rules_module(func: Any) -> None:
    operation_params = [p.name for p in params(func) if p.annotation == "Columns"]
    assert operation_params == list(OPERATIONS)


@pytest.mark.parametrize("func", [AmplitudeAccessor.identify, identify])
def test_sending_options_are_typed_keywords_with_the_settings_defaults(func: Any) -> None:
    ps = {p.name: p for p in params(func)}
    assert list(ps) == [*MAPPING_ARGS, *WHERE_ARGS, *SENDING_OPTIONS, *SYNC_ARGS]
    assert {n: (ps[n].annotation, ps[n].default) for n in SYNC_ARGS} == SYNC_ARGS
    assert {name: ps[name].default for name in SENDING_OPTIONS} == SENDING_OPTIONS
    settings_defaults = {
        f.name: f.default for f in dataclasses.fields(SendSettings) if f.name in OPTION_NAMES
    }
    assert settings_defaults == SENDING_OPTIONS
    assert set(OPTION_NAMES) == set(SENDING_OPTIONS)
    for name in SENDING_OPTIONS:
        assert ps[name].annotation in ("int", "float", "bool"), name


@pytest.mark.parametrize("func", [AmplitudeAccessor.identify, identify])
def test_overloads_tie_dry_run_to_the_return_type(func: Any) -> None:
    overloads = typing.get_overloads(func)
    got = [(inspect.signature(o).parameters["dry_run"].annotation,
            inspect.signature(o).return_annotation) for o in overloads]  # fmt: skip
    assert got == [
        ("typing.Literal[True]", "IdentifyPreview"),
        ("typing.Literal[False]", "SendResult"),
        ("bool", "IdentifyPreview | SendResult"),
    ]
    impl = [p.name for p in params(func)]
    for o in overloads:
        assert [p.name for p in params(o)] == impl


def test_a_type_checker_infers_the_return_type_from_dry_run() -> None:
    """mypy checks tests/typing_check.py (``assert_type`` and ``type: ignore`` markers)."""
    pytest.importorskip("mypy")
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-error-summary",
         "--config-file", str(ROOT / "pyproject.toml"), "tests/typing_check.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr


def test_an_unknown_option_is_pythons_type_error_and_nothing_is_sent(sb: Sandbox) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'batchsize'") as info:
        frame().amplitude.identify(
            user_id="uid", set=["plan"], server_url=sb.url, api_key=sb.api_key, batchsize=10
        )
    assert not isinstance(info.value, AmpPandasError)
    assert sb.requests == []


def test_preview_send_refuses_an_unknown_option_as_a_type_error() -> None:
    preview = frame().amplitude.identify(user_id="uid", set=["plan"], dry_run=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'batchsize'"):
        preview.send(batchsize=10)  # type: ignore[call-arg]


def test_preview_send_overrides_reach_the_send(sb: Sandbox) -> None:
    df = pd.DataFrame({"uid": [f"user-{i}" for i in range(5)], "plan": "pro"})
    preview = df.amplitude.identify(
        user_id="uid", set=["plan"], dry_run=True, server_url=sb.url, api_key="wrong-key-12345"
    )
    result = preview.send(api_key=sb.api_key, batch_size=2, progress=False)
    assert result["status"].tolist() == ["success"] * 5
    assert sorted(r.count for r in sb.requests) == [1, 2, 2]
    assert preview.settings.batch_size == 1000  # the preview itself is unchanged


# Non-default values, chosen by hand, for each option: identify must hand each one on.
FORWARDED = {
    "batch_size": 7,
    "max_workers": 3,
    "timeout": 2.5,
    "throttle_pause": 0.25,
    "throttle_budget": 9.0,
    "retry_ambiguous": True,
    "max_retries": 2,
    "backoff": 0.125,
    "backoff_max": 1.0,
    "interrupt_grace": 0.5,
    "progress": False,
}


@pytest.mark.parametrize("option", list(FORWARDED))
def test_each_sending_option_reaches_the_settings(option: str) -> None:
    preview = frame().amplitude.identify(user_id="uid", dry_run=True, **{option: FORWARDED[option]})
    assert getattr(preview.settings, option) == FORWARDED[option]
    others = {name: getattr(preview.settings, name) for name in SENDING_OPTIONS if name != option}
    assert others == {name: v for name, v in SENDING_OPTIONS.items() if name != option}


def test_where_arguments_reach_the_settings() -> None:
    session = requests.Session()
    key = "0123456789abcdef0123abcd"
    preview = frame().amplitude.identify(
        user_id="uid", dry_run=True, api_key=key, region="eu", session=session
    )
    assert preview.endpoint == "https://api.eu.amplitude.com/identify"
    assert preview.key_status == "•••• abcd"
    assert preview.settings.session is session
    url = "https://proxy.example.com/identify"
    assert frame().amplitude.identify(user_id="uid", dry_run=True, server_url=url).endpoint == url


# ------------------------------------------------------------------------------------ dry_run
@pytest.mark.parametrize("flag", [True, np.True_])
def test_dry_run_true_and_numpy_true_preview(flag: Any) -> None:
    assert type(frame().amplitude.identify(user_id="uid", dry_run=flag)) is IdentifyPreview


@pytest.mark.parametrize("flag", [False, np.False_])
def test_dry_run_false_and_numpy_false_send(flag: Any, sb: Sandbox) -> None:
    result = frame().amplitude.identify(
        user_id="uid", set=["plan"], dry_run=flag, server_url=sb.url, api_key=sb.api_key,
        progress=False,
    )  # fmt: skip
    assert type(result) is SendResult
    assert sb.profiles().loc["user-2", "plan"] == "free"


# ------------------------------------------------------------------------------------ wrong types
# (argument, value, the exact error): every one must name the argument in its message.
WRONG: list[tuple[str, Any, type]] = [
    ("user_id", ["uid"], ArgumentError),
    ("user_id", {"uid": 1}, ArgumentError),
    ("user_id", np.array(["uid"]), ArgumentError),
    ("user_id", pd.Series(["uid"]), ArgumentError),
    ("user_id", "nope", ColumnNotFoundError),
    ("device_id", ("uid",), ArgumentError),
    ("device_id", {"uid"}, ArgumentError),
    *[(op, 5, ArgumentError) for op in OPERATIONS],
    *[(op, np.array(["plan"]), ArgumentError) for op in OPERATIONS],
    ("set", {1: "plan"}, ArgumentError),
    ("set", [["plan"]], ArgumentError),
    ("set", {"p": ["plan"]}, ArgumentError),
    ("set", literal("x"), ArgumentError),
    ("set", b"plan", ArgumentError),
    ("set_once", {"p": pd.Series(["plan"])}, ArgumentError),
    ("unset", 3, ArgumentError),
    ("unset", [3], ArgumentError),
    ("unset", {"a": 1}, ArgumentError),
    ("groups", ["g"], ArgumentError),
    ("groups", {1: "plan"}, ArgumentError),
    ("groups", {"g": ["plan"]}, ArgumentError),
    ("fields", ["country"], ArgumentError),
    ("fields", {"country": ["plan"]}, ArgumentError),
    ("fields", {1: "plan"}, UnknownFieldError),
    ("nulls", None, ArgumentError),
    ("nulls", 1, ArgumentError),
    ("nulls", "drop", ArgumentError),
    ("nulls", ["skip"], ArgumentError),
    ("nulls", np.array(["skip"]), ArgumentError),
    ("dry_run", "yes", ArgumentError),
    ("dry_run", "False", ArgumentError),
    ("dry_run", 1, ArgumentError),
    ("dry_run", None, ArgumentError),
    ("dry_run", np.array([True]), ArgumentError),
    ("api_key", 12345, ConfigurationError),
    ("api_key", b"0123456789abcdef", ConfigurationError),
    ("api_key", ["0123456789abcdef"], ConfigurationError),
    ("region", ["eu"], ConfigurationError),
    ("region", None, ConfigurationError),
    ("region", 1, ConfigurationError),
    ("region", "mars", ConfigurationError),
    ("server_url", 5, ConfigurationError),
    ("server_url", ["https://api2.amplitude.com/identify"], ConfigurationError),
    ("server_url", b"https://api2.amplitude.com/identify", ConfigurationError),
    ("server_url", "api2.amplitude.com/identify", ConfigurationError),
    ("session", "session", ConfigurationError),
    ("session", object(), ConfigurationError),
    ("batch_size", "10", ConfigurationError),
    ("batch_size", 10.0, ConfigurationError),
    ("max_workers", None, ConfigurationError),
    ("timeout", "3", ConfigurationError),
    ("timeout", [1], ConfigurationError),
    ("throttle_pause", None, ConfigurationError),
    ("throttle_budget", "x", ConfigurationError),
    ("retry_ambiguous", "yes", ConfigurationError),
    ("retry_ambiguous", 1, ConfigurationError),
    ("max_retries", 1.5, ConfigurationError),
    ("backoff", None, ConfigurationError),
    ("backoff_max", "1", ConfigurationError),
    ("interrupt_grace", [1], ConfigurationError),
    ("progress", None, ConfigurationError),
    ("progress", "no", ConfigurationError),
    ("sync", 5, ArgumentError),
    ("sync", "", ArgumentError),
    ("sync", "  ", ArgumentError),
    ("sync", ["job"], ArgumentError),
    ("removed", "drop", ArgumentError),
    ("removed", None, ArgumentError),
    ("ledger", 5, ArgumentError),
]


def _call(arg: str, value: Any, **base: Any) -> Any:
    kwargs: dict[str, Any] = {"user_id": "uid", "dry_run": True, **base, arg: value}
    return frame().amplitude.identify(**kwargs)


@pytest.mark.parametrize("arg, value, error", WRONG, ids=[f"{a}={v!r}" for a, v, _ in WRONG])
def test_a_wrong_value_raises_the_specific_error_naming_the_argument(
    arg: str, value: Any, error: type
) -> None:
    with pytest.raises(AmpPandasError) as info:
        _call(arg, value)
    assert type(info.value) is error
    assert names_argument(arg, str(info.value)), str(info.value)


SENDABLE = [row for row in WRONG if row[0] != "server_url"]  # the sandbox's URL stands there


@pytest.mark.parametrize("arg, value, error", SENDABLE, ids=[f"{a}={v!r}" for a, v, _ in SENDABLE])
def test_a_wrong_value_sends_nothing(arg: str, value: Any, error: type, sb: Sandbox) -> None:
    with pytest.raises(error):
        _call(arg, value, dry_run=False, server_url=sb.url, api_key=sb.api_key, progress=False)
    assert sb.requests == []


ODD_VALUES: list[Any] = [
    1.5, -1, "nonsense", b"uid", ["uid", ["x"]], {"a": []}, {1: "uid"}, frozenset(), ("uid", 1),
    np.array(["uid"]), pd.Series(["uid"]), object(), math.nan, pd.NA, literal("x"), print,
]  # fmt: skip
ALL_ARGS = [*MAPPING_ARGS, *WHERE_ARGS, *SENDING_OPTIONS]


@pytest.mark.parametrize("arg", ALL_ARGS)
def test_any_odd_value_is_accepted_or_refused_with_the_argument_named(arg: str) -> None:
    """The class: whatever lands in any argument, identify builds or raises its own error
    naming the argument (never KeyError, AttributeError or a TypeError from inside)."""
    for value in ODD_VALUES:
        try:
            _call(arg, value)
        except AmpPandasError as exc:
            assert isinstance(exc, (ArgumentError, ConfigurationError)), (arg, value)
            assert names_argument(arg, str(exc)), (arg, value, str(exc))


def test_wrong_values_in_every_pair_of_arguments_raise_the_package_errors() -> None:
    for (a, va, _), (b, vb, _) in itertools.combinations(WRONG[::7], 2):
        if a == b:
            continue
        with pytest.raises((ArgumentError, ConfigurationError)):
            frame().amplitude.identify(**{"user_id": "uid", "dry_run": True, a: va, b: vb})


# ------------------------------------------------------------------------------------ api_key
KEY_PARTS = ("0123456789abcdef", "DISTINCT1a2b")


def _exception_texts(exc: BaseException) -> list[str]:
    return ["".join(traceback.format_exception_only(exc)), repr(exc), *map(str, exc.args)]


@pytest.mark.parametrize("gap", [" ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\u200b"])
def test_a_key_with_whitespace_inside_is_refused_without_showing_it(gap: str) -> None:
    key = KEY_PARTS[0] + gap + KEY_PARTS[1]
    with pytest.raises(ConfigurationError, match="api_key holds whitespace") as info:
        frame().amplitude.identify(user_id="uid", dry_run=True, api_key=key)
    assert info.value.__cause__ is None and info.value.__context__ is None
    for text in _exception_texts(info.value):
        for part in KEY_PARTS:
            assert part not in text


def test_a_key_from_the_environment_with_whitespace_inside_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AMPLITUDE_API_KEY", f"{KEY_PARTS[0]} {KEY_PARTS[1]}")
    with pytest.raises(ConfigurationError, match="AMPLITUDE_API_KEY holds whitespace") as info:
        frame().amplitude.identify(user_id="uid", dry_run=True)
    for text in _exception_texts(info.value):
        assert KEY_PARTS[1] not in text


def test_a_key_given_to_preview_send_is_checked_too(sb: Sandbox) -> None:
    preview = frame().amplitude.identify(user_id="uid", set=["plan"], dry_run=True,
                                         server_url=sb.url)  # fmt: skip
    with pytest.raises(ConfigurationError, match="api_key holds whitespace"):
        preview.send(api_key=f"{KEY_PARTS[0]} {KEY_PARTS[1]}", progress=False)
    assert sb.requests == []


def test_surrounding_whitespace_is_still_trimmed() -> None:
    key = KEY_PARTS[0] + KEY_PARTS[1]
    preview = frame().amplitude.identify(user_id="uid", dry_run=True, api_key=f"  {key}\n")
    assert preview.settings.api_key is not None
    assert preview.settings.api_key.reveal() == key


# ------------------------------------------------------------------------------------ tuple labels
def multi_frame() -> pd.DataFrame:
    columns = pd.MultiIndex.from_tuples(
        [("ids", "uid"), ("ids", "device"), ("profile", "plan"), ("profile", "company")]
    )
    return pd.DataFrame(
        [["user-1", "device-1", "pro", "acme"], ["user-2", "device-2", "free", "initech"]],
        columns=columns,
    )


def test_multiindex_columns_are_named_by_their_full_tuple() -> None:
    preview = multi_frame().amplitude.identify(
        user_id=("ids", "uid"),
        device_id=("ids", "device"),
        set={"plan": ("profile", "plan")},
        groups={"company": ("profile", "company")},
        fields={"country": ("profile", "company")},
        dry_run=True,
    )
    assert preview.payloads == [
        {"user_id": "user-1", "device_id": "device-1", "country": "acme",
         "user_properties": {"$set": {"plan": "pro"}}, "groups": {"company": "acme"}},
        {"user_id": "user-2", "device_id": "device-2", "country": "initech",
         "user_properties": {"$set": {"plan": "free"}}, "groups": {"company": "initech"}},
    ]  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"user_id": "ids"}, ColumnNotFoundError,
         r"user_id: 'ids' is not a column label: the DataFrame's columns have 2 levels"),
        ({"user_id": ("ids",)}, ColumnNotFoundError, "user_id: .*full tuple"),
        ({"user_id": ("ids", "nope")}, ColumnNotFoundError,
         r"user_id: column \('ids', 'nope'\) is not in the DataFrame"),
        ({"user_id": ("ids", "uid"), "set": {"plan": "plan"}}, ColumnNotFoundError,
         "set: 'plan' is not a column label"),
        ({"user_id": ("ids", "uid"), "set": [("profile", "plan")]}, ArgumentError,
         r"set: column \('profile', 'plan'\) has a tuple label.*set=\{'name'"),
        ({"user_id": ("ids", "uid"), "add": ("profile", "plan")}, ArgumentError,
         r"add: column \('profile', 'plan'\) has a tuple label"),
    ],
)  # fmt: skip
def test_multiindex_partial_or_unnamed_labels_are_refused_with_what_to_write(
    kwargs: dict[str, Any], error: type, fragment: str
) -> None:
    with pytest.raises(error, match=fragment) as info:
        multi_frame().amplitude.identify(dry_run=True, **kwargs)
    assert type(info.value) is error


@pytest.mark.parametrize(
    "partial, suggestion",
    [("profile", ("profile", "plan")), (("ids",), ("ids", "uid")), ("nope", ("ids", "uid"))],
)
def test_a_partial_multiindex_key_suggests_a_full_label_under_it(
    partial: Any, suggestion: tuple[str, str]
) -> None:
    with pytest.raises(ColumnNotFoundError) as info:
        multi_frame().amplitude.identify(user_id=partial, dry_run=True)
    assert info.value.suggestion == suggestion
    assert f"e.g. {suggestion!r}" in str(info.value)


def test_a_tuple_is_a_label_when_the_flat_columns_hold_it_else_a_list_of_labels() -> None:
    columns = pd.Index(["uid", ("a", "b"), "a", "b"], tupleize_cols=False)
    df = pd.DataFrame([["user-1", "ab", 1, 2]], columns=columns)
    assert not isinstance(df.columns, pd.MultiIndex)
    by_name = df.amplitude.identify(user_id="uid", set={"p": ("a", "b")}, dry_run=True)
    assert by_name.payloads[0]["user_properties"] == {"$set": {"p": "ab"}}
    with pytest.raises(ArgumentError, match="has a tuple label"):
        df.amplitude.identify(user_id="uid", set=("a", "b"), dry_run=True)
    flat = pd.DataFrame({"uid": ["user-1"], "a": [1], "b": [2]})
    two = flat.amplitude.identify(user_id="uid", set=("a", "b"), dry_run=True)
    assert two.payloads[0]["user_properties"] == {"$set": {"a": 1, "b": 2}}


def test_a_tuple_id_label_on_flat_columns_is_used_when_present() -> None:
    columns = pd.Index([("ids", "uid"), "plan"], tupleize_cols=False)
    df = pd.DataFrame([["user-1", "pro"]], columns=columns)
    preview = df.amplitude.identify(user_id=("ids", "uid"), set=["plan"], dry_run=True)
    assert preview.payloads == [{"user_id": "user-1", "user_properties": {"$set": {"plan": "pro"}}}]
