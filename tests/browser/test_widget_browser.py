"""The preview widget in a real browser: JupyterLab in headless Chromium, driven by Playwright.

A person's path through ``widget.ipynb``: open it, run all cells, read the preview's counts,
switch its tabs, step through the payloads, click Send, read the result, and run the cell that
lists the sandbox's users again. Every expected value is written out here from the notebook's
four rows (three valid, one whose id ``"null"`` Amplitude rejects), not read from the package.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

KEY = "browser-test-key-9f3a"  # the sandbox key the notebook sets
#: How long one step may take before it counts as hung (the kernel and the page share 2 cores
#: with everything else on a CI machine); starting the kernel and the first run get longer.
STEP_MS = 30_000
START_MS = 90_000


def document(page: Any, widget: Any, name: str) -> None:
    """With ``AMP_PANDAS_SCREENSHOTS=DIR`` set, save what the page shows as ``DIR/name`` (the
    README's pictures are made this way: ``AMP_PANDAS_SCREENSHOTS=docs pytest -m browser``)."""
    folder = os.environ.get("AMP_PANDAS_SCREENSHOTS")
    if folder:
        widget.scroll_into_view_if_needed()
        page.screenshot(path=os.path.join(folder, name))


def payload(user: str, plan: str, logins: int) -> dict[str, Any]:
    return {
        "user_id": user,
        "user_properties": {"$set": {"plan": plan}, "$add": {"login_count": logins}},
    }


def test_preview_widget_in_jupyterlab(lab: Any, page: Any) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=STEP_MS)

    # -- open the notebook and wait for its kernel
    page.goto(lab.url("lab/tree/widget.ipynb"))
    expect(page.locator(".jp-Notebook .jp-Cell")).to_have_count(4, timeout=START_MS)
    kernel = page.locator("#jp-main-statusbar").get_by_text(re.compile(r"Python 3.*\| Idle$"))
    expect(kernel).to_be_visible(timeout=START_MS)

    # -- run all cells from the menu, as a person would
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    widget = page.locator(".amp-pandas-widget")
    expect(widget).to_be_visible(timeout=START_MS)
    users_output = page.locator(".jp-Notebook .jp-Cell").nth(3).locator(".jp-OutputArea-output")
    expect(users_output).to_have_text("sandbox users: none")  # a dry run sends nothing

    # -- the header: counts, the target, the key masked
    header = widget.locator(".amp-header")
    expect(header).to_contain_text("dry run, nothing sent")
    for name, count in [("rows", 4), ("valid", 3), ("invalid", 1), ("skipped", 0),
                        ("warnings", 0)]:
        expect(header.locator(f".amp-count.amp-{name}")).to_have_text(f"{name} {count}")
    expect(header).to_contain_text(re.compile(r"1 request · \d+ B → http://127\.0\.0\.1:\d+/identify"))
    expect(header).to_contain_text("(key: •••• 9f3a)")

    # -- the tabs: Operations is shown first, one panel at a time
    tabs = widget.get_by_role("tab")
    expect(tabs).to_have_text(["Operations", "Payloads", "Problems (1)"])
    panels = widget.locator(".widget-tab-contents > .lm-Widget")
    expect(panels).to_have_count(3)
    operations, payloads, problems = (panels.nth(i) for i in range(3))
    expect(tabs.nth(0)).to_have_attribute("aria-selected", "true")
    expect(operations).to_be_visible()
    expect(payloads).to_be_hidden()
    expect(problems).to_be_hidden()
    rows = operations.locator("tbody tr")
    expect(rows).to_have_count(3)
    for i, (operation, prop, source) in enumerate(
        [("id", "user_id", "column 'user_id'"), ("$set", "plan", "column 'plan'"),
         ("$add", "login_count", "column 'logins'")]
    ):
        expect(rows.nth(i).locator("td").nth(0)).to_have_text(operation)
        expect(rows.nth(i).locator("td").nth(1)).to_have_text(prop)
        expect(rows.nth(i).locator("td").nth(2)).to_have_text(source)

    # Payloads: the first valid row, then the next ones with the ▶ button
    tabs.nth(1).click()
    expect(tabs.nth(1)).to_have_attribute("aria-selected", "true")
    expect(tabs.nth(0)).to_have_attribute("aria-selected", "false")
    expect(payloads).to_be_visible()
    expect(operations).to_be_hidden()
    caption = payloads.get_by_text(re.compile(r"^position \d+ of \d+"))
    pre = payloads.locator("pre")
    expect(caption).to_have_text("position 0 of 4 · index label 0 · valid")
    assert json.loads(pre.inner_text()) == payload("alice-0001", "pro", 3)
    next_row = payloads.locator("button[title='next row']")
    next_row.click()
    expect(caption).to_have_text("position 1 of 4 · index label 1 · valid")
    assert json.loads(pre.inner_text()) == payload("bob-0002", "free", 1)
    next_row.click()
    next_row.click()
    expect(caption).to_have_text("position 3 of 4 · index label 3 · invalid")
    expect(pre).to_contain_text("Not sent: this row is invalid.")
    expect(pre).to_contain_text("error: user_id: user_id 'null'")
    next_row.click()  # the last row: stays there
    expect(caption).to_have_text("position 3 of 4 · index label 3 · invalid")

    # Problems: the one rejected id, by message
    tabs.nth(2).click()
    expect(tabs.nth(2)).to_have_attribute("aria-selected", "true")
    expect(problems).to_be_visible()
    expect(payloads).to_be_hidden()
    expect(problems).to_contain_text("1 kind of problem, 1 problem")
    problem = problems.locator("tbody tr")
    expect(problem).to_have_count(1)
    expect(problem).to_contain_text("user_id 'null'")
    expect(problem).to_contain_text("error")

    # back to Operations
    tabs.nth(0).click()
    expect(operations).to_be_visible()
    expect(problems).to_be_hidden()
    document(page, widget, "preview.png")

    # -- Send: the three valid rows to the sandbox, then the result in the widget
    send = widget.get_by_role("button", name="Send 3 rows")
    expect(send).to_be_enabled()
    expect(widget).to_contain_text("Sends the 3 valid rows to 127.0.0.1:")
    send.click()
    result = widget.locator(".amp-result")
    expect(result).to_be_visible()
    expect(result).to_contain_text("Result — 4 rows:")
    expect(result.locator(".amp-pandas-status.amp-pandas-success")).to_have_text("3 success")
    expect(result.locator(".amp-pandas-status.amp-pandas-invalid")).to_have_text("1 invalid")
    expect(result.locator(".amp-pandas-status")).to_have_count(2)
    expect(result).to_contain_text("Rows that did not succeed (1)")
    expect(widget).to_contain_text(re.compile(r"Sent in \d+\.\d s: 3 of 3 rows succeeded\."))
    bar = widget.locator(".widget-hprogress .progress-bar")  # full, and green: all succeeded
    expect(bar).to_have_attribute("style", re.compile(r"(^|;)\s*width: 100%;"))
    expect(bar).to_have_class(re.compile(r"\bprogress-bar-success\b"))
    expect(widget).to_contain_text("succeeded 3 · failed 0")
    sent = widget.get_by_role("button", name="Sent")
    expect(sent).to_be_disabled()  # a preview sends once

    # the key itself is nowhere in the widget (only its masked form)
    assert KEY not in widget.inner_html()
    assert KEY[:-4] not in widget.inner_text()

    # -- the sandbox now holds the three users: run the listing cell again
    page.locator(".jp-Notebook .jp-Cell").nth(3).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    expect(users_output).to_have_text("sandbox users: alice-0001, bob-0002, carol-0003")


