"""Rendering: the text and HTML views of a preview and of a result, and the widget's pieces.

The one place that turns data into something to read. The preview
(:mod:`amp_pandas._preview`) and the result (:mod:`amp_pandas._result`) hold data and call this
module for their ``repr`` and HTML; the widget (:mod:`amp_pandas._widget`) builds its parts from
it. This module imports neither the preview nor the widget (the preview's type is named for type
checkers only), so the imports flow one way::

    _preview ──► _widget ──► _display ──► _plan, _status
        └────────────────────────┘
    _result ──► _display

A preview chooses its view in a Jupyter kernel: the widget when ipywidgets can be imported
(:func:`widget_wanted`), else :func:`static_mimebundle` with a one-line install hint.

Problems are shown grouped by *kind*: the message without the values that differ from row to row
(:func:`problem_kind`), with a count and a few example rows and their values, so that half a
million distinct messages read as a handful of lines. Values are shown in plain form
(``100000.5``, never ``np.float64(100000.5)``).

Nothing here ever holds the API key: the key appears only as ``preview.key_status`` (masked).
"""

from __future__ import annotations

import html
import importlib.util
import json
import re
import sys
import weakref
from collections.abc import Callable, Container, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._plan import STATE_NAMES, VALID
from ._status import RESULT_API, STATUSES, summarize

if TYPE_CHECKING:  # pragma: no cover
    from ._preview import IdentifyPreview

__all__ = [
    "INSTALL_HINT",
    "STYLE",
    "WIDGET_MIME",
    "counts_text",
    "header_html",
    "in_kernel",
    "operations_html",
    "payload_text",
    "plain",
    "preview_html",
    "preview_problem_groups",
    "preview_text",
    "problem_groups",
    "problem_kind",
    "problems_html",
    "reason_groups",
    "removed_html",
    "removed_result_html",
    "removed_text",
    "result_html",
    "result_summary_html",
    "result_text",
    "row_caption",
    "send_blocker",
    "static_mimebundle",
    "status_badges",
    "sync_header_html",
    "sync_lines",
    "widget_wanted",
    "widgets_installed",
]

INSTALL_HINT = (
    'For the interactive preview with a Send button: pip install "amp_pandas[notebook]"'
)
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: Example rows shown per problem kind or reason.
EXAMPLES = 3
#: Problem kinds listed in the text view (the HTML and the widget list up to ``HTML_GROUPS``).
TEXT_GROUPS = 20
HTML_GROUPS = 100
_MAX_REASON_GROUPS = 10
_MAX_REASON_CHARS = 160

#: Shared by every HTML view (the static table and the widget's parts); scoped by class.
STYLE = """<style>
.amp-pandas {line-height: 1.45;}
.amp-pandas table {border-collapse: collapse; font-size: 12px; margin: 2px 0 6px 0;}
.amp-pandas th, .amp-pandas td {padding: 2px 10px 2px 0; text-align: left;
  vertical-align: top; border-bottom: 1px solid var(--jp-border-color2, #e0e0e0);}
.amp-pandas th {font-weight: 600;}
.amp-pandas pre {margin: 0; font-size: 12px; line-height: 1.35;}
.amp-pandas .amp-muted {color: var(--jp-ui-font-color2, #616161);}
</style>"""

_HEADER_COLORS = {"invalid": "#cf222e", "skipped": "#6e7781", "warnings": "#9a6700"}
STATUS_COLORS = {
    "success": "#1a7f37",
    "invalid": "#bc4c00",
    "skipped": "#6e7781",
    "failed": "#cf222e",
    "throttled": "#8250df",
    "unknown": "#9a6700",
    "not_sent": "#57606a",
    "unchanged": "#0969da",
}


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


# ---------------------------------------------------------------------- environment
def widgets_installed() -> bool:
    """Whether ``import ipywidgets`` can work (without importing it)."""
    try:
        return importlib.util.find_spec("ipywidgets") is not None
    except (ImportError, ValueError):  # a broken or half-imported package
        return False


