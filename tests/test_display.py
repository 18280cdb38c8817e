"""Text and HTML views of a preview, and how a preview chooses between them and the widget."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import amp_pandas  # noqa: F401  (registers df.amplitude)
from amp_pandas import IdentifyPreview, _display
from amp_pandas._result import build_result

SECRET = "SECRET-KEY-0123456789abcdef"


def preview_of(df: pd.DataFrame | None = None, **kwargs) -> IdentifyPreview:
    if df is None:
        df = pd.DataFrame(
            {"uid": ["user-1", "null", "user-3"], "<b>plan</b>": ["pro", "free", None]}
        )
    kwargs.setdefault("api_key", SECRET)
    return df.amplitude.identify(user_id="uid", set=["<b>plan</b>"], dry_run=True, **kwargs)


@pytest.fixture
def no_ipywidgets(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import ipywidgets`` fails, as when the ``notebook`` extra is not installed."""
    monkeypatch.setitem(sys.modules, "ipywidgets", None)


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_display, "in_kernel", lambda: True)


def test_without_ipywidgets_a_kernel_gets_html_and_text_with_the_install_hint(
    no_ipywidgets: None, kernel: None
) -> None:
    preview = preview_of()
    bundle = preview._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    assert bundle["text/plain"].startswith("Amplitude identify preview")
    assert bundle["text/plain"].endswith(_display.INSTALL_HINT)
    assert 'pip install "amp_pandas[notebook]"' in bundle["text/plain"]
    html = bundle["text/html"]
    assert "<table" in html and "valid 1" in html
    assert "pip install &quot;amp_pandas[notebook]&quot;" in html
    assert "pip install &quot;amp_pandas[notebook]&quot;" in preview._repr_html_()
    assert "valid 1" in repr(preview)
    for text in (*bundle.values(), repr(preview), preview._repr_html_()):
        assert SECRET not in text


def test_the_hint_is_left_out_when_ipywidgets_is_there() -> None:
    pytest.importorskip("ipywidgets")
    assert _display.widgets_installed()
    assert _display.INSTALL_HINT not in preview_of()._repr_html_()
    assert _display.INSTALL_HINT not in repr(preview_of())


def test_the_widgets_check_does_not_import_ipywidgets(no_ipywidgets: None) -> None:
    assert not _display.widgets_installed()


def test_outside_a_kernel_no_widget_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr("amp_pandas._display.in_kernel", lambda: calls.append(1) or False)
    bundle = preview_of()._repr_mimebundle_()
    assert calls and _display.WIDGET_MIME not in bundle
    assert bundle["text/plain"] == repr(preview_of())


def test_in_kernel_is_false_in_a_plain_process() -> None:
    assert _display.in_kernel() is False


def test_import_and_display_outside_a_kernel_never_import_ipywidgets() -> None:
    code = textwrap.dedent(
        """
        import sys
        import pandas as pd
        import amp_pandas
        df = pd.DataFrame({"uid": ["user-1"], "plan": ["pro"]})
        preview = df.amplitude.identify(user_id="uid", set=["plan"], dry_run=True)
        repr(preview), preview._repr_html_(), preview._repr_mimebundle_()
        assert "ipywidgets" not in sys.modules, "ipywidgets was imported"
        assert "amp_pandas._widget" not in sys.modules
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_html_escapes_labels_and_values() -> None:
    html = preview_of()._repr_html_()
    assert "<b>plan</b>" not in html and "&lt;b&gt;plan&lt;/b&gt;" in html


def test_problem_groups_errors_first_biggest_first_with_row_labels() -> None:
    problems = pd.DataFrame(
        {
            "row": ["a", "b", "c", "d"] + list(range(10)),
            "column": ["x", "x", "y", "x"] + ["z"] * 10,
            "severity": ["warning", "warning", "error", "error"] + ["error"] * 10,
            "message": ["w", "w", "e1", "e2"] + ["e3"] * 10,
        }
    )
    groups = _display.problem_groups(problems)
    assert groups[["severity", "message", "count"]].values.tolist() == [
        ["error", "e3", 10], ["error", "e1", 1], ["error", "e2", 1], ["warning", "w", 2]
    ]
    assert groups.loc[0, "rows"] == "0, 1, 2, 3, 4, 5, 6, 7 … (+2 more)"
    assert groups.loc[3, "rows"] == "'a', 'b'"
    assert _display.problem_groups(problems.iloc[:0]).empty


def test_payload_text_for_valid_invalid_and_skipped_rows() -> None:
    preview = preview_of()
    assert '"user_id": "user-1"' in _display.payload_text(preview, 0)
    invalid = _display.payload_text(preview, 1)
    assert invalid.startswith("Not sent: this row is invalid.") and "rejected ids" in invalid
    assert _display.payload_text(preview, 2).startswith("Not sent: this row is skipped.")
    assert _display.row_caption(preview, 1) == "position 1 of 3 · index label 1 · invalid"


@pytest.mark.parametrize(
    ("kwargs", "frame", "reason"),
    [
        ({}, None, None),
        ({"api_key": None}, None, "no API key"),
        ({}, pd.DataFrame({"uid": ["null"], "<b>plan</b>": ["pro"]}), "no valid rows"),
    ],
)
def test_send_blocker(kwargs, frame, reason, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMPLITUDE_API_KEY", raising=False)
    blocker = _display.send_blocker(preview_of(frame, **kwargs))
    assert blocker is None if reason is None else reason in blocker


def test_result_summary_leads_with_colored_counts_then_the_rows_not_succeeded() -> None:
    n = 30
    status = np.zeros(n, dtype=int)
    status[[3, 7]] = 3  # failed
    status[[5]] = 5  # unknown
    error = np.full(n, None, dtype=object)
    error[[3, 7]] = "HTTP 400: <bad>"
    error[5] = "may have been applied (HTTP 500)"
    result = build_result(pd.Index([f"u{i}" for i in range(n)]), status, np.full(n, 200),
                          error, np.ones(n, dtype=int))
    html = _display.result_summary_html(result, limit=2)
    assert html.index("27 success") < html.index("2 failed") < html.index("1 unknown")
    assert "color:#cf222e" in html  # failed in red
    assert "Rows that did not succeed (3, first 2 shown)" in html
    assert "u3" in html and "u5" in html and "u7" not in html.split("Rows that did not")[1]
    assert "&lt;bad&gt;" in html and "<bad>" not in html
    ok = build_result(pd.RangeIndex(2), np.zeros(2, dtype=int), np.full(2, 200),
                      np.full(2, None, dtype=object), np.ones(2, dtype=int))
    assert "did not succeed" not in _display.result_summary_html(ok)
