"""The interactive preview: an ipywidgets view of a dry run, with a Send button.

This module imports ipywidgets at the top, so it is itself imported only when a preview is
displayed in a Jupyter kernel (by ``IdentifyPreview._repr_mimebundle_``, once
:func:`amp_pandas._display.widget_wanted` says so); ``import amp_pandas`` never imports it. Every
text and HTML piece comes from :mod:`amp_pandas._display`; this module only lays them out and
wires the buttons. Its layout::

    PreviewWidget (VBox, class amp-pandas-widget)
    ├── header                 HTML        counts, requests, bytes, endpoint, masked key
    ├── tabs                   Tab
    │   ├── "Operations"       HTML        one line per property (preview.operations)
    │   ├── "Payloads"         VBox
    │   │   ├── HBox           ◀ button, row position (BoundedIntText), ▶ button, caption
    │   │   └── payload_view   HTML        the row's identification as pretty JSON
    │   ├── "Problems (n)"     VBox
    │   │   ├── HBox           severity and column filters (Dropdowns)
    │   │   └── problems_view  HTML        problems grouped by kind, counts, example rows
    │   └── "Removed (n)"      HTML        sync runs only: removed users, their revert payloads
    └── send box               VBox
        ├── HBox               Send button, status (why it is disabled / what happened)
        ├── HBox               IntProgress and its label (hidden until a send starts)
        └── result_view        HTML        counts per status, the rows that did not succeed

Send calls the preview's own :meth:`~amp_pandas.IdentifyPreview.send` (its plan and settings, no
rebuild), reporting progress to the bar through its ``progress_callback`` (tqdm stays off). A
preview is sent once: Send is disabled, with the reason, for a preview already sent, and a press
after ``preview.send()`` ran in code shows the refusal
(:class:`~amp_pandas.errors.AlreadySentError`) and that send's result. One preview displayed twice
shows the same widget (two views of one model). No value or description in the widget tree ever
holds the API key: only ``preview.key_status`` (masked).

Stable hooks for browser tests: the widget has the class ``amp-pandas-widget``, its header
``amp-widget-header`` (for a sync run it holds ``div.amp-sync`` with one
``span.amp-sync-count[data-status=...]`` per plan status and ``div.amp-sync-send``: what a Send
will do), the Removed tab's view ``amp-removed-tab`` (holding ``div.amp-removed[data-count]``,
one ``tr.amp-removed-row[data-user]`` per user and its ``pre.amp-revert-payload``), the Send
button ``amp-send-button`` and the result view ``amp-result-view``.
"""

from __future__ import annotations

import html
import logging
import time
import warnings
import weakref
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import pandas as pd

from . import _display
from ._plan import VALID
from ._progress import SendProgress
from .errors import (
    AlreadySentError,
    AmpPandasError,
    AmpPandasWarning,
    RowsNotSucceededWarning,
    SendError,
)

if TYPE_CHECKING:  # pragma: no cover
    from ._preview import IdentifyPreview

__all__ = ["PreviewWidget", "widget_for"]

log = logging.getLogger("amp_pandas")

READY, BLOCKED, SENDING, SENT, FAILED = "ready", "blocked", "sending", "sent", "failed"
#: Seconds between two progress updates sent to the frontend (the last one always goes).
PROGRESS_INTERVAL = 0.1

_widgets: weakref.WeakKeyDictionary[IdentifyPreview, PreviewWidget] = (
    weakref.WeakKeyDictionary()
)


def widget_for(preview: IdentifyPreview) -> PreviewWidget:
    """The preview's widget: made on first display, the same one afterwards (until closed)."""
    widget = _widgets.get(preview)
    if widget is None or widget.comm is None:  # never shown, or closed
        widget = _widgets[preview] = PreviewWidget(preview)
    return widget


def _html(value: str = "", **layout: Any) -> widgets.HTML:
    return widgets.HTML(value=value, layout=widgets.Layout(**layout))


