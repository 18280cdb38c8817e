"""Text and HTML views of a preview, and how a preview chooses between them and the widget."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


REJECTED = "user_id {} is on Amplitude's list of rejected ids; fix or drop the row"
GROUPS = "{} groups in one row; Amplitude allows at most 5"
LONG = "string longer than 1024 characters; Amplitude truncates it"


def problems_frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["row", "column", "severity", "message"])


def test_problem_groups_by_kind_errors_first_biggest_first_with_example_values() -> None:
    problems = problems_frame(
        [(i, "bio", "warning", LONG) for i in range(10)]
        + [
            ("a", "uid", "error", REJECTED.format("'n/a'")),
            ("d", "grp", "error", GROUPS.format(7)),
            ("b", "uid", "error", REJECTED.format("'n/a'")),
            ("c", "uid", "error", REJECTED.format("'null'")),
            ("e", "grp", "error", GROUPS.format(9)),
        ]
    )
    groups = _display.problem_groups(problems)
    assert list(groups.columns) == ["severity", "column", "problem", "count", "rows"]
    assert groups.values.tolist() == [
        ["error", "uid", "user_id … is on Amplitude's list of rejected ids; fix or drop the row",
         3, "'a' ('n/a'), 'b' ('n/a'), 'c' ('null')"],
        ["error", "grp", "… groups in one row; Amplitude allows at most 5", 2, "'d' (7), 'e' (9)"],
        ["warning", "bio", LONG, 10, "0, 1, 2 … (+7 more)"],
    ]
    assert _display.problem_groups(problems.iloc[:0]).empty


def test_one_message_for_every_row_keeps_its_value_in_the_kind() -> None:
    problems = problems_frame([(r, "uid", "error", REJECTED.format("'n/a'")) for r in "ab"])
    assert _display.problem_groups(problems).values.tolist() == [
        ["error", "uid", REJECTED.format("'n/a'"), 2, "'a', 'b'"],
    ]


def test_values_and_row_labels_are_shown_in_plain_form() -> None:
    message = "an id must be a string or a whole number, got float {}"
    problems = problems_frame(
        [
            (np.int64(5), "uid", "error", message.format("np.float64(100000.5)")),
            (np.int64(6), "uid", "error", message.format("np.float64(100001.5)")),
            (np.int64(7), "flag", "error", "got np.str_('x') and np.True_"),
        ]
    )
    groups = _display.problem_groups(problems)
    assert groups.values.tolist() == [
        ["error", "uid", message.format("…"), 2, "5 (100000.5), 6 (100001.5)"],
        ["error", "flag", "got 'x' and True", 1, "7"],
    ]


def test_kinds_split_by_column_and_by_what_the_message_says() -> None:
    problems = problems_frame(
        [
            (1, "a", "error", "$add needs a number, got str 'x'"),
            (2, "b", "error", "$add needs a number, got str 'y'"),
            (3, "a", "error", "$add needs a number, got list [1, 2]"),
            (4, "a", "error", "$add needs a number, got str 'z'"),
            (5, "a", "error", "got str 'abcdefghijklmnopqrstuvwxyzabcdefghijk..."),
            (6, "a", "error", "got str 'bcdefghijklmnopqrstuvwxyzabcdefghijkl..."),
        ]
    )
    assert _display.problem_groups(problems).values.tolist() == [
        ["error", "a", "$add needs a number, got str …", 2, "1 ('x'), 4 ('z')"],
        ["error", "a", "got str …", 2,
         "5 ('abcdefghijklmnopqrstuvwxyzabcdefghijk...), "
         "6 ('bcdefghijklmnopqrstuvwxyzabcdefghijkl...)"],
        ["error", "b", "$add needs a number, got str 'y'", 1, "2"],
        ["error", "a", "$add needs a number, got list [1, 2]", 1, "3"],
    ]


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("user_id 'n/a' is on Amplitude's list", "user_id … is on Amplitude's list"),
        ('got str "it\'s"', "got str …"),
        ("got float nan; Decimal 1E+400 too", "got float …; Decimal … too"),
        ("got float -inf or +Infinity", "got float … or …"),
        ("got -5 and +2.5e-3 in utf-8 and $add", "got … and … in utf-8 and $add"),
        ("got np.float64(1.5) in [np.int64(1), np.int64(2)]", "got … in […, …]"),
        ("no usable id: 'uid' missing in this row", "no usable id: … missing in this row"),
        ("nothing to send", "nothing to send"),
    ],
)
def test_problem_kind(message: str, kind: str) -> None:
    assert _display.problem_kind(message) == kind


def test_half_a_million_kinds_of_one_read_each_message_a_few_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Distinct messages (a float id per row) are one kind; the Python-level reading of single
    messages does not grow with the rows (the rest is vectorized)."""
    n = 30_000
    df = pd.DataFrame({"uid": np.arange(n) + 100000.5, "plan": "pro"})
    preview = df.amplitude.identify(user_id="uid", set=["plan"], dry_run=True)
    assert preview.problems["message"].nunique() == n
    calls = []
    split = _display._split
    monkeypatch.setattr(_display, "_split", lambda m: calls.append(m) or split(m))
    text = repr(preview)
    assert len(calls) <= 5
    kind = (
        "an id must be a string or a whole number, got float …; "
        "read the column as integers or text"
    )
    assert (
        f"  error   uid: {kind} — 30,000 rows: 0 (100000.5), 1 (100001.5), 2 (100002.5) "
        "… (+29,997 more)"
    ) in text.splitlines()
    assert "Problems: 1 kind of problem, 30,000 problems" in text.splitlines()
    html = preview._repr_html_()
    problems_table = html.split("<h4>Problems</h4>", 1)[1].split("</table>", 1)[0]
    assert problems_table.count("<tr>") == 1  # one kind, one line
    assert "np.float64" not in text + html
    assert "0 (100000.5), 1 (100001.5), 2 (100002.5) … (+29,997 more)" in html


def test_the_text_lists_the_first_kinds_and_says_how_many_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_display, "TEXT_GROUPS", 1)
    df = pd.DataFrame({"uid": ["null", "user-2", "abc"], "p": ["x", "y" * 1100, "z"]})
    text = repr(df.amplitude.identify(user_id="uid", set=["p"], dry_run=True))
    lines = text.splitlines()
    start = lines.index("Problems: 3 kinds of problem, 3 problems (first 1 shown)")
    assert lines[start + 1].startswith("  error   uid: user_id 'null' is on")
    assert lines[start + 2] == "  … 2 more kinds: see preview.problems"


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


@settings(derandomize=True, max_examples=150, deadline=None)
@given(
    value=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(10**20), 10**20),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
    ),
    numpy=st.booleans(),
)
def test_a_value_of_any_kind_is_taken_out_of_the_message(value: object, numpy: bool) -> None:
    """Messages that differ only in a cell's repr (as the build writes them: ``{v!r}``, also
    a numpy scalar's) have the same kind."""
    if numpy:
        value = np.float64(value) if isinstance(value, float) else np.str_(value)
        if isinstance(value, np.str_) and not str(value):
            value = np.str_("x")
    message = f"plan {value!r} is not allowed here; fix the row"
    kind = "plan … is not allowed here; fix the row"
    assert _display.problem_kind(message) == kind
    # the vectorized grouping (pyarrow's regular expressions) agrees with it
    other = "plan 'another value' is not allowed here; fix the row"
    problems = problems_frame([(1, "plan", "error", message), (2, "plan", "error", other)])
    assert _display.problem_groups(problems)[["problem", "count"]].values.tolist() == (
        [[kind, 2]] if message != other else [[message, 2]]
    )
