"""The interactive preview widget, built in a plain process (no kernel, no frontend needed)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pandas as pd
import pytest

import amp_pandas  # noqa: F401  (registers df.amplitude)
from amp_pandas import IdentifyPreview, _display
from amp_pandas.sandbox import Sandbox

widgets = pytest.importorskip("ipywidgets")
from amp_pandas._widget import PreviewWidget, widget_for  # noqa: E402

SECRET = "SECRET-KEY-0123456789abcdef"


@pytest.fixture(autouse=True)
def _close_widgets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("AMPLITUDE_API_KEY", raising=False)
    yield
    widgets.Widget.close_all()


def frame() -> pd.DataFrame:
    """Six rows: 3 valid (one with a warning), 2 invalid, 1 skipped."""
    return pd.DataFrame(
        {
            "uid": ["user-1", "user-2", "null", "user-4", "u5", "user-6"],
            "plan": ["pro", "free", "free", None, "pro", "team"],
            "bio": ["x" * 1100, "short", "a", None, "c", "d"],
        },
        index=[f"r{i}" for i in range(6)],
    )


def preview_of(df: pd.DataFrame | None = None, **kwargs) -> IdentifyPreview:
    kwargs.setdefault("api_key", SECRET)
    df = frame() if df is None else df
    return df.amplitude.identify(user_id="uid", set=["plan", "bio"], dry_run=True, **kwargs)


def walk(widget: widgets.Widget) -> Iterator[widgets.Widget]:
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def strings(widget: widgets.Widget) -> list[str]:
    """Every string a user can see or a frontend receives, over the whole tree."""
    out = []
    for w in walk(widget):
        state = w.get_state()
        out.append(json.dumps(state, default=str))
        for name in ("value", "description", "tooltip", "placeholder", "label"):
            v = getattr(w, name, None)
            if isinstance(v, str):
                out.append(v)
        out += [str(t) for t in getattr(w, "titles", ())]
        out += [str(o) for o in getattr(w, "options", ())]
    out.append(repr(widget))
    out += [v for v in widget._repr_mimebundle_().values() if isinstance(v, str)]
    return out


def test_header_shows_counts_requests_endpoint_and_masked_key() -> None:
    w = PreviewWidget(preview_of())
    header = w.header.value
    for text in ("rows <b>6</b>", "valid <b>3</b>", "invalid <b>2</b>", "skipped <b>1</b>",
                 "warnings <b>1</b>", "1 request", "https://api2.amplitude.com/identify",
                 "•••• cdef"):
        assert text in header
    assert SECRET not in header


def test_header_says_when_no_key_is_set() -> None:
    w = PreviewWidget(preview_of(api_key=None))
    assert "no key set" in w.header.value


def test_tabs_and_operations() -> None:
    w = PreviewWidget(preview_of())
    assert w.tabs.titles == ("Operations", "Payloads", "Problems (3)")
    assert w.tabs.children[0] is w.operations_view
    ops = w.operations_view.value
    assert "$set" in ops and "column 'plan'" in ops and "column 'bio'" in ops
    assert "<table" in ops


def test_row_picker_changes_the_payload() -> None:
    w = PreviewWidget(preview_of())
    # starts on the first valid row
    assert w.row_picker.value == 0
    assert '&quot;user_id&quot;: &quot;user-1&quot;' in w.payload_view.value
    w.row_picker.value = 1
    assert "index label &#x27;r1&#x27;" in w.row_caption.value
    shown = json.loads(_unescape_pre(w.payload_view.value))
    assert shown == {"user_id": "user-2", "user_properties": {"$set": {"plan": "free",
                                                                         "bio": "short"}}}
    w.next_button.click()
    assert w.row_picker.value == 2
    assert "Not sent: this row is invalid" in w.payload_view.value
    assert "rejected ids" in w.payload_view.value
    w.next_button.click()
    assert "this row is skipped" in w.payload_view.value
    w.prev_button.click()
    w.prev_button.click()
    w.prev_button.click()
    w.prev_button.click()  # stops at the first row
    assert w.row_picker.value == 0
    w.row_picker.value = 5
    w.next_button.click()  # stops at the last row
    assert w.row_picker.value == 5 and "user-6" in w.payload_view.value


def _unescape_pre(value: str) -> str:
    import html

    inner = value.split("<pre>", 1)[1].split("</pre>", 1)[0]
    return html.unescape(inner)


def test_problems_tab_groups_and_filters() -> None:
    w = PreviewWidget(preview_of())
    view = w.problems_view
    assert "rejected ids" in view.value and "shorter than 5" in view.value
    # the long bio: a warning
    assert "string longer than 1024 characters; Amplitude truncates it" in view.value
    assert "user_id 'null' is on Amplitude's list of rejected ids" in view.value
    assert "<td>'r2'</td>" in view.value  # row labels
    w.severity_filter.value = "warning"
    assert len(w.filtered_problems()) == 1
    assert "rejected ids" not in view.value and "bio" in view.value
    w.severity_filter.value = "error"
    assert len(w.filtered_problems()) == 2
    uid = next(value for label, value in w.column_filter.options if label == "uid")
    w.column_filter.value = uid
    assert set(w.filtered_problems()["column"]) == {"uid"}
    w.severity_filter.value = "warning"
    assert w.filtered_problems().empty
    assert "No problems match these filters" in view.value
    w.column_filter.value = -1
    w.severity_filter.value = ""
    assert len(w.filtered_problems()) == 3


def test_no_problems() -> None:
    df = pd.DataFrame({"uid": ["user-1"], "plan": ["pro"], "bio": ["b"]})
    w = PreviewWidget(preview_of(df))
    assert w.tabs.titles[2] == "Problems"
    assert "No problems" in w.problems_view.value


def test_send_sends_the_plan_shows_progress_and_the_result_once() -> None:
    with Sandbox(api_key=SECRET) as sb:
        preview = preview_of(server_url=sb.url, batch_size=1)
        w = PreviewWidget(preview)
        assert w.state == "ready" and not w.send_button.disabled
        assert w.send_button.description == "Send 3 rows"
        assert w.progress_box.layout.display == "none"
        w.send_button.click()
        requests_after_first = len(sb.requests)
        w.send_button.click()  # a second press sends nothing
        w._on_send()
        assert len(sb.requests) == requests_after_first == 3
        profiles = sb.profiles()
    assert sorted(profiles.index) == ["user-1", "user-2", "user-6"]
    assert profiles.loc["user-6", "plan"] == "team"
    assert w.state == "sent"
    assert w.send_button.disabled and w.send_button.description == "Sent"
    assert w.progress_box.layout.display == "flex"
    assert w.progress.value == w.progress.max == 3
    assert "succeeded 3" in w.progress_label.value
    assert "3 of 3 rows succeeded" in w.send_status.value
    result = w.result
    assert result is not None and result.status.tolist() == [
        "success", "success", "invalid", "skipped", "invalid", "success"
    ]
    view = w.result_view.value
    assert "3 success" in view and "2 invalid" in view and "1 skipped" in view
    assert "color:#1a7f37" in view  # colored counts
    assert "Rows that did not succeed (3)" in view and "r4" in view
    assert "Sent: 3 success · 2 invalid · 1 skipped." in repr(w)
    assert not any(SECRET in s for s in strings(w))
    assert preview.result is result  # reachable from code after pressing Send


def test_a_widget_of_a_preview_sent_in_code_cannot_send() -> None:
    with Sandbox(api_key=SECRET) as sb:
        preview = preview_of(server_url=sb.url)
        with pytest.warns(amp_pandas.errors.RowsNotSucceededWarning):
            preview.send(progress=False)
        n_requests = len(sb.requests)
        w = PreviewWidget(preview)
        w.send_button.click()
        w._on_send()
        assert len(sb.requests) == n_requests
    assert w.state == "blocked" and w.send_button.disabled and w.result is None
    assert "this preview was sent already" in w.send_status.value
    assert "this preview was sent already" in w.send_button.tooltip


def test_send_after_preview_send_in_code_refuses_and_shows_that_result() -> None:
    with Sandbox(api_key=SECRET) as sb:
        preview = preview_of(server_url=sb.url)
        w = PreviewWidget(preview)  # shown first, then sent from code
        with pytest.warns(amp_pandas.errors.RowsNotSucceededWarning):
            first = preview.send(progress=False)
        n_requests = len(sb.requests)
        w.send_button.click()
        assert len(sb.requests) == n_requests
        profiles = sb.profiles()
    assert profiles.loc["user-1", "plan"] == "pro"
    assert w.state == "failed" and w.send_button.disabled
    assert w.send_button.description == "Not sent: already sent"
    assert w.result is first and preview.result is first
    assert "this preview was sent already" in w.send_status.value
    assert "preview.send(force=True)" in w.send_status.value
    assert "3 success" in w.result_view.value  # the earlier send's result


def test_after_the_widget_sent_preview_send_refuses_unless_forced() -> None:
    df = pd.DataFrame({"uid": ["user-1"], "n": [5]})
    with Sandbox(api_key=SECRET) as sb:
        preview = df.amplitude.identify(
            user_id="uid", add=["n"], dry_run=True, server_url=sb.url, api_key=SECRET
        )
        w = PreviewWidget(preview)
        w.send_button.click()
        assert w.state == "sent" and preview.result is w.result
        with pytest.raises(amp_pandas.errors.AlreadySentError):
            preview.send(progress=False)
        assert sb.profile("user-1") == {"n": 5}
        preview.send(force=True, progress=False)
        assert sb.profile("user-1") == {"n": 10}


def test_progress_reaches_the_bar_through_the_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    from amp_pandas import _send

    seen = []
    send_plan = _send.send_plan

    def fake_send(plan, settings, *, progress_callback):
        assert settings.progress is False  # no tqdm bar next to the widget's own
        base = {"success": 0, "invalid": 2, "skipped": 1, "failed": 0, "throttled": 0,
                "unknown": 0, "not_sent": 0, "rows": 6}
        progress_callback({**base, "success": 1, "pending": 2}, None)
        seen.append((w.progress.value, w.progress_label.value))
        progress_callback({**base, "success": 1, "pending": 2},
                          "waiting 1s for 2 throttled ids")
        progress_callback({**base, "success": 3, "pending": 0}, None)
        seen.append((w.progress.value, w.progress_label.value))
        return send_plan(plan, settings, progress_callback=None)

    monkeypatch.setattr(_send, "send_plan", fake_send)
    with Sandbox(api_key=SECRET) as sb:
        w = PreviewWidget(preview_of(server_url=sb.url))
        w.send_button.click()
    assert seen == [
        (1, "succeeded 1 · failed 0 · throttled 0"),
        (3, "succeeded 3 · failed 0 · throttled 0"),
    ]
    assert w.state == "sent"


def test_send_is_disabled_without_a_key_and_says_why() -> None:
    w = PreviewWidget(preview_of(api_key=None))
    assert w.state == "blocked" and w.send_button.disabled
    assert "no API key" in w.send_status.value and "no API key" in w.send_button.tooltip
    assert "Send is disabled: no API key" in repr(w)
    w.send_button.click()
    w._on_send()
    assert w.result is None and w.state == "blocked"


def test_send_is_disabled_when_no_row_is_valid() -> None:
    df = pd.DataFrame({"uid": ["null"], "plan": ["pro"], "bio": ["b"]})
    w = PreviewWidget(preview_of(df))
    assert w.send_button.disabled and "no valid rows" in w.send_status.value


def test_a_rejected_key_stops_the_send_and_shows_why_without_the_key() -> None:
    with Sandbox(api_key="the-right-key-0123456789") as sb:
        w = PreviewWidget(preview_of(server_url=sb.url))
        w.send_button.click()
    assert w.state == "failed" and w.send_button.disabled
    assert "rejected the API key" in w.send_status.value
    assert w.result is not None and set(w.result.status) >= {"failed"}
    assert not any(SECRET in s for s in strings(w))


def test_an_unexpected_error_is_shown_in_the_widget(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from amp_pandas import _send

    def broken(plan, settings, *, progress_callback):
        raise RuntimeError("boom")

    monkeypatch.setattr(_send, "send_plan", broken)
    w = PreviewWidget(preview_of())
    with caplog.at_level("ERROR", logger="amp_pandas"):
        w.send_button.click()
    assert w.state == "failed" and "RuntimeError: boom" in w.send_status.value
    assert w.send_button.disabled
    assert "the send from the preview widget failed" in caplog.text


def test_values_are_shown_in_plain_form() -> None:
    df = pd.DataFrame({"uid": [100000.5, 100001.5], "plan": ["pro", "free"], "bio": ["a", "b"]})
    w = PreviewWidget(preview_of(df))
    everything = "\n".join(strings(w))
    assert "np.float64" not in everything
    assert "0 (100000.5), 1 (100001.5)" in w.problems_view.value
    w.row_picker.value = 1
    assert "got float 100001.5" in w.payload_view.value


def test_no_key_anywhere_in_the_widget_state() -> None:
    w = PreviewWidget(preview_of())
    everything = strings(w)
    assert not any(SECRET in s for s in everything)
    assert any("•••• cdef" in s for s in everything)


def test_text_repr_is_the_preview_text() -> None:
    preview = preview_of()
    w = PreviewWidget(preview)
    assert repr(w) == repr(preview)
    bundle = w._repr_mimebundle_()
    assert bundle["text/plain"] == repr(preview)
    assert bundle[_display.WIDGET_MIME]["model_id"] == w.model_id
    assert "Amplitude identify preview" in bundle["text/html"]
    assert _display.INSTALL_HINT not in bundle["text/html"]


def test_displaying_a_preview_in_a_kernel_shows_its_widget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_display, "in_kernel", lambda: True)
    preview = preview_of()
    bundle = preview._repr_mimebundle_()
    w = widget_for(preview)
    assert bundle[_display.WIDGET_MIME]["model_id"] == w.model_id
    assert bundle["text/plain"] == repr(preview)
    # displayed again: the same widget (two views of one model; one Send)
    assert preview._repr_mimebundle_()[_display.WIDGET_MIME]["model_id"] == w.model_id
    w.close()
    assert widget_for(preview) is not w
    # a frontend that asks for text only gets text
    assert set(preview._repr_mimebundle_(include={"text/plain"})) == {"text/plain", "text/html"}


def test_outside_a_kernel_the_preview_is_text_and_html() -> None:
    bundle = preview_of()._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    assert _display.INSTALL_HINT not in bundle["text/plain"]
