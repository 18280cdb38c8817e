"""Sync runs of ``group_identify`` (``sync=`` keyed by group) end to end against the sandbox.

Every expected status, revert identification, group profile and ledger key is written by hand;
the sandbox's recorded requests and ``group_profiles()`` are the oracle for what was applied.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import amp_pandas  # noqa: F401  (registers df.amplitude)
from amp_pandas import Ledger, cli, literal
from amp_pandas.errors import ArgumentError, LedgerLockedError, RowsNotSucceededWarning
from amp_pandas.sandbox import Sandbox

HELD_TEXT = "may or may not have been applied"
QUICK = {"progress": False, "backoff": 0.001, "backoff_max": 0.01}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


def run(df: pd.DataFrame, sb: Sandbox, path: Path, **kw: Any) -> Any:
    """A sync run of group job "weekly" (warnings recorded, not raised)."""
    args: dict[str, Any] = {"group_type": "company", "group_value": "cid",
                            "server_url": sb.group_url, "api_key": sb.api_key,
                            "sync": "weekly", "ledger": path, **QUICK}  # fmt: skip
    args.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return df.amplitude.group_identify(**args)


def companies(*ids: str, plan: dict[str, str] | None = None) -> pd.DataFrame:
    plans = plan or {}
    return pd.DataFrame({"cid": list(ids), "plan": [plans.get(c, "pro") for c in ids]})


def group_requests(sb: Sandbox) -> list[Any]:
    return [r for r in sb.requests if r.path == "/groupidentify"]


def applied(sb: Sandbox) -> list[tuple[str, str]]:
    return sorted((g["group_type"], g["group_value"]) for g in sb.group_applied)


def gkey(group_type: str, value: str) -> str:
    """The documented key of a group, written out by hand: two NULs, then the JSON pair."""
    return "\x00\x00" + '["' + group_type + '","' + value + '"]'


def leave_unknown(path: Path, sb: Sandbox, texts: dict[str, str]) -> None:
    """Write groups into the ledger as sent with an unknown outcome (digests by hand: SHA-256 of
    the JSON text and a newline, first 16 bytes), for the group job "weekly"."""
    with Ledger(path) as ledger:
        with ledger.begin_run(ledger.job("weekly", sb.group_url, sb.api_key)) as r:
            keys = list(texts)
            digests = [hashlib.sha256(texts[k].encode() + b"\n").digest()[:16] for k in keys]
            r.mark_in_flight(keys, digests)
            r.mark_done(keys, "unknown")


# --- statuses -----------------------------------------------------------------------------------


def test_first_run_sends_every_group_then_an_identical_rerun_sends_nothing(
    sb: Sandbox, path: Path
) -> None:
    df = companies("17", "42", "99")
    first = run(df, sb, path, set=["plan"])
    assert first.status.tolist() == ["success"] * 3
    assert applied(sb) == [("company", "17"), ("company", "42"), ("company", "99")]
    assert first.removed.empty
    assert list(first.removed.columns) == ["group_type", "group_value", "identification",
                                           "status", "error", "not_undone"]  # fmt: skip
    before = len(sb.requests)
    again = run(df, sb, path, set=["plan"])
    assert again.status.tolist() == ["unchanged"] * 3
    assert again.error.isna().all()
    assert len(sb.requests) == before


def test_changed_and_new_groups_are_sent_unchanged_ones_are_not(sb: Sandbox, path: Path) -> None:
    run(companies("17", "42"), sb, path, set=["plan"])
    sb.reset()
    df = companies("17", "42", "99", plan={"42": "team"})
    preview = run(df, sb, path, set=["plan"], dry_run=True)
    assert preview.sync.counts == {"new": 1, "changed": 1, "unchanged": 1, "ambiguous": 0,
                                   "held": 0, "removed": 0}  # fmt: skip
    assert preview.summary["unchanged"] == 1 and preview.summary["removed"] == 0
    assert preview.sync.unit == "group"
    text = repr(preview)
    assert "holds 2 groups" in text
    assert "groups: unchanged 1 · changed 1 · new 1 · removed 0 (keep)" in text
    assert "A Send will send 2 rows of 2 new or changed groups, skip 1 unchanged group" in text
    result = preview.send(progress=False)
    assert result.status.tolist() == ["unchanged", "success", "success"]
    assert applied(sb) == [("company", "42"), ("company", "99")]
    assert sb.group_profile("company", "42") == {"plan": "team"}


def test_a_type_and_value_that_join_alike_are_two_groups(sb: Sandbox, path: Path) -> None:
    # "a:b" + "c" and "a" + "b:c" both read "a:b:c" joined with a colon: two groups all the same
    df = pd.DataFrame({"t": ["a:b", "a"], "cid": ["c", "b:c"], "plan": ["x", "y"]})
    assert run(df, sb, path, group_type="t", set=["plan"]).status.tolist() == ["success"] * 2
    changed = df.assign(plan=["x", "z"])
    assert run(changed, sb, path, group_type="t", set=["plan"]).status.tolist() == [
        "unchanged", "success"]
    users = Ledger(path).users("weekly")
    assert sorted(users["key"]) == sorted([gkey("a:b", "c"), gkey("a", "b:c")])


def test_without_sync_no_ledger_is_touched(sb: Sandbox, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMP_PANDAS_LEDGER", str(tmp_path / "default.sqlite3"))
    result = companies("17").amplitude.group_identify(
        group_type="company", group_value="cid", set=["plan"], server_url=sb.group_url,
        api_key=sb.api_key, **QUICK)
    assert result.status.tolist() == ["success"]
    assert result.removed is None
    assert list(tmp_path.iterdir()) == []


def test_sync_arguments_are_checked_like_identifys(sb: Sandbox, path: Path) -> None:
    for kwargs, message in (
        ({"sync": ""}, "sync= takes a job name"),
        ({"sync": ["job"]}, "sync= takes a job name"),
        ({"sync": "w", "removed": "drop"}, 'removed= must be "keep" or "revert"'),
        ({"ledger": path}, "ledger= is used by sync runs only"),
        ({"removed": "revert"}, 'removed="revert" needs a sync job'),
        ({"sync": "w", "ledger": 5}, "ledger= takes the path"),
    ):
        with pytest.raises(ArgumentError, match=re.escape(message)):
            companies("17").amplitude.group_identify(
                group_type="company", group_value="cid", set=["plan"],
                server_url=sb.group_url, api_key=sb.api_key, **QUICK, **kwargs)
    assert sb.requests == []
    assert not path.exists()


# --- ambiguous ----------------------------------------------------------------------------------


def test_ambiguous_idempotent_groups_are_sent_again(sb: Sandbox, path: Path) -> None:
    text = '{"group_type":"company","group_value":"17","group_properties":{"$set":{"plan":"pro"}}}'
    leave_unknown(path, sb, {gkey("company", "17"): text})
    preview = run(companies("17"), sb, path, set=["plan"], dry_run=True)
    assert preview.payloads[0] == json.loads(text)  # the digest above is of what is sent
    assert preview.sync.counts["ambiguous"] == 1
    assert preview.send(progress=False).status.tolist() == ["success"]
    assert applied(sb) == [("company", "17")]
    assert run(companies("17"), sb, path, set=["plan"]).status.tolist() == ["unchanged"]


def test_ambiguous_non_idempotent_groups_are_held_unless_retry_ambiguous(
    sb: Sandbox, path: Path
) -> None:
    df = pd.DataFrame({"cid": ["17", "42"], "n": [1, 2]})
    texts = {gkey("company", c): '{"group_type":"company","group_value":"' + c
             + '","group_properties":{"$add":{"seats":' + str(n) + "}}}"
             for c, n in (("17", 1), ("42", 2))}  # fmt: skip
    leave_unknown(path, sb, texts)
    with pytest.warns(RowsNotSucceededWarning):
        held = df.amplitude.group_identify(
            group_type="company", group_value="cid", add={"seats": "n"},
            server_url=sb.group_url, api_key=sb.api_key, sync="weekly", ledger=path, **QUICK)
    assert held.status.tolist() == ["unknown", "unknown"]
    assert all(HELD_TEXT in e and "this group" in e and "retry_ambiguous=True" in e
               for e in held.error)  # fmt: skip
    assert sb.requests == []
    assert run(df, sb, path, add={"seats": "n"}).status.tolist() == ["unknown", "unknown"]
    assert sb.requests == []
    retried = run(df, sb, path, add={"seats": "n"}, retry_ambiguous=True)
    assert retried.status.tolist() == ["success", "success"]
    assert sb.group_profile("company", "42") == {"seats": 2}
    assert run(df, sb, path, add={"seats": "n"}).status.tolist() == ["unchanged"] * 2


def test_a_failed_group_is_sent_again(sb: Sandbox, path: Path) -> None:
    sb.set_faults(rate_503=1.0)
    first = run(companies("17"), sb, path, set=["plan"], max_retries=0)
    assert first.status.tolist() == ["failed"]
    sb.set_faults(rate_503=0.0)
    again = run(companies("17"), sb, path, set=["plan"])
    assert again.status.tolist() == ["success"]
    assert sb.group_profile("company", "17") == {"plan": "pro"}


# --- removed groups -----------------------------------------------------------------------------


def test_removed_keep_sends_nothing_and_reports_once(sb: Sandbox, path: Path) -> None:
    run(companies("17", "42"), sb, path, set=["plan"])
    sb.reset()
    preview = run(companies("17"), sb, path, set=["plan"], dry_run=True)
    assert preview.sync.counts["removed"] == 1 and preview.summary["removed"] == 1
    assert preview.sync.reverts[["group_type", "group_value"]].values.tolist() == [
        ["company", "42"]]
    assert preview.sync.reverts["identification"].tolist() == [None]
    assert "keep 1 removed group as they are" in preview.sync.send_text()
    result = preview.send(progress=False)
    assert result.status.tolist() == ["unchanged"]
    assert result.removed[["group_type", "group_value", "status"]].values.tolist() == [
        ["company", "42", "kept"]]
    assert sb.requests == []
    later = run(companies("17"), sb, path, set=["plan"], removed="revert")
    assert len(later.removed) == 0
    assert sb.requests == []


def test_removed_revert_unsets_what_the_job_set_and_reports_what_stays(
    sb: Sandbox, path: Path
) -> None:
    # before the job: the group holds values of its own
    own = pd.DataFrame({"cid": ["17"], "old": ["old"], "n": [5]})
    own.amplitude.group_identify(group_type="company", group_value="cid",
                                 append={"tags": "old"}, add={"seats": "n"},
                                 server_url=sb.group_url, api_key=sb.api_key, **QUICK)
    assert sb.group_profile("company", "17") == {"tags": ["old"], "seats": 5}
    job = {
        "set": {"tier": literal("gold")},
        "set_once": {"first_seen": literal("2024-05-01")},
        "append": {"tags": literal("q2")},
        "prepend": {"history": literal(["h1", "h2"])},
        "add": {"seats": literal(1)},
    }
    df = pd.DataFrame({"cid": ["17", "42"]})
    assert run(df, sb, path, **job).status.tolist() == ["success", "success"]
    assert sb.group_profile("company", "17") == {
        "tags": ["old", "q2"], "seats": 6, "tier": "gold", "first_seen": "2024-05-01",
        "history": ["h1", "h2"]}
    requests_before = len(group_requests(sb))
    preview = run(df.iloc[1:], sb, path, removed="revert", dry_run=True, **job)
    revert = {"group_type": "company", "group_value": "17",
              "group_properties": {"$unset": {"first_seen": "-", "tier": "-"}}}  # fmt: skip
    not_undone = ["$add seats", "values added to history", "values added to tags"]
    assert preview.sync.reverts["identification"].tolist() == [revert]
    assert preview.sync.reverts["not_undone"].tolist() == [not_undone]
    assert "revert 1 of 1 removed group" in preview.sync.send_text()
    text = repr(preview)
    assert "Removed groups (1; removed='revert'):" in text
    assert "company 17: " + json.dumps(revert) in text
    page = preview._repr_html_()
    assert '<tr class="amp-removed-row" data-user="company 17">' in page
    assert "<th>group</th>" in page and "<th>user</th>" not in page
    shown = re.search(r'<pre class="amp-revert-payload">(.*?)</pre>', page, re.S)
    assert shown is not None and json.loads(html.unescape(shown.group(1))) == revert
    result = preview.send(progress=False)
    assert result.status.tolist() == ["unchanged"]
    removed = result.removed
    assert removed[["group_type", "group_value", "status"]].values.tolist() == [
        ["company", "17", "success"]]
    assert removed["identification"].tolist() == [revert]
    assert removed["not_undone"].tolist() == [not_undone]
    # the revert went to /groupidentify as one group identification
    sent = group_requests(sb)[requests_before:]
    assert len(sent) == 1
    # what the job set is gone; appended and prepended values and the $add stay
    assert sb.group_profile("company", "17") == {"tags": ["old", "q2"], "seats": 6,
                                                 "history": ["h1", "h2"]}  # fmt: skip
    # reverted: no longer a member; back in the list it is new again
    assert len(run(df.iloc[1:], sb, path, removed="revert", **job).removed) == 0
    assert run(df, sb, path, removed="revert", **job).status.tolist() == ["success", "unchanged"]


def test_a_removed_group_with_nothing_to_undo_is_skipped(sb: Sandbox, path: Path) -> None:
    df = pd.DataFrame({"cid": ["17", "42"], "tag": ["a", "b"]})
    run(df, sb, path, append={"tags": "tag"}, add={"seats": literal(1)})
    before = len(sb.requests)
    result = run(df.iloc[1:], sb, path, append={"tags": "tag"}, add={"seats": literal(1)},
                 removed="revert")  # fmt: skip
    assert result.status.tolist() == ["unchanged"]
    assert result.removed[["group_value", "identification", "status"]].values.tolist() == [
        ["17", None, "skipped"]]
    assert result.removed["not_undone"].tolist() == [["$add seats", "values added to tags"]]
    assert "nothing this job did can be undone" in result.removed["error"].iloc[0]
    assert len(sb.requests) == before
    assert sb.group_profile("company", "17") == {"tags": ["a"], "seats": 1}
    # let go: not removed again
    assert len(run(df.iloc[1:], sb, path, append={"tags": "tag"}, add={"seats": literal(1)},
                   removed="revert").removed) == 0


def test_a_failed_revert_is_tried_again(sb: Sandbox, path: Path) -> None:
    run(companies("17", "42"), sb, path, set=["plan"])
    sb.set_faults(rate_503=1.0)
    failed = run(companies("42"), sb, path, set=["plan"], removed="revert", max_retries=0)
    assert failed.removed[["group_value", "status"]].values.tolist() == [["17", "failed"]]
    assert sb.group_profile("company", "17") == {"plan": "pro"}
    sb.set_faults(rate_503=0.0)
    again = run(companies("42"), sb, path, set=["plan"], removed="revert")
    assert again.removed[["group_value", "status"]].values.tolist() == [["17", "success"]]
    assert sb.group_profile("company", "17") == {}


# --- jobs and the ledger ------------------------------------------------------------------------


def test_a_group_job_and_a_user_job_of_the_same_name_are_separate(
    sb: Sandbox, path: Path
) -> None:
    users = pd.DataFrame({"uid": ["user-1"], "plan": ["pro"]})
    user_job = {"user_id": "uid", "set": ["plan"], "server_url": sb.url, "api_key": sb.api_key,
                "sync": "weekly", "ledger": path, **QUICK}  # fmt: skip
    assert users.amplitude.identify(**user_job).status.tolist() == ["success"]
    # the group job of the same name knows nothing of user-1: its group is new
    assert run(companies("17"), sb, path, set=["plan"]).status.tolist() == ["success"]
    jobs = Ledger(path).jobs()
    assert jobs["job"].tolist() == ["weekly", "weekly"]
    assert sorted(jobs["endpoint"]) == sorted([sb.url, sb.group_url])
    assert jobs["users"].tolist() == [1, 1]
    # each job's re-run is unchanged; an empty group run removes the group, never the user
    assert users.amplitude.identify(**user_job).status.tolist() == ["unchanged"]
    gone = run(companies("42"), sb, path, set=["plan"], removed="revert")
    assert gone.removed["group_value"].tolist() == ["17"]
    assert users.amplitude.identify(**user_job).status.tolist() == ["unchanged"]
    assert sb.profile("user-1") == {"plan": "pro"}


def test_the_ledger_holds_group_keys_and_never_the_api_key(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with Sandbox(api_key="secret-group-key-0123456789") as other:
        df = pd.DataFrame({"cid": ["17", "a\x00b"], "plan": ["pro", "free"]})
        run(df, other, path, set=["plan"])
        run(df.iloc[1:], other, path, set=["plan"], removed="revert")
        raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
        assert b"secret-group-key-0123456789" not in raw
        assert b'["company","17"]' in raw  # the check reads the real data
        users = Ledger(path).users("weekly")
        # JSON writes the NUL inside the value as an escape: the key stays unambiguous
        nul_key = '\x00\x00["company","a\\u0000b"]'
        assert dict(zip(users["key"], users["action"], strict=True)) == {
            gkey("company", "17"): "revert", nul_key: "sync"}


def test_a_second_run_of_the_group_job_is_refused_before_sending(
    sb: Sandbox, path: Path
) -> None:
    ledger = Ledger(path)
    holder = ledger.begin_run(ledger.job("weekly", sb.group_url, sb.api_key))
    try:
        with pytest.raises(LedgerLockedError, match="process"):
            companies("17").amplitude.group_identify(
                group_type="company", group_value="cid", set=["plan"],
                server_url=sb.group_url, api_key=sb.api_key, sync="weekly", ledger=path,
                **QUICK)
        assert sb.requests == []
        # the user job of the same name is another job: not locked
        users = pd.DataFrame({"uid": ["user-1"], "plan": ["pro"]})
        assert users.amplitude.identify(user_id="uid", set=["plan"], server_url=sb.url,
                                        api_key=sb.api_key, sync="weekly", ledger=path,
                                        **QUICK).status.tolist() == ["success"]  # fmt: skip
    finally:
        holder.finish()
        ledger.close()


# --- the widget ---------------------------------------------------------------------------------


def test_widget_header_and_removed_tab_count_groups(sb: Sandbox, path: Path) -> None:
    widgets = pytest.importorskip("ipywidgets")
    from amp_pandas._widget import PreviewWidget

    try:
        run(companies("17", "42"), sb, path, set=["plan"])
        w = PreviewWidget(run(companies("42"), sb, path, set=["plan"], removed="revert",
                              dry_run=True))  # fmt: skip
        assert "holds 2 groups" in w.header.value
        assert w.tabs.titles[-1] == "Removed (1)"
        assert w.removed_view is not None and 'data-user="company 17"' in w.removed_view.value
        w._on_send()
        assert w.state == "sent"
        assert 'data-status="success"' in w.removed_view.value
        assert sb.group_profile("company", "17") == {}
        blocked = PreviewWidget(run(companies("42"), sb, path, set=["plan"], dry_run=True))
        assert blocked.send_button.disabled
        assert "every group is unchanged" in blocked.blocker
    finally:
        widgets.Widget.close_all()


# --- the command line ---------------------------------------------------------------------------

CLI_KEY = "cli-group-sync-key-9c1e"


def cli_run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_the_command_line_runs_a_group_job(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    with Sandbox(api_key=CLI_KEY) as sb:
        monkeypatch.setenv("AMPLITUDE_API_KEY", CLI_KEY)

        def group_identify(ids: list[str], *more: str) -> tuple[int, str, str]:
            file = tmp_path / f"companies-{len(ids)}.csv"
            pd.DataFrame({"company_id": ids, "plan": "pro"}).to_csv(file, index=False)
            return cli_run("group-identify", str(file), "--group-type", "company",
                           "--group-value", "company_id", "--set", "plan", "--server-url",
                           sb.group_url, "--no-progress", "--sync", "accounts", "--ledger",
                           str(ledger), *more)  # fmt: skip

        code, out, err = group_identify(["17", "42"])
        assert (code, err) == (0, "")
        assert "success 2" in out
        before = len(sb.requests)
        code, out, _ = group_identify(["17", "42"])
        assert code == 0 and "unchanged 2" in out
        assert len(sb.requests) == before
        code, out, _ = group_identify(["42"], "--dry-run", "--removed", "revert")
        assert code == 0
        assert "groups: unchanged 1 · changed 0 · new 0 · removed 1 (revert)" in out
        code, out, _ = group_identify(["42"], "--removed", "revert")
        assert code == 0
        assert "removed groups: success 1" in out
        assert sb.group_profile("company", "17") == {}
        code, out, _ = cli_run("ledger", "show", "accounts", "--ledger", str(ledger))
        assert code == 0
        assert "group company 17" in out and "group company 42" in out
        assert "\x00" not in out
        code, _, err = cli_run("group-identify", str(tmp_path / "companies-1.csv"),
                               "--group-type", "company", "--group-value", "company_id",
                               "--set", "plan", "--server-url", sb.group_url,
                               "--removed", "revert")  # fmt: skip
        assert code == 2 and "--removed and --ledger need --sync NAME" in err


def test_reverts_keep_the_group_identify_limits_per_request(sb: Sandbox, path: Path) -> None:
    # two groups set 600 properties each: their two reverts $unset 1,200 properties, more than
    # the 1,024 group properties one request may touch, so they go in two requests
    props = [f"p{i:03d}" for i in range(600)]
    df = pd.DataFrame({"cid": ["17", "42", "99"], **{p: ["x"] * 3 for p in props}})
    assert run(df, sb, path, set=props).status.tolist() == ["success"] * 3
    before = len(group_requests(sb))
    result = run(df.iloc[2:], sb, path, set=props, removed="revert")
    assert result.removed["status"].tolist() == ["success", "success"]
    reverts = group_requests(sb)[before:]
    # two requests of one group each, both accepted at once (no 413 and split afterwards)
    assert [(r.status, r.count) for r in reverts] == [(200, 1), (200, 1)]
    for request in reverts:
        assert request.identifications is not None
        assert request.identifications[0]["group_properties"] == {
            "$unset": dict.fromkeys(props, "-")}
    assert sb.group_profile("company", "17") == {} and sb.group_profile("company", "42") == {}
    # and at most batch_size group identifications per request
    three = pd.DataFrame({"cid": ["a1", "a2", "a3", "a4"], "plan": "pro"})
    run(three, sb, path, set=["plan"], sync="small")
    before = len(group_requests(sb))
    run(three.iloc[3:], sb, path, set=["plan"], sync="small", removed="revert", batch_size=2)
    assert sorted(r.count for r in group_requests(sb)[before:]) == [1, 2]


def test_group_identify_takes_identifys_sync_arguments() -> None:
    import inspect

    from amp_pandas import AmplitudeAccessor

    group = inspect.signature(AmplitudeAccessor.group_identify).parameters
    user = inspect.signature(AmplitudeAccessor.identify).parameters
    for name in ("sync", "ledger", "removed"):
        assert group[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert (group[name].default, group[name].annotation) == (
            user[name].default, user[name].annotation), name


def test_a_dry_run_without_a_ledger_file_creates_none(sb: Sandbox, path: Path) -> None:
    preview = run(companies("17"), sb, path, set=["plan"], dry_run=True)
    assert not path.exists()
    assert preview.sync.counts["new"] == 1 and preview.sync.held_users == 0
    assert "does not exist yet: every group is new" in repr(preview)
    assert sb.requests == []


_TEXT = st.text(alphabet=st.sampled_from(list('ab:"\\\x00é ,[]')), min_size=1, max_size=6)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(st.lists(st.tuples(_TEXT, _TEXT), min_size=1, max_size=8))
def test_every_group_has_its_own_key_that_reads_back(pairs: list[tuple[str, str]]) -> None:
    from amp_pandas._syncrun import group_users

    df = pd.DataFrame({"t": [t for t, _ in pairs], "v": [v for _, v in pairs], "n": 1})
    preview = df.amplitude.group_identify(group_type="t", group_value="v", set=["n"],
                                          dry_run=True)  # fmt: skip
    members = group_users(preview.plan)
    valid = [(t, v) for (t, v), state in zip(pairs, preview.plan.state, strict=True)
             if state == 0]  # fmt: skip
    # one key per distinct (type, value) pair, in order of first appearance
    assert len(members.keys) == len(dict.fromkeys(valid))
    read_back = []
    for key in members.keys.tolist():
        assert key.startswith("\x00\x00")
        read_back.append(tuple(json.loads(key[2:])))
    assert read_back == list(dict.fromkeys(valid))
