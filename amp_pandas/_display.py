"""Text and HTML views of a preview, and the choice between them and the widget.

``IdentifyPreview`` displays itself through :func:`preview_mimebundle`:

* in a Jupyter kernel with ipywidgets installed: the interactive widget of
  :mod:`amp_pandas._widget` (with this module's HTML and text as the fallback other
  frontends, GitHub and nbval see);
* in a Jupyter kernel without ipywidgets: the HTML table and the text, both with a one-line
  hint on installing the ``notebook`` extra;
* elsewhere (a terminal, a log): the text.

ipywidgets is imported only in the first case, when a preview is actually shown. Nothing here
ever holds the API key: the key appears only as ``preview.key_status`` (masked).
"""

from __future__ import annotations

import html
import importlib.util
import json
import sys
from collections.abc import Container
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from ._preview import IdentifyPreview

__all__ = [
    "INSTALL_HINT",
    "WIDGET_MIME",
    "payload_text",
    "preview_html",
    "preview_mimebundle",
    "preview_text",
    "problem_groups",
    "result_summary_html",
    "send_blocker",
]

INSTALL_HINT = (
    'For the interactive preview with a Send button: pip install "amp_pandas[notebook]"'
)
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_MAX_GROUP_ROWS = 8

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


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
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


# ---------------------------------------------------------------------- pieces
def problem_groups(problems: pd.DataFrame) -> pd.DataFrame:
    """Problems grouped by (severity, column, message): count and the first row labels.

    Errors first, then warnings; within a severity, the largest groups first.

    Examples
    --------
    >>> problems = pd.DataFrame({"row": [3, 7, 9], "column": ["uid", "uid", "plan"],
    ...                          "severity": ["error", "error", "warning"],
    ...                          "message": ["bad id", "bad id", "long"]})
    >>> problem_groups(problems).values.tolist()
    [['error', 'uid', 'bad id', 2, '3, 7'], ['warning', 'plan', 'long', 1, '9']]
    """
    if problems.empty:
        return pd.DataFrame(columns=["severity", "column", "message", "count", "rows"])
    grouped = (
        problems.groupby(["severity", "column", "message"], sort=False, dropna=False)["row"]
        .agg(count="size", rows=lambda r: list(r))
        .reset_index()
    )
    grouped["rows"] = grouped["rows"].map(_rows_text)
    order = grouped["severity"].map({"error": 0, "warning": 1}).fillna(2)
    return (
        grouped.assign(_o=order)
        .sort_values(["_o", "count"], ascending=[True, False], kind="stable")
        .drop(columns="_o")
        .reset_index(drop=True)
    )


def _rows_text(rows: list) -> str:
    shown = ", ".join(map(repr, rows[:_MAX_GROUP_ROWS]))
    more = len(rows) - _MAX_GROUP_ROWS
    return shown + (f" … (+{more:,} more)" if more > 0 else "")


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
        "<b>Amplitude identify preview</b> "
        '<span class="amp-muted">— dry run, nothing sent</span><br>'
        + " · ".join(counts)
        + "<br>"
        f"{esc(target_line(preview))}"
        "</div>"
    )


def operations_html(preview: IdentifyPreview) -> str:
    ops = preview.operations
    if ops.empty:
        return '<div class="amp-pandas"><i>No operations.</i></div>'
    return '<div class="amp-pandas">' + ops.to_html(index=False, escape=True, border=0) + "</div>"


def problems_html(groups: pd.DataFrame, *, total: int, limit: int = 100) -> str:
    """The Problems table (already filtered); ``total`` is the number of groups before filtering."""
    if total == 0:
        return '<div class="amp-pandas"><i>No problems: every row passed the checks.</i></div>'
    if groups.empty:
        return '<div class="amp-pandas"><i>No problems match these filters.</i></div>'
    rows = int(groups["count"].sum())
    shown = groups.head(limit)
    note = (
        f"{len(groups):,} message{'s' if len(groups) != 1 else ''}, "
        f"{rows:,} problem{'s' if rows != 1 else ''}"
    )
    if len(groups) > limit:
        note += f" (first {limit} shown)"
    return (
        f'<div class="amp-pandas"><span class="amp-muted">{html.escape(note)}</span>'
        + shown.to_html(index=False, escape=True, border=0)
        + "</div>"
    )


def payload_text(preview: IdentifyPreview, position: int) -> str:
    """The identification of the row at ``position`` as pretty JSON, or why it is not sent."""
    from ._plan import STATE_NAMES, VALID

    plan = preview.plan
    if plan.state[position] == VALID:
        return json.dumps(preview.payload_at(position), indent=2, ensure_ascii=False)
    state = STATE_NAMES.get(int(plan.state[position]), "not sent")
    lines = [f"Not sent: this row is {state}."]
    probs = plan.problems
    mine = probs.loc[probs["position"] == position]
    for r in mine.itertuples(index=False):
        lines.append(f"  {r.severity}: {r.column}: {r.message}")
    if mine.empty and plan.reason[position] is not None:
        lines.append(f"  {plan.reason[position]}")
    return "\n".join(lines)