def test_sync_preview_in_jupyterlab(lab: Any, page: Any) -> None:
    """A sync job's next run: the header's counts, the Removed tab, Send, and the revert landed.

    The notebook's job ran once for alice, bob and carol; the next cohort keeps alice as she was,
    changes bob's plan, adds dave and drops carol (``removed="revert"``).
    """
    from playwright.sync_api import expect

    expect.set_options(timeout=STEP_MS)
    page.goto(lab.url("lab/tree/sync.ipynb?reset"))  # a fresh workspace: one notebook open
    expect(page.locator(".jp-Notebook .jp-Cell")).to_have_count(4, timeout=START_MS)
    kernel = page.locator("#jp-main-statusbar").get_by_text(re.compile(r"Python 3.*\| Idle$"))
    expect(kernel).to_be_visible(timeout=START_MS)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    widget = page.locator(".amp-pandas-widget")
    expect(widget).to_be_visible(timeout=START_MS)
    cells = page.locator(".jp-Notebook .jp-Cell")
    expect(cells.nth(1).locator(".jp-OutputArea-output")).to_have_text(
        "week 1: ['success', 'success', 'success']"
    )
    carol = cells.nth(3).locator(".jp-OutputArea-output")
    expect(carol).to_have_text(
        "carol: {'plan': 'team', 'cohort': 'winback-q2', 'campaigns': ['winback-q2']}"
    )

    # -- the header: the job and its counts by user, and what a Send will do
    sync = widget.locator(".amp-sync[data-job='winback-q2']")
    expect(sync).to_be_visible()
    for status, count in [("unchanged", 1), ("changed", 1), ("new", 1), ("removed", 1)]:
        expect(sync.locator(f".amp-sync-count[data-status={status}] b")).to_have_text(str(count))
    expect(widget.locator(".amp-sync-send")).to_contain_text(
        "skip 1 unchanged user, revert 1 of 1 removed user"
    )

    # -- the Removed tab: carol, and the identification that undoes the job's tags
    tabs = widget.get_by_role("tab")
    removed_tab = tabs.filter(has_text=re.compile(r"^Removed \(1\)$"))
    expect(removed_tab).to_have_count(1)
    removed_tab.click()
    expect(removed_tab).to_have_attribute("aria-selected", "true")
    removed = widget.locator(".amp-removed-tab")
    expect(removed).to_be_visible()
    expect(removed.locator(".amp-removed[data-mode=revert]")).to_have_attribute("data-count", "1")
    row = removed.locator("tr.amp-removed-row[data-user='carol-0003']")
    expect(row).to_have_count(1)
    document(page, widget, "sync-preview.png")
    revert = json.loads(removed.locator("pre.amp-revert-payload").first.inner_text())
    assert revert == {
        "user_id": "carol-0003",
        "user_properties": {
            "$unset": {"cohort": "-", "plan": "-"},
            "$remove": {"campaigns": ["winback-q2"]},
        },
    }

    # -- Send: bob and dave go, alice is skipped, carol's revert goes
    widget.locator(".amp-send-button").click()
    result = widget.locator(".amp-result")
    expect(result).to_be_visible()
    expect(result.locator(".amp-pandas-status.amp-pandas-success")).to_have_text("2 success")
    expect(result.locator(".amp-pandas-status.amp-pandas-unchanged")).to_have_text("1 unchanged")
    expect(removed.locator(".amp-removed[data-sent='1']")).to_have_count(1)
    expect(row).to_have_attribute("data-status", "success")
    assert KEY not in widget.inner_html()

    # -- carol's profile no longer carries the job's tags
    cells.nth(3).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    expect(carol).to_have_text("carol: {'campaigns': []}")