def in_kernel() -> bool:
    """Whether we run inside a Jupyter kernel (a frontend may render widgets)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001  # pragma: no cover - a broken IPython
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def widget_wanted(
    include: Container[str] | None = None, exclude: Container[str] | None = None
) -> bool:
    """Whether a preview should show its widget: in a kernel, asked for, ipywidgets importable.

    ipywidgets is imported here (late: only when a preview is shown in a kernel).
    """
    if not in_kernel():
        return False
    if include is not None and WIDGET_MIME not in include:
        return False
    if exclude is not None and WIDGET_MIME in exclude:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------- plain values
_NUMPY_REPR = re.compile(
    r"\b(?:np|numpy)\.[A-Za-z]\w*\("
    r"""((?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|[^()'"]|\([^()]*\))*)"""
    r"\)"
)
_NUMPY_BOOL = re.compile(r"\b(?:np|numpy)\.(True|False)_")


def plain(text: Any) -> str:
    """``text`` with numpy scalars' reprs in plain form: ``np.float64(1.5)`` becomes ``1.5``.

    Examples
    --------
    >>> plain("an id must be a whole number, got float np.float64(100000.5)")
    'an id must be a whole number, got float 100000.5'
    >>> plain("got np.str_('a') and np.True_")
    "got 'a' and True"
    """
    text = "" if text is None else str(text)
    if "np." not in text and "numpy." not in text:
        return text
    return _NUMPY_BOOL.sub(r"\1", _NUMPY_REPR.sub(r"\1", text))


def _label(value: Any) -> str:
    """A row label in plain form: ``17``, ``'u-3'`` (never ``np.int64(17)``)."""
    if isinstance(value, np.generic):
        value = value.item()
    return plain(repr(value))


# ---------------------------------------------------------------------- problem kinds
#: The values a message may carry (group 2), after a character that is not part of a word
#: (group 1): quoted reprs (also cut short with ``...``), numbers, and the special values. An
#: apostrophe inside a word is not a quote. Written for both Python's ``re`` (ASCII) and RE2
#: (pyarrow), which has no look-behind.
_VALUE_PATTERN = (
    r"""(^|[^\w'"$.+-])("""
    r"""'(?:[^'\\\n]|\\.)*'"""
    r"""|"(?:[^"\\\n]|\\.)*\""""
    r"""|['"][^'"\n]*?\.\.\."""
    r"""|[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b"""
    r"""|[-+]?(?:nan|NaN|inf|Infinity)\b|(?:None|True|False|NaT)\b"""
    r""")"""
)
_VALUE = re.compile(_VALUE_PATTERN, re.ASCII)
_SLOT = "…"


def _split(message: str) -> tuple[str, list[str]]:
    """``(skeleton, values)``: the message with each value replaced by ``…``, and the values."""
    values: list[str] = []
    parts: list[str] = []
    last = 0
    for m in _VALUE.finditer(message):
        parts.append(message[last : m.start(2)])
        values.append(m.group(2))
        last = m.end()
    if not values:
        return message, values
    parts.append(message[last:])
    return _SLOT.join(parts), values


def _plain_and_skeletons(messages: np.ndarray) -> tuple[Any, np.ndarray]:
    """Per message: its :func:`plain` text (a sequence, read item by item) and a code per
    distinct skeleton (values replaced by ``…``), vectorized with pyarrow's regular expressions
    when pyarrow is there."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:  # pragma: no cover - pyarrow comes with the supported pandas setups
        texts = [plain(m) for m in messages]
        codes, _ = pd.factorize(pd.Series([_split(t)[0] for t in texts], dtype=object))
        return texts, codes
    arr = pa.array(messages, type=pa.large_string(), from_pandas=True)
    has_np = pc.match_substring_regex(arr, r"\b(?:np|numpy)\.")
    if pc.any(has_np).as_py():
        fixed = pc.replace_substring_regex(arr, _NUMPY_REPR.pattern, r"\1")
        fixed = pc.replace_substring_regex(fixed, _NUMPY_BOOL.pattern, r"\1")
        arr = pc.if_else(has_np, fixed, arr)
    skeleton = pc.replace_substring_regex(arr, _VALUE_PATTERN, r"\1" + _SLOT)
    codes = pc.dictionary_encode(skeleton).indices.to_numpy(zero_copy_only=False)
    return _ArrowTexts(arr), codes.astype(np.int64)


class _ArrowTexts:
    """Items of an Arrow string array as ``str``, made one by one when read."""

    def __init__(self, arr: Any) -> None:
        self._arr = arr

    def __getitem__(self, i: int) -> str:
        return str(self._arr[int(i)].as_py())


def _codes(values: Any) -> np.ndarray:
    """Codes of ``values`` (missing values get a code too)."""
    codes, _ = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=False)
    return np.asarray(codes, dtype=np.int64)


def problem_kind(message: str) -> str:
    """The kind of a problem: its message (in plain form) without the values in it.

    Examples
    --------
    >>> problem_kind("user_id 'n/a' is on Amplitude's list of rejected ids")
    "user_id … is on Amplitude's list of rejected ids"
    >>> problem_kind("an id must be a whole number, got float np.float64(100000.5)")
    'an id must be a whole number, got float …'
    """
    return _split(plain(message))[0]


def _kind_and_values(
    distinct: np.ndarray, parts: Callable[[int], tuple[str, list[str]]]
) -> tuple[str, list[bool] | None]:
    """The label of one group of distinct messages, and which value slots differ among them.

    ``parts(m)`` gives the skeleton and values of message ``m``. A slot whose value is the same
    in every message is part of the kind (``at most 5``); the others are the rows' values.
    ``None`` for the slots when the messages do not share one skeleton. Stops reading messages
    once every slot is known to vary.
    """
    skeleton, first = parts(distinct[0])
    varies = [False] * len(first)
    for m in distinct[1:]:
        other, values = parts(m)
        if other != skeleton:
            return skeleton, None
        for i, v in enumerate(values):
            if not varies[i] and v != first[i]:
                varies[i] = True
        if all(varies):
            break
    pieces = skeleton.split(_SLOT)
    label = pieces[0]
    for i, piece in enumerate(pieces[1:]):
        label += (_SLOT if varies[i] else first[i]) + piece
    return label, varies


def _group_messages(
    keys: list[np.ndarray],
    messages: np.ndarray,
    rows: Sequence[Any],
    *,
    examples: int = EXAMPLES,
) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """Group rows by ``keys`` and the kind of their message.

    Returns ``(first, kinds, counts, examples)`` per group: the position of the group's first
    row (to read its keys), its kind, how many rows and the example rows with their values.
    Regular expressions run once per distinct message, vectorized; each group reads only as
    many of its messages as it takes to tell its values from its kind.
    """
    codes, uniques = pd.factorize(
        pd.Series(messages, dtype=object).fillna(""), use_na_sentinel=False
    )
    codes = np.asarray(codes, dtype=np.int64)
    texts, skeleton_codes = _plain_and_skeletons(np.asarray(uniques, dtype=object))
    split: dict[int, tuple[str, list[str]]] = {}

    def parts(m: int) -> tuple[str, list[str]]:
        if m not in split:
            split[m] = _split(texts[m])
        return split[m]

    kind = skeleton_codes[codes]
    key = np.zeros(len(codes), dtype=np.int64)
    for part in [*(_codes(k) for k in keys), kind]:
        key = key * (int(part.max()) + 1) + part
        key, _ = pd.factorize(key, sort=False)  # keep the combined codes small
        key = np.asarray(key, dtype=np.int64)
    gid = key
    n_groups = int(gid.max()) + 1
    counts = np.bincount(gid, minlength=n_groups)
    order = np.argsort(gid, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    # the distinct messages of each group, in order of first appearance
    pair = gid * (int(codes.max()) + 1) + codes
    _, first_at = np.unique(pair, return_index=True)
    first_at.sort()
    pair_g = gid[first_at]
    by_group = np.argsort(pair_g, kind="stable")
    pair_m = codes[first_at][by_group]
    bounds = np.searchsorted(pair_g[by_group], np.arange(n_groups + 1))
    labels: list[str] = []
    shown: list[str] = []
    for g in range(n_groups):
        distinct = pair_m[bounds[g] : bounds[g + 1]]
        at = order[starts[g] : starts[g] + min(examples, int(counts[g]))]
        varies: list[bool] | None
        if len(distinct) == 1:
            label, varies = texts[distinct[0]], [False] * len(parts(distinct[0])[1])
        else:
            label, varies = _kind_and_values(distinct, parts)
        items = []
        for p in at:
            values = parts(codes[p])[1]
            if varies is None or len(varies) != len(values):  # messages of another shape
                picked = values
            else:
                picked = [v for v, x in zip(values, varies, strict=True) if x]
            text = _label(rows[p])
            items.append(f"{text} ({', '.join(picked)})" if picked else text)
        more = int(counts[g]) - len(at)
        shown.append(", ".join(items) + (f" … (+{more:,} more)" if more > 0 else ""))
        labels.append(label)
    return order[starts], labels, counts, shown


def problem_groups(problems: pd.DataFrame, *, examples: int = EXAMPLES) -> pd.DataFrame:
    """Problems grouped by severity, column and kind: a count, and example rows with values.

    The kind is the message without the values that differ between the group's rows (a
    ``kind`` column in ``problems``, when there is one, is used as it is). ``rows`` lists the
    first ``examples`` row labels, each with its values in parentheses. Errors first, then
    warnings; within a severity, the largest groups first.

    Examples
    --------
    >>> problems = pd.DataFrame({"row": [3, 7, 9], "column": ["uid", "uid", "plan"],
    ...     "severity": ["error", "error", "warning"],
    ...     "message": ["user_id 'n/a' is rejected", "user_id 'null' is rejected", "long"]})
    >>> problem_groups(problems).values.tolist()
    [['error', 'uid', 'user_id … is rejected', 2, "3 ('n/a'), 7 ('null')"], \
['warning', 'plan', 'long', 1, '9']]
    """
    columns = ["severity", "column", "problem", "count", "rows"]
    if problems.empty:
        return pd.DataFrame(columns=columns)
    severity = problems["severity"].to_numpy(dtype=object)
    column = problems["column"].to_numpy(dtype=object)
    first, kinds, counts, shown = _group_messages(
        [severity, column],
        problems["message"].to_numpy(dtype=object),
        problems["row"].to_numpy(),
        examples=examples,
    )
    grouped = pd.DataFrame(
        {
            "severity": severity[first],
            "column": column[first],
            "problem": kinds,
            "count": counts.astype(np.int64),
            "rows": shown,
        }
    )
    rank = grouped["severity"].map({"error": 0, "warning": 1}).fillna(2).to_numpy()
    keep = np.lexsort((-grouped["count"].to_numpy(), rank))
    return grouped.iloc[keep].reset_index(drop=True)


_preview_groups: weakref.WeakKeyDictionary[Any, pd.DataFrame] = weakref.WeakKeyDictionary()


def preview_problem_groups(preview: IdentifyPreview) -> pd.DataFrame:
    """:func:`problem_groups` of a preview's problems, worked out once per preview."""
    groups = _preview_groups.get(preview)
    if groups is None:
        groups = _preview_groups[preview] = problem_groups(preview.problems)
    return groups


# ---------------------------------------------------------------------- preview pieces
def header_line(preview: IdentifyPreview) -> str:
    s = preview.summary
    return (
        f"rows {s['rows']:,} · valid {s['valid']:,} · invalid {s['invalid']:,} · "
        f"skipped {s['skipped']:,} · warnings {s['warnings']:,}"
    )


def target_line(preview: IdentifyPreview) -> str:
    s = preview.summary
    return (
        f"{s['requests']:,} request{'s' if s['requests'] != 1 else ''} · "
        f"{_fmt_bytes(int(s['bytes']))} → {preview.endpoint} (key: {preview.key_status})"
    )


def header_html(preview: IdentifyPreview) -> str:
    """The widget's header: counts (colored when not zero), requests, bytes, endpoint, key."""
    esc = html.escape
    s = preview.summary
    counts = []
    for name in ("rows", "valid", "invalid", "skipped", "warnings"):
        n = int(s[name])
        color = _HEADER_COLORS.get(name) if n else None
        style = f' style="color:{color};font-weight:600"' if color else ""
        counts.append(f'<span class="amp-count amp-{name}"{style}>{name} <b>{n:,}</b></span>')
    return (
        f'{STYLE}<div class="amp-pandas amp-header">'
        f"<b>{html.escape(preview.title)}</b> "
        '<span class="amp-muted">— dry run, nothing sent</span><br>'
        + " · ".join(counts)
        + "<br>"
        f"{esc(target_line(preview))}"
        f"{sync_header_html(preview)}"
        "</div>"
    )


# ---------------------------------------------------------------------- sync
#: How many removed users the text and HTML views list (the widget's Removed tab lists as many).
REMOVED_SHOWN = 50


def sync_lines(preview: IdentifyPreview) -> list[str]:
    """The sync plan in words (empty without ``sync=``): the job, its last run and users, the
    counts per plan status, and what a Send will do."""
    sync = preview.sync
    if sync is None:
        return []
    last = "never" if sync.last_run is None else sync.last_run.strftime("%Y-%m-%d %H:%M UTC")
    c = sync.counts
    units = f"{sync.unit}s"
    lines = [
        f"sync job {sync.job!r} · last run {last} · holds {sync.held_users:,} {units} "
        f"· ledger {sync.ledger}",
        f"{units}: unchanged {c['unchanged']:,} · changed {c['changed']:,} · new {c['new']:,} · "
        f"removed {c['removed']:,} ({sync.removed_mode}) · ambiguous {c['ambiguous']:,} "
        f"· held {c['held']:,}",
        sync.send_text(),
    ]
    if sync.note:
        lines.append(f"note: {sync.note}")
    return lines


def sync_header_html(preview: IdentifyPreview) -> str:
    """The widget header's sync part (empty without ``sync=``). Stable hooks: the block is
    ``div.amp-sync`` (``data-job`` the job's name); each count is
    ``span.amp-sync-count[data-status=<status>]`` holding the number in ``<b>``; what a Send
    will do is ``div.amp-sync-send``."""
    sync = preview.sync
    if sync is None:
        return ""
    esc = html.escape
    first, _, action = sync_lines(preview)[:3]
    counts = " · ".join(
        f'<span class="amp-sync-count" data-status="{name}">{name} <b>{sync.counts[name]:,}</b>'
        "</span>"
        for name in ("unchanged", "changed", "new", "removed", "ambiguous", "held")
    )
    note = f'<div class="amp-muted">{esc(sync.note)}</div>' if sync.note else ""
    return (
        f'<div class="amp-sync" data-job="{esc(sync.job)}">{esc(first)}<br>{counts}'
        f'<div class="amp-sync-send"><b>{esc(action)}</b></div>{note}</div>'
    )


def _removed_frame(preview: IdentifyPreview) -> pd.DataFrame:
    sync = preview.sync
    if sync is None:
        return pd.DataFrame()
    return sync.reverts


def _removed_id(row: Any) -> str:
    """A removed member in words: its user id, ``device D``, or ``TYPE VALUE`` for a group."""
    if hasattr(row, "group_type"):
        return f"{row.group_type} {row.group_value}"
    return str(row.user_id) if row.user_id is not None else f"device {row.device_id}"


def _removed_noun(frame: pd.DataFrame) -> str:
    """``users``, or ``groups`` for the removed groups of a ``group_identify`` job."""
    return "groups" if "group_type" in frame.columns else "users"


def removed_text(preview: IdentifyPreview, *, limit: int = REMOVED_SHOWN) -> list[str]:
    """The removed users and the revert each would get, as lines (empty when none)."""
    frame = _removed_frame(preview)
    if not len(frame):
        return []
    mode = preview.sync.removed_mode  # type: ignore[union-attr]
    lines = [f"Removed {_removed_noun(frame)} ({len(frame):,}; removed={mode!r}):"]
    for r in frame.head(limit).itertuples(index=False):
        what = ("kept as it is" if r.identification is None and preview.sync.removed_mode == "keep"  # type: ignore[union-attr]
                else "nothing to undo" if r.identification is None
                else json.dumps(r.identification, ensure_ascii=False))  # fmt: skip
        left = f" (not undone: {', '.join(r.not_undone)})" if r.not_undone else ""
        lines.append(f"  {_removed_id(r)}: {what}{left}")
    if len(frame) > limit:
        lines.append(f"  … {len(frame) - limit:,} more: see preview.sync.reverts")
    return lines


def removed_html(preview: IdentifyPreview, *, limit: int = REMOVED_SHOWN) -> str:
    """The Removed tab: one row per removed user with its revert payload. Stable hooks: the
    block is ``div.amp-removed`` (``data-count`` the number of removed users, ``data-mode``
    ``keep`` or ``revert``); each user is ``tr.amp-removed-row`` (``data-user`` its id) whose
    ``pre.amp-revert-payload`` holds the revert identification as JSON."""
    esc = html.escape
    frame = _removed_frame(preview)
    mode = preview.sync.removed_mode if preview.sync is not None else ""
    head = f'<div class="amp-pandas amp-removed" data-count="{len(frame)}" data-mode="{mode}">'
    if not len(frame):
        return head + f"<i>No removed {_removed_noun(frame)}.</i></div>"
    rows = []
    for r in frame.head(limit).itertuples(index=False):
        payload = ("kept as it is (removed=\"keep\")" if r.identification is None and mode == "keep"
                   else "nothing to undo" if r.identification is None
                   else json.dumps(r.identification, indent=1, ensure_ascii=False))  # fmt: skip
        rows.append(
            f'<tr class="amp-removed-row" data-user="{esc(_removed_id(r))}">'
            f"<td>{esc(_removed_id(r))}</td>"
            f'<td><pre class="amp-revert-payload">{esc(payload)}</pre></td>'
            f"<td>{esc(', '.join(r.not_undone))}</td></tr>"
        )
    more = (f'<p class="amp-muted">… {len(frame) - limit:,} more: see preview.sync.reverts</p>'
            if len(frame) > limit else "")  # fmt: skip
    return (
        head + f"<table><thead><tr><th>{_removed_noun(frame)[:-1]}</th>"
        "<th>revert identification</th>"
        "<th>not undone</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        + more + "</div>"
    )


def removed_result_html(removed: pd.DataFrame, *, limit: int = REMOVED_SHOWN) -> str:
    """The Removed tab after a send: ``result.removed``, with each user's status. Same hooks
    as :func:`removed_html`, each ``tr.amp-removed-row`` also carrying ``data-status``."""
    esc = html.escape
    head = f'<div class="amp-pandas amp-removed" data-count="{len(removed)}" data-sent="1">'
    if not len(removed):
        return head + f"<i>No removed {_removed_noun(removed)}.</i></div>"
    rows = []
    for r in removed.head(limit).itertuples(index=False):
        payload = ("—" if r.identification is None
                   else json.dumps(r.identification, indent=1, ensure_ascii=False))  # fmt: skip
        color = STATUS_COLORS.get(r.status, "#57606a")
        rows.append(
            f'<tr class="amp-removed-row" data-user="{esc(_removed_id(r))}" '
            f'data-status="{esc(r.status)}"><td>{esc(_removed_id(r))}</td>'
            f'<td><span style="color:{color};font-weight:600">{esc(r.status)}</span></td>'
            f'<td><pre class="amp-revert-payload">{esc(payload)}</pre></td>'
            f"<td>{esc(r.error or '')}</td><td>{esc(', '.join(r.not_undone))}</td></tr>"
        )
    return (
        head + f"<table><thead><tr><th>{_removed_noun(removed)[:-1]}</th><th>status</th>"
        "<th>revert identification</th>"
        "<th>reason</th><th>not undone</th></tr></thead><tbody>" + "".join(rows)
        + "</tbody></table></div>"
    )


def operations_html(preview: IdentifyPreview) -> str:
    ops = preview.operations
    if ops.empty:
        return '<div class="amp-pandas"><i>No operations.</i></div>'
    return '<div class="amp-pandas">' + ops.to_html(index=False, escape=True, border=0) + "</div>"


def _groups_note(groups: pd.DataFrame, limit: int) -> str:
    rows = int(groups["count"].sum())
    note = (
        f"{len(groups):,} kind{'s' if len(groups) != 1 else ''} of problem, "
        f"{rows:,} problem{'s' if rows != 1 else ''}"
    )
    if len(groups) > limit:
        note += f" (first {limit} shown)"
    return note


def problems_html(groups: pd.DataFrame, *, total: int, limit: int = HTML_GROUPS) -> str:
    """The Problems table (already filtered); ``total`` is the number of groups before filtering."""
    if total == 0:
        return '<div class="amp-pandas"><i>No problems: every row passed the checks.</i></div>'
    if groups.empty:
        return '<div class="amp-pandas"><i>No problems match these filters.</i></div>'
    return (
        f'<div class="amp-pandas"><span class="amp-muted">'
        f"{html.escape(_groups_note(groups, limit))}</span>"
        + groups.head(limit).to_html(index=False, escape=True, border=0)
        + "</div>"
    )


def payload_text(preview: IdentifyPreview, position: int) -> str:
    """The identification of the row at ``position`` as pretty JSON, or why it is not sent."""
    plan = preview.plan
    if plan.state[position] == VALID:
        return json.dumps(preview.payload_at(position), indent=2, ensure_ascii=False)
    state = STATE_NAMES.get(int(plan.state[position]), "not sent")
    lines = [f"Not sent: this row is {state}."]
    probs = plan.problems
    mine = probs.loc[probs["position"] == position]
    for r in mine.itertuples(index=False):
        lines.append(f"  {r.severity}: {r.column}: {plain(r.message)}")
    if mine.empty and plan.reason[position] is not None:
        lines.append(f"  {plain(plan.reason[position])}")
    return "\n".join(lines)


def row_caption(preview: IdentifyPreview, position: int) -> str:
    """``"position 3 of 300 · index label 'u-3' · valid"`` for the row picker."""
    plan = preview.plan
    state = STATE_NAMES.get(int(plan.state[position]), "?")
    return (
        f"position {position:,} of {len(plan):,} · index label {_label(plan.index[position])} · "
        f"{state}"
    )


def send_blocker(preview: IdentifyPreview) -> str | None:
    """Why the widget's Send button is disabled, or ``None`` when sending can start."""
    if preview.sent:
        return (
            "this preview was sent already (its result is in preview.result); build a new "
            "preview to send again"
        )
    if preview.settings.api_key is None:
        return (
            "no API key set: pass api_key=... (or set AMPLITUDE_API_KEY) and build the "
            "preview again"
        )
    if not preview.endpoint:  # pragma: no cover - resolve_settings always sets one
        return "no server set: pass server_url=... or region=..."
    sync = preview.sync
    if sync is not None:
        reverts = int(sync.reverts["identification"].notna().sum())
        if not sync.send_rows and not reverts and not sync.counts["removed"]:
            return f"nothing to send: every {sync.unit} is unchanged or held"
        return None
    if not int(preview.summary["valid"]):
        return "no valid rows to send"
    return None


# ---------------------------------------------------------------------- whole preview
def _first_payload(preview: IdentifyPreview) -> dict[str, Any] | None:
    payloads = preview.payloads
    return payloads[0] if len(payloads) else None


def preview_text(preview: IdentifyPreview) -> str:
    """The text view: counts, target, operations, problems by kind, the first identification."""
    lines = [
        f"{preview.title} — dry run, nothing sent",
        "  " + header_line(preview),
        "  " + target_line(preview),
        *("  " + line for line in sync_lines(preview)),
        "",
        "Operations:",
    ]
    ops = preview.operations
    if ops.empty:
        lines.append("  (none)")
    for r in ops.itertuples(index=False):
        lines.append(
            f"  {r.operation:<12} {r.property:<20} ← {r.source} "
            f"({r.non_null:,} non-null) e.g. {r.examples}"
        )
    groups = preview_problem_groups(preview)
    if not groups.empty:
        lines += ["", f"Problems: {_groups_note(groups, TEXT_GROUPS)}"]
        for r in groups.head(TEXT_GROUPS).itertuples(index=False):
            lines.append(
                f"  {r.severity:<7} {r.column}: {r.problem} — {r.count:,} "
                f"row{'s' if r.count != 1 else ''}: {r.rows}"
            )
        if len(groups) > TEXT_GROUPS:
            lines.append(f"  … {len(groups) - TEXT_GROUPS:,} more kinds: see preview.problems")
    removed = removed_text(preview, limit=TEXT_GROUPS)
    if removed:
        lines += ["", *removed]
    first = _first_payload(preview)
    if first is not None:
        lines += ["", f"First {preview.noun}:", "  " + json.dumps(first, ensure_ascii=False)]
    if preview.sync is not None:
        lines += ["", f"Call .send() to run sync job {preview.sync.job!r}."]
    else:
        lines += ["", f"Call .send() to send the {preview.summary['valid']:,} valid rows."]
    return "\n".join(lines)


def preview_html(preview: IdentifyPreview, *, hint: bool | None = None) -> str:
    """The static HTML view; ``hint`` (default: when ipywidgets is missing) adds INSTALL_HINT."""
    if hint is None:
        hint = not widgets_installed()
    esc = html.escape
    groups = preview_problem_groups(preview)
    parts = [
        '<div class="amp-pandas-preview">',
        f"<strong>{esc(preview.title)}</strong> — dry run, nothing sent<br>",
        f"{esc(header_line(preview))}<br>{esc(target_line(preview))}"
        + sync_header_html(preview),
        "<h4>Operations</h4>",
        preview.operations.to_html(index=False, escape=True),
    ]
    if not groups.empty:
        parts += [
            "<h4>Problems</h4>",
            f"<p>{esc(_groups_note(groups, HTML_GROUPS))}</p>",
            groups.head(HTML_GROUPS).to_html(index=False, escape=True),
        ]
    if preview.sync is not None:
        parts += ["<h4>Removed</h4>", removed_html(preview)]
    first = _first_payload(preview)
    if first is not None:
        parts += [
            f"<h4>First {esc(preview.noun)}</h4>",
            "<pre>" + esc(json.dumps(first, indent=2, ensure_ascii=False)) + "</pre>",
        ]
    if hint:
        parts.append(f"<p><em>{esc(INSTALL_HINT)}</em></p>")
    parts.append("</div>")
    return "\n".join(parts)


def static_mimebundle(preview: IdentifyPreview) -> dict[str, Any]:
    """Text and HTML of a preview; in a kernel (no widget possible) both carry INSTALL_HINT."""
    if in_kernel():
        return {
            "text/plain": preview_text(preview) + "\n\n" + INSTALL_HINT,
            "text/html": preview_html(preview, hint=True),
        }
    return {"text/plain": preview_text(preview), "text/html": preview_html(preview)}


# ---------------------------------------------------------------------- results
def counts_text(result: pd.DataFrame) -> str:
    """``"3 success · 2 invalid"``: the statuses present, in the order of STATUSES.

    Examples
    --------
    >>> counts_text(pd.DataFrame({"status": ["invalid", "success", "success"]}))
    '2 success · 1 invalid'
    """
    shown = [f"{n:,} {s}" for s, n in summarize(result).items() if n]
    return " · ".join(shown) if shown else "no rows"


def status_badges(result: pd.DataFrame) -> list[str]:
    """One colored ``<span>`` per status present: ``4 success``, ``1 invalid`` ..."""
    return [
        f'<span class="amp-pandas-status amp-pandas-{s}" style="color:{STATUS_COLORS[s]};'
        f'font-weight:bold">{n:,} {html.escape(s)}</span>'
        for s, n in summarize(result).items()
        if n
    ]


def reason_groups(result: pd.DataFrame, *, examples: int = EXAMPLES) -> pd.DataFrame:
    """Rows that did not succeed, grouped by status and kind of reason: count, example rows.

    Examples
    --------
    >>> r = pd.DataFrame({"status": ["failed", "success", "failed"],
    ...                   "error": ["HTTP 400: user_id 'abc' bad", None,
    ...                             "HTTP 400: user_id 'x' bad"]}, index=["a", "b", "c"])
    >>> reason_groups(r).values.tolist()
    [['failed', 'HTTP 400: user_id … bad', 2, "'a' ('abc'), 'c' ('x')"]]
    """
    columns = ["status", "error", "count", "rows"]
    bad = result.loc[result["status"] != "success", ["status", "error"]]
    if bad.empty:
        return pd.DataFrame(columns=columns)
    status = bad["status"].to_numpy(dtype=object)
    first, kinds, counts, shown = _group_messages(
        [status],
        bad["error"].astype(object).fillna("").to_numpy(dtype=object),
        bad.index,
        examples=examples,
    )
    grouped = pd.DataFrame(
        {"status": status[first], "error": kinds, "count": counts.astype(np.int64), "rows": shown}
    )
    rank = grouped["status"].map({s: i for i, s in enumerate(STATUSES)}).fillna(len(STATUSES))
    keep = np.lexsort((-grouped["count"].to_numpy(), rank.to_numpy()))
    return grouped.iloc[keep].reset_index(drop=True)[columns]


def _clip(text: Any, limit: int = _MAX_REASON_CHARS) -> str:
    text = plain(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _failures_first(result: pd.DataFrame) -> pd.DataFrame:
    """The rows that did not succeed first (in row order), then the rest."""
    frame = pd.DataFrame(result)
    ok = frame["status"].isin(("success", "unchanged")).to_numpy()
    if not ok.any() or ok.all():
        return frame
    return frame.iloc[np.argsort(ok, kind="stable")]


def _result_title(result: pd.DataFrame) -> str:
    """The result's heading: ``Amplitude group identify result`` for a group send."""
    return f"Amplitude {result.attrs.get(RESULT_API, 'identify')} result"


def result_text(result: pd.DataFrame) -> str:
    """The text view of a result: counts by status, reasons, then the rows (failures first)."""
    lines = [f"{_result_title(result)} — {len(result):,} rows: {counts_text(result)}"]
    groups = reason_groups(result)
    if not groups.empty:
        lines.append("Not succeeded, by reason:")
        for r in groups.head(_MAX_REASON_GROUPS).itertuples(index=False):
            lines.append(
                f"  {r.status:<9} {r.count:>7,}  {_clip(r.error) or '-'}  (rows {r.rows})"
            )
        if len(groups) > _MAX_REASON_GROUPS:
            lines.append(f"  … {len(groups) - _MAX_REASON_GROUPS:,} more reasons")
    lines += ["", pd.DataFrame.__repr__(_failures_first(result))]
    return "\n".join(lines)


def result_html(result: pd.DataFrame) -> str:
    """The HTML view of a result: a colored count per status, reasons, then the rows."""
    badges = status_badges(result)
    parts = [
        '<div class="amp-pandas-result">',
        f"<p><strong>{html.escape(_result_title(result))}</strong> — {len(result):,} rows: "
        + (" · ".join(badges) or "no rows")
        + "</p>",
    ]
    groups = reason_groups(result)
    if not groups.empty:
        shown = groups.head(_MAX_REASON_GROUPS).assign(error=lambda g: g["error"].map(_clip))
        parts += ["<h4>Not succeeded, by reason</h4>", shown.to_html(index=False, escape=True)]
    frame = _failures_first(result)
    table = pd.DataFrame._repr_html_(frame)
    if table is None:  # display.notebook_repr_html is off
        table = frame.to_html(max_rows=pd.get_option("display.max_rows"), escape=True)
    parts += [table, "</div>"]
    return "\n".join(parts)


def result_summary_html(result: pd.DataFrame, *, limit: int = 20) -> str:
    """A sent preview's summary: a colored count per status, reasons, the rows not succeeded."""
    esc = html.escape
    parts = [
        f'<div class="amp-pandas amp-result"><b>Result</b> — {len(result):,} rows: '
        + (" · ".join(status_badges(result)) or "no rows")
    ]
    bad = result.loc[result["status"] != "success"]
    if len(bad):
        groups = reason_groups(result)
        shown = groups.head(_MAX_REASON_GROUPS).assign(error=lambda g: g["error"].map(_clip))
        parts += ["<br><b>Not succeeded, by reason</b>",
                  shown.to_html(index=False, escape=True, border=0)]
        title = f"Rows that did not succeed ({len(bad):,}"
        title += f", first {limit} shown)" if len(bad) > limit else ")"
        parts += [f"<b>{esc(title)}</b>",
                  pd.DataFrame(bad.head(limit)).to_html(escape=True, border=0, na_rep="")]
    parts.append("</div>")
    return "".join(parts)