class PreviewWidget(widgets.VBox):
    """The interactive view of an :class:`~amp_pandas.IdentifyPreview`.

    Parameters
    ----------
    preview : IdentifyPreview
        The dry run to show and, on Send, to send (with ``preview.send``).

    Attributes
    ----------
    state : str
        ``"ready"``, ``"blocked"`` (Send disabled, see :attr:`blocker`), ``"sending"``,
        ``"sent"`` or ``"failed"`` (the send raised; see the status line).
    result : pandas.DataFrame or None
        The result of the send, once sent (also the partial result of a send that stopped).
    """

    def __init__(self, preview: IdentifyPreview) -> None:
        self._preview = preview
        self.result: pd.DataFrame | None = None
        self.error: str | None = None
        self.blocker = _display.send_blocker(preview)
        self.state = BLOCKED if self.blocker else READY
        self._last_progress = 0.0
        self._started = 0.0
        summary = preview.summary
        sync = preview.sync
        self._to_send = int(summary["valid"]) if sync is None else sync.send_rows

        self.header = _html(_display.header_html(preview))
        self.header.add_class("amp-widget-header")

        # -- Operations
        self.operations_view = _html(_display.operations_html(preview), overflow="auto")

        # -- Payloads: a row picker and the row's identification
        plan = preview.plan
        n = len(plan)
        valid = (plan.state == VALID).nonzero()[0]
        first = int(valid[0]) if len(valid) else 0
        self.row_picker = widgets.BoundedIntText(
            value=first, min=0, max=max(n - 1, 0), description="Row position",
            disabled=n == 0, style={"description_width": "initial"},
            layout=widgets.Layout(width="13em"),
        )
        self.prev_button = widgets.Button(
            icon="chevron-left", tooltip="previous row", disabled=n == 0,
            layout=widgets.Layout(width="2.6em"),
        )
        self.next_button = widgets.Button(
            icon="chevron-right", tooltip="next row", disabled=n == 0,
            layout=widgets.Layout(width="2.6em"),
        )
        self.row_caption = _html()
        self.payload_view = _html(overflow="auto", max_height="28em")
        self.prev_button.on_click(lambda _b: self._step(-1))
        self.next_button.on_click(lambda _b: self._step(+1))
        self.row_picker.observe(self._show_payload, names="value")
        self._show_payload()
        payloads_tab = widgets.VBox(
            [
                widgets.HBox(
                    [self.prev_button, self.row_picker, self.next_button, self.row_caption],
                    layout=widgets.Layout(align_items="center"),
                ),
                self.payload_view,
            ]
        )

        # -- Problems: grouped, filterable by severity and column
        self._groups = _display.preview_problem_groups(preview)
        columns = list(pd.unique(self._groups["column"])) if len(self._groups) else []
        self._columns = columns
        self.severity_filter = widgets.Dropdown(
            options=[("all severities", ""), ("errors", "error"), ("warnings", "warning")],
            value="", description="Severity", layout=widgets.Layout(width="16em"),
        )
        self.column_filter = widgets.Dropdown(
            options=[("all columns", -1)] + [(str(c), i) for i, c in enumerate(columns)],
            value=-1, description="Column", layout=widgets.Layout(width="20em"),
        )
        self.problems_view = _html(overflow="auto", max_height="28em")
        self.severity_filter.observe(self._show_problems, names="value")
        self.column_filter.observe(self._show_problems, names="value")
        self._show_problems()
        problems_tab = widgets.VBox(
            [widgets.HBox([self.severity_filter, self.column_filter]), self.problems_view]
        )

        n_problems = int(self._groups["count"].sum()) if len(self._groups) else 0
        children: list[widgets.Widget] = [self.operations_view, payloads_tab, problems_tab]
        titles = ["Operations", "Payloads",
                  f"Problems ({n_problems:,})" if n_problems else "Problems"]  # fmt: skip
        # -- Removed (sync runs): the removed users and their revert payloads
        self.removed_view: widgets.HTML | None = None
        if sync is not None:
            self.removed_view = _html(_display.removed_html(preview), overflow="auto",
                                      max_height="28em")  # fmt: skip
            self.removed_view.add_class("amp-removed-tab")
            children.append(self.removed_view)
            n_removed = sync.counts["removed"]
            titles.append(f"Removed ({n_removed:,})" if n_removed else "Removed")
        self.tabs = widgets.Tab(children=children, titles=tuple(titles))

        # -- Send
        host = _host(preview.endpoint)
        self.send_button = widgets.Button(
            description=f"Send {self._to_send:,} row{'s' if self._to_send != 1 else ''}",
            tooltip=f"POST to {host}" if not self.blocker else f"Send is disabled: {self.blocker}",
            icon="paper-plane",
            button_style="" if self.blocker else "primary",
            disabled=self.blocker is not None,
            layout=widgets.Layout(width="auto", min_width="10em"),
        )
        self.send_button.add_class("amp-send-button")
        self.send_status = _html(
            f"<i>Send is disabled: {html.escape(self.blocker)}.</i>" if self.blocker
            else f"{html.escape(sync.send_text())} To {html.escape(host)} "
                 f"(key {html.escape(preview.key_status)})." if sync is not None
            else f"Sends the {self._to_send:,} valid rows to {html.escape(host)} "
                 f"(key {html.escape(preview.key_status)}), as previewed."
        )
        self.progress = widgets.IntProgress(
            value=0, min=0, max=max(self._to_send, 1), description="Sent",
            layout=widgets.Layout(width="24em"),
        )
        self.progress_label = widgets.Label()
        self.progress_box = widgets.HBox(
            [self.progress, self.progress_label], layout=widgets.Layout(display="none")
        )
        self.result_view = _html(overflow="auto")
        self.result_view.add_class("amp-result-view")
        self.send_button.on_click(self._on_send)
        send_box = widgets.VBox(
            [
                widgets.HBox([self.send_button, self.send_status],
                             layout=widgets.Layout(align_items="center")),
                self.progress_box,
                self.result_view,
            ]
        )
        super().__init__(children=[self.header, self.tabs, send_box])
        self.add_class("amp-pandas-widget")

    # ------------------------------------------------------------------ views
    @property
    def preview(self) -> IdentifyPreview:
        return self._preview

    def _step(self, delta: int) -> None:
        picker = self.row_picker
        picker.value = min(max(picker.value + delta, picker.min), picker.max)

    def _show_payload(self, _change: Any = None) -> None:
        if not len(self._preview.plan):
            self.row_caption.value = "<i>no rows</i>"
            self.payload_view.value = ""
            return
        position = int(self.row_picker.value)
        self.row_caption.value = html.escape(_display.row_caption(self._preview, position))
        self.payload_view.value = (
            '<div class="amp-pandas"><pre>'
            + html.escape(_display.payload_text(self._preview, position))
            + "</pre></div>"
        )

    def filtered_problems(self) -> pd.DataFrame:
        """The problem groups the filters let through."""
        groups = self._groups
        if not len(groups):
            return groups
        keep = pd.Series(True, index=groups.index)
        if self.severity_filter.value:
            keep &= groups["severity"] == self.severity_filter.value
        if self.column_filter.value >= 0:
            column = self._columns[self.column_filter.value]
            keep &= groups["column"].map(lambda c: c == column or (c is column))
        return groups.loc[keep.to_numpy(dtype=bool)]

    def _show_problems(self, _change: Any = None) -> None:
        self.problems_view.value = _display.problems_html(
            self.filtered_problems(), total=len(self._groups)
        )

    # ------------------------------------------------------------------ send
    def _on_send(self, _button: Any = None) -> None:
        """The Send button's click handler; does nothing unless the widget is ready."""
        if self.state != READY:
            return
        self.state = SENDING
        button = self.send_button
        button.disabled = True
        button.button_style = ""
        button.description = "Sending…"
        button.icon = "hourglass-half"
        self.send_status.value = f"Sending to {html.escape(_host(self._preview.endpoint))}…"
        self.progress.value = 0
        self.progress.bar_style = "info"
        self.progress_label.value = ""
        self.progress_box.layout.display = "flex"
        self._started = time.monotonic()
        caught: list[warnings.WarningMessage] = []
        result: pd.DataFrame | None = None
        error: str | None = None
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", AmpPandasWarning)
                result = self._preview.send(progress=False, progress_callback=self._on_progress)
        except AlreadySentError as exc:  # sent from code since this widget was shown
            self._finish(exc.result, str(exc), [])
            self.send_button.description = "Not sent: already sent"
            return
        except SendError as exc:  # e.g. the key was rejected: a partial result
            result, error = exc.result, str(exc)
        except AmpPandasError as exc:
            error = str(exc)
        except Exception as exc:  # a bug: say so in the widget rather than in the log only
            log.exception("amp_pandas: the send from the preview widget failed")
            error = f"{type(exc).__name__}: {exc}"
        notes = []
        for w in caught:
            if issubclass(w.category, RowsNotSucceededWarning):
                continue  # the result summary says the same, in place
            if issubclass(w.category, AmpPandasWarning):
                notes.append(str(w.message))
            else:  # not ours: pass it on
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self._finish(result, error, notes)

    def _on_progress(self, done: dict[str, int], waiting: str | None) -> None:
        now = time.monotonic()
        if done.get("pending", 0) and now - self._last_progress < PROGRESS_INTERVAL:
            return
        self._last_progress = now
        self.progress.value = min(self._to_send - int(done.get("pending", 0)), self.progress.max)
        self.progress_label.value = SendProgress.postfix(done, waiting)

    def _finish(self, result: pd.DataFrame | None, error: str | None, notes: list[str]) -> None:
        self.result = result
        self.error = error
        elapsed = time.monotonic() - self._started
        button = self.send_button
        button.disabled = True  # never twice: a new send needs a new preview
        if error is None and result is not None:
            self.state = SENT
            ok = int((result["status"] == "success").sum())
            removed = getattr(result, "removed", None)
            if self.removed_view is not None and removed is not None:
                self.removed_view.value = _display.removed_result_html(removed)
            button.description = "Sent"
            button.icon = "check"
            button.button_style = "success" if ok == self._to_send else "warning"
            self.send_status.value = html.escape(
                f"Sent in {elapsed:.1f} s: {ok:,} of {self._to_send:,} rows succeeded."
            )
        else:
            self.state = FAILED
            button.description = "Send stopped"
            button.icon = "times"
            button.button_style = "danger"
            self.send_status.value = (
                f'<span style="color:#cf222e">{html.escape(error or "")}</span>'
            )
        if result is not None:
            counts = result["status"].value_counts()
            done = {s: int(counts.get(s, 0)) for s in counts.index}
            pending = int(counts.get("not_sent", 0))
            self.progress.value = min(self._to_send - pending, self.progress.max)
            self.progress_label.value = SendProgress.postfix(done, None)
        self.progress.bar_style = (
            "danger" if self.state == FAILED else button.button_style
        )
        parts = []
        if result is not None:
            parts.append(_display.result_summary_html(result))
        parts += [f'<div class="amp-muted">{html.escape(n)}</div>' for n in notes]
        self.result_view.value = _display.STYLE + "".join(parts)

    # ------------------------------------------------------------------ text
    def __repr__(self) -> str:
        text = _display.preview_text(self._preview)
        if self.state == BLOCKED:
            return f"{text}\nSend is disabled: {self.blocker}."
        if self.state in (SENT, FAILED) and self.result is not None:
            return f"{text}\nSent: {_display.counts_text(self.result)}."
        if self.state == FAILED:
            return f"{text}\nThe send stopped: {self.error}"
        return text

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)  # whole: Widget's own cuts it at 110 characters
        bundle["text/html"] = _display.preview_html(self._preview, hint=False)
        return bundle


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).netloc or url
    except ValueError:  # pragma: no cover
        return url