def row_caption(preview: IdentifyPreview, position: int) -> str:
    """``"row 3 of 300 · index label 'u-3' · valid"`` for the row picker."""
    from ._plan import STATE_NAMES

    plan = preview.plan
    label = plan.index[position]
    state = STATE_NAMES.get(int(plan.state[position]), "?")
    return f"position {position:,} of {len(plan):,} · index label {label!r} · {state}"


def send_blocker(preview: IdentifyPreview) -> str | None:
    """Why the widget's Send button is disabled, or ``None`` when sending can start."""
    if preview.settings.api_key is None:
        return (
            "no API key set: pass api_key=... (or set AMPLITUDE_API_KEY) and build the "
            "preview again"
        )
    if not preview.endpoint:  # pragma: no cover - resolve_settings always sets one
        return "no server set: pass server_url=... or region=..."
    if not int(preview.summary["valid"]):
        return "no valid rows to send"
    return None


def result_summary_html(result: pd.DataFrame, *, limit: int = 20) -> str:
    """A sent preview's summary: a colored count per status, reasons, the rows not succeeded."""
    from ._result import _reason_groups, status_badges

    esc = html.escape
    badges = status_badges(result)
    parts = [
        f'<div class="amp-pandas amp-result"><b>Result</b> — {len(result):,} rows: '
        + (" · ".join(badges) or "no rows")
    ]
    bad = result.loc[result["status"] != "success"]
    if len(bad):
        groups = _reason_groups(result)
        parts += ["<br><b>Not succeeded, by reason</b>",
                  groups.to_html(index=False, escape=True, border=0)]
        title = f"Rows that did not succeed ({len(bad):,}"
        title += f", first {limit} shown)" if len(bad) > limit else ")"
        parts += [f"<b>{esc(title)}</b>",
                  pd.DataFrame(bad.head(limit)).to_html(escape=True, border=0, na_rep="")]
    parts.append("</div>")
    return "".join(parts)


# ---------------------------------------------------------------------- whole views
def preview_text(preview: IdentifyPreview) -> str:
    lines = [
        "Amplitude identify preview — dry run, nothing sent",
        "  " + header_line(preview),
        "  " + target_line(preview),
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
    groups = problem_groups(preview.problems)
    if not groups.empty:
        lines += ["", "Problems:"]
        for r in groups.itertuples(index=False):
            lines.append(
                f"  {r.severity:<7} {r.column}: {r.message} — {r.count:,} row(s): {r.rows}"
            )
    first = preview.first_payload()
    if first is not None:
        lines += ["", "First identification:", "  " + json.dumps(first, ensure_ascii=False)]
    lines += ["", f"Call .send() to send the {preview.summary['valid']:,} valid rows."]
    return "\n".join(lines)


def preview_html(preview: IdentifyPreview, *, hint: bool | None = None) -> str:
    """The static HTML view; ``hint`` (default: when ipywidgets is missing) adds INSTALL_HINT."""
    if hint is None:
        hint = not widgets_installed()
    esc = html.escape
    groups = problem_groups(preview.problems)
    parts = [
        '<div class="amp-pandas-preview">',
        "<strong>Amplitude identify preview</strong> — dry run, nothing sent<br>",
        f"{esc(header_line(preview))}<br>{esc(target_line(preview))}",
        "<h4>Operations</h4>",
        preview.operations.to_html(index=False, escape=True),
    ]
    if not groups.empty:
        parts += ["<h4>Problems</h4>", groups.to_html(index=False, escape=True)]
    first = preview.first_payload()
    if first is not None:
        parts += [
            "<h4>First identification</h4>",
            "<pre>" + esc(json.dumps(first, indent=2, ensure_ascii=False)) + "</pre>",
        ]
    if hint:
        parts.append(f"<p><em>{esc(INSTALL_HINT)}</em></p>")
    parts.append("</div>")
    return "\n".join(parts)


def preview_mimebundle(
    preview: IdentifyPreview,
    include: Container[str] | None = None,
    exclude: Container[str] | None = None,
) -> dict[str, Any]:
    """What IPython shows for a preview (see the module docstring for the three cases)."""
    kernel = in_kernel()
    wanted = include is None or WIDGET_MIME in include
    if kernel and wanted and not (exclude is not None and WIDGET_MIME in exclude):
        try:
            import ipywidgets  # noqa: F401  (late: only when a widget is shown)
        except ImportError:
            pass
        else:
            from ._widget import widget_for

            return widget_for(preview)._repr_mimebundle_(include=include, exclude=exclude)
        return {
            "text/plain": preview_text(preview) + "\n\n" + INSTALL_HINT,
            "text/html": preview_html(preview, hint=True),
        }
    return {"text/plain": preview_text(preview), "text/html": preview_html(preview)}
