"""Text and HTML views of a preview (the ipywidgets view lives in ``_widget``)."""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from ._preview import IdentifyPreview

__all__ = ["preview_text", "preview_html", "problem_groups", "INSTALL_HINT"]

INSTALL_HINT = (
    'For the interactive preview with a Send button: pip install "amp_pandas[notebook]"'
)
_MAX_GROUP_ROWS = 8


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


def problem_groups(problems: pd.DataFrame) -> pd.DataFrame:
    """Problems grouped by (severity, column, message): count and the first row labels."""
    if problems.empty:
        return pd.DataFrame(columns=["severity", "column", "message", "count", "rows"])
    grouped = (
        problems.groupby(["severity", "column", "message"], sort=False, dropna=False)["row"]
        .agg(count="size", rows=lambda r: list(r))
        .reset_index()
    )
    grouped["rows"] = grouped["rows"].map(_rows_text)
    order = grouped["severity"].map({"error": 0, "warning": 1}).fillna(2)
    return grouped.assign(_o=order).sort_values(["_o", "count"], ascending=[True, False],
                                                 kind="stable").drop(columns="_o").reset_index(
        drop=True
    )


def _rows_text(rows: list) -> str:
    shown = ", ".join(map(repr, rows[:_MAX_GROUP_ROWS]))
    more = len(rows) - _MAX_GROUP_ROWS
    return shown + (f" … (+{more:,} more)" if more > 0 else "")


def header_line(preview: "IdentifyPreview") -> str:
    s = preview.summary
    return (
        f"rows {s['rows']:,} · valid {s['valid']:,} · invalid {s['invalid']:,} · "
        f"skipped {s['skipped']:,} · warnings {s['warnings']:,}"
    )


def target_line(preview: "IdentifyPreview") -> str:
    s = preview.summary
    return (
        f"{s['requests']:,} request{'s' if s['requests'] != 1 else ''} · "
        f"{_fmt_bytes(int(s['bytes']))} → {preview.endpoint} (key: {preview.key_status})"
    )


def preview_text(preview: "IdentifyPreview") -> str:
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


def preview_html(preview: "IdentifyPreview") -> str:
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
            "<pre>" + esc(json.dumps(first, indent=2, ensure_ascii=False))
            + "</pre>",
        ]
    parts += [f"<p><em>{esc(INSTALL_HINT)}</em></p>", "</div>"]
    return "\n".join(parts)
