"""The result frame: columns, dtypes, plain-frame behaviour, display, summary, warning text."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from amp_pandas._result import (
    STATUSES,
    SendResult,
    build_result,
    not_succeeded_message,
    summarize,
)


def _result(index=None) -> SendResult:
    # success, failed, success, unknown, not_sent, invalid
    index = pd.Index(["a", "b", "c", "d", "e", "f"], name="uid") if index is None else index
    return build_result(
        index,
        np.array([0, 3, 0, 5, 6, 1]),
        np.array([200, 400, 200, 500, 0, 0]),
        np.array(
            [
                None,
                "rejected by Amplitude (HTTP 400): bad id",
                None,
                "may have been applied",
                "not sent: the send was interrupted",
                "user_id: too short",
            ],
            dtype=object,
        ),
        np.array([1, 4, 1, 1, 0, 0]),
    )


def test_columns_dtypes_and_index() -> None:
    r = _result()
    assert list(r.columns) == ["status", "http_status", "error", "attempts"]
    assert r.index.equals(pd.Index(list("abcdef"), name="uid"))
    assert str(r["http_status"].dtype) == "Int64"
    assert r["http_status"].isna().tolist() == [False] * 4 + [True] * 2
    assert r["error"].isna().tolist() == [True, False, True, False, False, False]
    assert r["attempts"].dtype == np.int64
    assert r["status"].tolist() == [
        "success",
        "failed",
        "success",
        "unknown",
        "not_sent",
        "invalid",
    ]


def test_derived_frames_are_plain_dataframes() -> None:
    r = _result()
    assert isinstance(r, pd.DataFrame)
    for derived in (r[r.status != "success"], r.copy(), r.head(2), r[["status"]], r.iloc[:3]):
        assert type(derived) is pd.DataFrame
    assert type(r.status) is pd.Series


def test_filter_aligns_with_the_input_frame() -> None:
    df = pd.DataFrame({"x": range(6)}, index=pd.Index(list("abcdef"), name="uid"))
    r = _result()
    assert df[r.status != "success"].index.tolist() == ["b", "d", "e", "f"]


def test_build_copies_its_arrays() -> None:
    status = np.zeros(2, dtype=np.int8)
    http = np.array([200, 200])
    error = np.array([None, None], dtype=object)
    attempts = np.ones(2, dtype=np.int64)
    r = build_result(pd.RangeIndex(2), status, http, error, attempts)
    status[:] = 3
    http[:] = 500
    error[:] = "late"
    attempts[:] = 9
    assert r.status.tolist() == ["success", "success"]
    assert r.http_status.tolist() == [200, 200]
    assert r.error.isna().all() and r.attempts.tolist() == [1, 1]


def test_summarize_counts_every_status_in_order() -> None:
    counts = summarize(_result())
    assert list(counts.index) == list(STATUSES)
    assert counts.to_dict() == {
        "success": 2,
        "invalid": 1,
        "skipped": 0,
        "failed": 1,
        "throttled": 0,
        "unknown": 1,
        "not_sent": 1,
        "unchanged": 0,
    }
    # also on a plain, filtered frame
    r = _result()
    assert summarize(r[r.status == "success"])["success"] == 2


def test_text_repr_leads_with_counts_then_failures_then_the_rest() -> None:
    text = repr(_result())
    first = text.splitlines()[0]
    assert first == (
        "Amplitude identify result — 6 rows: 2 success · 1 invalid · 1 failed · "
        "1 unknown · 1 not_sent"
    )
    # reasons are listed, by status
    assert text.splitlines()[1:6] == [
        "Not succeeded, by reason:",
        "  invalid         1  user_id: too short  (rows 'f')",
        "  failed          1  rejected by Amplitude (HTTP 400): bad id  (rows 'b')",
        "  unknown         1  may have been applied  (rows 'd')",
        "  not_sent        1  not sent: the send was interrupted  (rows 'e')",
    ]
    # in the table, every non-success row comes before the successes
    table_rows = [ln.split()[0] for ln in text.splitlines() if re.match(r"^[a-f]\s", ln)]
    assert table_rows == ["b", "d", "e", "f", "a", "c"]


def test_html_repr_colors_each_count_and_puts_failures_first() -> None:
    html = _result()._repr_html_()
    head = html[: html.index("<table")]
    for status, n in [("success", 2), ("failed", 1), ("unknown", 1), ("not_sent", 1)]:
        assert re.search(
            rf'amp-pandas-{status}" style="color:#[0-9a-f]{{6}};[^"]*">{n} {status}', head
        )
    assert "skipped" not in head  # zero counts are left out
    # the rows table (the last one) lists b before a
    last_table = html[html.rindex("<table") :]
    assert last_table.index("<th>b</th>") < last_table.index("<th>a</th>")


def test_html_escapes_reasons() -> None:
    r = build_result(
        pd.RangeIndex(1),
        np.array([3]),
        np.array([400]),
        np.array(["<script>x</script>"], dtype=object),
        np.array([1]),
    )
    assert "<script>" not in r._repr_html_()


def test_all_success_repr_has_no_reason_section() -> None:
    r = build_result(
        pd.RangeIndex(2),
        np.zeros(2, int),
        np.full(2, 200),
        np.array([None, None], dtype=object),
        np.ones(2, int),
    )
    assert "by reason" not in repr(r)
    assert not_succeeded_message(r) is None


def test_warning_message_counts_and_rerun_hint() -> None:
    assert not_succeeded_message(_result()) == (
        "4 of 6 rows did not succeed (1 invalid, 1 failed, 1 unknown, 1 not_sent); the reasons "
        "are in result.error. To re-run them once the cause is fixed: "
        'df[result.status != "success"].amplitude.identify(...). Rows with status \'unknown\' '
        "may already have been applied: re-running rows that hold $add, $append or $prepend "
        "can apply them twice."
    )


def test_skipped_rows_alone_do_not_warn() -> None:
    r = build_result(
        pd.RangeIndex(2),
        np.array([0, 2]),
        np.array([200, 0]),
        np.array([None, "nothing to send"], dtype=object),
        np.array([1, 0]),
    )
    assert not_succeeded_message(r) is None


@pytest.mark.parametrize("n", [0, 100_000])
def test_display_scales(n: int) -> None:
    r = build_result(
        pd.RangeIndex(n),
        np.zeros(n, int),
        np.full(n, 200),
        np.full(n, None, dtype=object),
        np.ones(n, int),
    )
    assert repr(r).startswith(f"Amplitude identify result — {n:,} rows")
    assert r._repr_html_().count("<tr>") < 100


def test_reasons_are_grouped_by_kind_with_example_rows() -> None:
    n = 7
    error = np.array(
        [f"rejected by Amplitude (HTTP 400): user_id 'id-{i}' is not valid" for i in range(n)]
        + [None, "may have been applied (HTTP 500)"],
        dtype=object,
    )
    status = np.array([3] * n + [0, 5])
    r = build_result(
        pd.Index([np.int64(10 + i) for i in range(n + 2)], dtype=object), status,
        np.array([400] * n + [200, 500]), error, np.ones(n + 2, dtype=int),
    )
    lines = repr(r).splitlines()
    assert lines[:4] == [
        "Amplitude identify result — 9 rows: 1 success · 7 failed · 1 unknown",
        "Not succeeded, by reason:",
        "  failed          7  rejected by Amplitude (HTTP 400): user_id … is not valid  "
        "(rows 10 ('id-0'), 11 ('id-1'), 12 ('id-2') … (+4 more))",
        "  unknown         1  may have been applied (HTTP 500)  (rows 18)",
    ]
    html = r._repr_html_()
    assert "user_id … is not valid" in html and "np.int64" not in html


def test_the_result_holds_data_and_the_display_module_renders_it() -> None:
    from amp_pandas import _display

    r = _result()
    assert repr(r) == _display.result_text(r)
    assert r._repr_html_() == _display.result_html(r)
