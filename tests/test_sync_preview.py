"""The dry run of a sync job: ``preview.sync``, the summary, the text and HTML views, and the
widget's header and Removed tab (with the stable classes browser tests select)."""

from __future__ import annotations

import html
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import amp_pandas  # noqa: F401  (registers df.amplitude)
from amp_pandas import literal
from amp_pandas.sandbox import Sandbox

KW: dict[str, Any] = {"user_id": "uid", "set": ["plan"],
                      "post_insert": {"campaigns": literal("q2")}, "sync": "weekly"}  # fmt: skip


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


def identify(df: pd.DataFrame, sb: Sandbox, path: Path, **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return df.amplitude.identify(**{**KW, **kw}, server_url=sb.url, api_key=sb.api_key,
                                     ledger=path, progress=False)  # fmt: skip


@pytest.fixture
def week2(sb: Sandbox, path: Path) -> Any:
    """Week 1 sent user-1..user-3; week 2 keeps user-1, changes user-2, adds user-4 and
    drops user-3."""
    identify(pd.DataFrame({"uid": ["user-1", "user-2", "user-3"], "plan": ["a", "b", "c"]}),
             sb, path)  # fmt: skip
    sb.reset()
    df = pd.DataFrame({"uid": ["user-1", "user-2", "user-4"], "plan": ["a", "B", "d"]})
    return identify(df, sb, path, dry_run=True, removed="revert")


REVERT = {"user_id": "user-3",
          "user_properties": {"$unset": {"plan": "-"}, "$remove": {"campaigns": ["q2"]}}}


def test_preview_sync_counts_summary_and_reverts(week2: Any, sb: Sandbox) -> None:
    sync = week2.sync
    assert sync.job == "weekly" and sync.held_users == 3
    assert sync.last_run is not None
    assert sync.counts == {"new": 1, "changed": 1, "unchanged": 1, "ambiguous": 0, "held": 0,
                           "removed": 1}  # fmt: skip
    assert (sync.send_rows, sync.unchanged_rows) == (2, 1)
    assert week2.summary[["valid", "unchanged", "removed"]].tolist() == [3, 1, 1]
    assert sync.reverts[["user_id", "identification"]].values.tolist() == [["user-3", REVERT]]
    assert sb.requests == []  # a dry run sends nothing


def test_text_view_says_the_plan_and_what_a_send_will_do(week2: Any) -> None:
    text = repr(week2)
    assert "sync job 'weekly' · last run " in text
    assert "holds 3 users" in text
    assert ("users: unchanged 1 · changed 1 · new 1 · removed 1 (revert) · ambiguous 0 "
            "· held 0") in text  # fmt: skip
    assert ("A Send will send 2 rows of 2 new or changed users, skip 1 unchanged user, revert "
            "1 of 1 removed user (sync job 'weekly').") in text  # fmt: skip
    assert ('user-3: {"user_id": "user-3", "user_properties": {"$unset": {"plan": "-"}, '
            '"$remove": {"campaigns": ["q2"]}}}') in text  # fmt: skip


def test_html_view_has_the_counts_and_the_removed_table(week2: Any) -> None:
    page = week2._repr_html_()
    counts = dict(re.findall(r'data-status="(\w+)">\w+ <b>([\d,]+)</b>', page))
    assert counts == {"unchanged": "1", "changed": "1", "new": "1", "removed": "1",
                      "ambiguous": "0", "held": "0"}  # fmt: skip
    assert 'class="amp-pandas amp-removed" data-count="1" data-mode="revert"' in page
    assert '<tr class="amp-removed-row" data-user="user-3">' in page
    payload = re.search(r'<pre class="amp-revert-payload">(.*?)</pre>', page, re.S)
    assert payload is not None
    import json

    assert json.loads(html.unescape(payload.group(1))) == REVERT


def test_without_sync_the_views_have_no_sync_part() -> None:
    preview = pd.DataFrame({"uid": ["user-1"], "plan": ["a"]}).amplitude.identify(
        user_id="uid", set=["plan"], dry_run=True)
    assert preview.sync is None
    assert "unchanged" not in preview.summary and "removed" not in preview.summary
    assert "sync job" not in repr(preview)
    assert "amp-sync" not in preview._repr_html_() and "amp-removed" not in preview._repr_html_()


def test_a_dry_run_without_a_ledger_file_creates_none(sb: Sandbox, path: Path) -> None:
    preview = identify(pd.DataFrame({"uid": ["user-1"], "plan": ["a"]}), sb, path,
                       dry_run=True)  # fmt: skip
    assert not path.exists()
    assert preview.sync.counts["new"] == 1
    assert "does not exist yet" in repr(preview)


# --- the widget ---------------------------------------------------------------------------------

widgets = pytest.importorskip("ipywidgets")


@pytest.fixture(autouse=True)
def _close_widgets() -> Iterator[None]:
    yield
    widgets.Widget.close_all()


def test_widget_header_removed_tab_and_send(week2: Any, sb: Sandbox) -> None:
    from amp_pandas._widget import PreviewWidget

    w = PreviewWidget(week2)
    assert "amp-widget-header" in w.header._dom_classes
    assert 'class="amp-sync-send"' in w.header.value
    assert "A Send will send 2 rows" in w.header.value
    assert w.tabs.titles == ("Operations", "Payloads", "Problems", "Removed (1)")
    assert w.removed_view is not None and "amp-removed-tab" in w.removed_view._dom_classes
    assert w.tabs.children[3] is w.removed_view
    assert 'data-user="user-3"' in w.removed_view.value
    assert w.send_button.description == "Send 2 rows"
    assert "amp-send-button" in w.send_button._dom_classes
    w._on_send()
    assert w.state == "sent"
    assert 'data-status="success"' in w.removed_view.value and "data-sent" in w.removed_view.value
    assert w.result is not None
    assert w.result.status.tolist() == ["unchanged", "success", "success"]
    assert sb.profile("user-3") == {}  # the sandbox was reset after week 1: nothing to remove
    assert sorted(i["user_id"] for i in sb.applied) == ["user-2", "user-3", "user-4"]


def test_widget_send_disabled_when_every_user_is_unchanged(sb: Sandbox, path: Path) -> None:
    from amp_pandas._widget import PreviewWidget

    df = pd.DataFrame({"uid": ["user-1"], "plan": ["a"]})
    identify(df, sb, path)
    w = PreviewWidget(identify(df, sb, path, dry_run=True))
    assert w.send_button.disabled
    assert "every user is unchanged" in w.blocker


def test_summary_requests_and_bytes_count_only_what_a_send_posts(
    sb: Sandbox, path: Path
) -> None:
    """The sync preview's requests and bytes are those of the rows a send posts (new and
    changed users): the same as a plain dry run of just those rows; an all-unchanged run
    posts nothing."""
    week1 = pd.DataFrame({"uid": [f"user-{i}" for i in range(10)], "plan": ["a"] * 10})
    identify(week1, sb, path)
    again = identify(week1, sb, path, dry_run=True, batch_size=3)
    assert again.summary[["valid", "unchanged", "requests", "bytes"]].tolist() == [10, 10, 0, 0]
    week2 = week1.assign(plan=["a"] * 5 + ["b"] * 5)
    week2.loc[10] = ["user-10", "c"]
    preview = identify(week2, sb, path, dry_run=True, batch_size=3)
    sent = week2.iloc[5:]  # changed user-5..user-9 and new user-10
    plain = sent.amplitude.identify(**{**KW, "sync": None}, server_url=sb.url,
                                    api_key=sb.api_key, dry_run=True, batch_size=3)
    assert plain.summary["requests"] == 2  # 6 rows, 3 per request
    assert preview.summary[["requests", "bytes"]].tolist() == \
        plain.summary[["requests", "bytes"]].tolist()  # fmt: skip
