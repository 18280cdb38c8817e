"""The ``amp-pandas`` command: ``demo``, ``sandbox``, ``identify FILE``, ``group-identify FILE``
and ``ledger``.

Exit status: 0 when everything succeeded (for ``--dry-run``: no row is invalid);
1 when some rows did not succeed (or are invalid in a dry run), or Amplitude rejected the key;
2 for bad arguments or an unreadable file, with a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._amplitude import GROUP_OPERATIONS, OPERATIONS

__all__ = ["main"]

_OPERATIONS = tuple((arg.replace("_", "-"), op) for arg, op in OPERATIONS.items())
_GROUP_OPERATIONS = tuple((arg.replace("_", "-"), op) for arg, op in GROUP_OPERATIONS.items())
#: identify's other operations: group-identify takes them only to refuse them with a reason.
_GROUP_REFUSED = tuple(item for item in _OPERATIONS if item not in _GROUP_OPERATIONS)


class _UsageError(Exception):
    """A bad argument or file, reported on one line with exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amp-pandas",
        description="Update Amplitude user and group properties in bulk from a table.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole product against a local sandbox")
    demo.add_argument("--users", type=int, default=3000, help="rows in the demo frame")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")

    sandbox = sub.add_parser("sandbox", help="run a local Amplitude-compatible server")
    sandbox.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    sandbox.add_argument("--api-key", default=None, help="the key it accepts")

    ident = sub.add_parser(
        "identify",
        help="send (or --dry-run) one identification per row of a CSV/Parquet/JSON file",
        description=(
            "Each row of FILE becomes one identification. Every NAME=SOURCE pair reads as "
            "'NAME takes its value from SOURCE': --set plan=plan_col sets the user property "
            "'plan' from the column 'plan_col'; a bare --set plan uses the column 'plan'. "
            "CSV cells are read as written (see the README's 'Reading files'). The API key "
            "comes from the AMPLITUDE_API_KEY environment variable."
        ),
    )
    ident.add_argument("file", help="a .csv, .tsv, .parquet, .jsonl/.ndjson or .json file")
    ident.add_argument("--user-id", metavar="COL", help="the column of user ids")
    ident.add_argument("--device-id", metavar="COL", help="the column of device ids")
    for flag, op in _OPERATIONS:
        ident.add_argument(
            f"--{flag}",
            metavar="PROP[=COL]",
            action="append",
            default=[],
            help=f"{op} user property PROP from column COL (default: the column PROP); repeatable",
        )
    ident.add_argument("--group", metavar="TYPE=COL", action="append", default=[],
                       help="group type TYPE from column COL; repeatable")
    ident.add_argument("--field", metavar="KEY=COL", action="append", default=[],
                       help="top-level field KEY (country, platform...) from column COL")
    ident.add_argument("--chunk-rows", type=int, default=100_000, metavar="N",
                       help="rows read, checked and sent at a time (memory follows N; "
                       "default 100000)")
    _add_common(ident, "user", "identifications per request", "send here instead (e.g. a sandbox)")

    ledger = sub.add_parser("ledger",
                            help="list, show, forget or unlock the sync jobs of the ledger")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True)
    for name, what in (("list", "the jobs: endpoint, users, last run, outcomes"),
                       ("show", "the users of job JOB: outcome and what a revert undoes"),
                       ("forget", "forget job JOB: its next run starts afresh"),
                       ("unlock", "release job JOB's lock, held by a run on another host "
                        "that will never finish")):  # fmt: skip
        cmd = ledger_sub.add_parser(name, help=what)
        if name != "list":
            cmd.add_argument("job", metavar="JOB", help="the job's name (or its id)")
        cmd.add_argument("--ledger", metavar="PATH", help="the ledger file")
    _add_group_identify(sub)
    return parser


def _add_group_identify(sub: Any) -> None:
    """The ``group-identify FILE`` subcommand: its options read as ``identify``'s do."""
    group = sub.add_parser(
        "group-identify",
        help="send (or --dry-run) one group identification per row of a file (group properties)",
        description=(
            "Each row of FILE becomes one group identification, posted to Amplitude's Group "
            "Identify API. Every NAME=SOURCE pair reads as 'NAME takes its value from SOURCE': "
            "--set plan=plan_col sets the group property 'plan' from the column 'plan_col'; a "
            "bare --set plan uses the column 'plan'. The group value column is read as text. "
            "The API key comes from the AMPLITUDE_API_KEY environment variable."
        ),
    )
    group.add_argument("file", help="a .csv, .tsv, .parquet, .jsonl/.ndjson or .json file")
    kind = group.add_mutually_exclusive_group(required=True)
    kind.add_argument("--group-type", metavar="TYPE", help="the group type of every row")
    kind.add_argument("--group-type-column", metavar="COL", help="the column of group types")
    group.add_argument("--group-value", metavar="COL", required=True,
                       help="the column of group values (names or ids)")
    for flag, op in _GROUP_OPERATIONS:
        group.add_argument(
            f"--{flag}",
            metavar="PROP[=COL]",
            action="append",
            default=[],
            help=f"{op} group property PROP from column COL (default: the column PROP); "
            "repeatable",
        )
    for flag, _ in _GROUP_REFUSED:  # refused by group_identify, which says why
        group.add_argument(f"--{flag}", action="append", default=[], help=argparse.SUPPRESS)
    _add_common(group, "group", "group identifications per request (at most 1024)",
                "send here instead (the full .../groupidentify URL, e.g. a sandbox's)")


def _add_common(
    command: argparse.ArgumentParser, unit: str, batch_help: str, url_help: str
) -> None:
    """The options ``identify`` and ``group-identify`` share: constants, reading, where and
    how to send, and sync. ``unit`` is what a row identifies (user or group)."""
    command.add_argument(
        "--literal",
        metavar="PROP=VALUE",
        action="append",
        default=[],
        help="$set PROP to VALUE on every row (VALUE read as JSON when it parses, else text)",
    )
    command.add_argument("--unset", metavar="PROP", action="append", default=[],
                         help=f"$unset {unit} property PROP on every row; repeatable")
    command.add_argument(
        "--missing",
        metavar="TEXT",
        action="append",
        default=[],
        help="a CSV text that means 'missing' besides the empty cell (e.g. NULL); repeatable",
    )
    command.add_argument("--nulls", choices=("skip", "unset", "error"), default="skip",
                         help="what a missing cell does (default: skip it)")
    command.add_argument("--region", choices=("standard", "eu"), default="standard")
    command.add_argument("--server-url", metavar="URL", help=url_help)
    command.add_argument("--dry-run", action="store_true", help="check and show; send nothing")
    command.add_argument("--out", metavar="RESULT.csv", help="write the per-row result here")
    command.add_argument("--batch-size", type=int, help=batch_help)
    command.add_argument("--max-workers", type=int, help="requests in flight at once")
    command.add_argument("--retry-ambiguous", action="store_true",
                         help="also retry $add/$append/$prepend rows whose outcome is unknown")
    command.add_argument("--no-progress", action="store_true")
    command.add_argument("--sync", metavar="NAME",
                         help=f"run as sync job NAME: send only new and changed {unit}s, "
                              "remember what was sent in the ledger")  # fmt: skip
    command.add_argument("--removed", choices=("keep", "revert"), default="keep",
                         help=f"with --sync: what becomes of {unit}s the job sent before that "
                              "are absent now (default: keep them as they are; revert undoes "
                              "what the job set)")  # fmt: skip
    command.add_argument("--ledger", metavar="PATH",
                         help="the ledger file (default: $AMP_PANDAS_LEDGER, else the user's "
                              "data directory)")  # fmt: skip


#: Python spellings in library messages, and how the command line says the same.
_CLI_PHRASES: tuple[tuple[str, str], ...] = (
    (r"Call \.send\(\) to send", "Run again without --dry-run to send"),
    (r"\(A dry run, dry_run=True, needs no key\.\)", "(A dry run, --dry-run, needs no key.)"),
    (r"pass api_key=\S* or set", "set"),
    (r"api_key= or the AMPLITUDE_API_KEY", "the AMPLITUDE_API_KEY"),
    (r"pass (\w+)=(True)?", r"use \1="),
    (r"use literal\([^)]*\)", "use --literal PROP=VALUE"),
    (r"literal\(\.\.\.\)", "--literal PROP=VALUE"),
    # a constant named as a source (the operations table, a problem's column): its value
    (r"literal\(('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^()]*)\)", r"\1 (constant)"),
    (r"\bforce=True", "a new run"),
    (r"(?<![\w-])sync= a job name", "--sync NAME"),
    (r"(?<![\w-])(sync|removed|ledger)=(?=\S)", r"--\1 "),
    (r"(?<![\w-])(sync|removed|ledger)=", r"--\1"),
)
_ARG_FLAGS = {"groups": "group", "fields": "field", "max_workers": "max-workers"}


def _cli_table() -> tuple[tuple[re.Pattern[str], str], ...]:
    """The phrases above, then every option name of ``identify`` (and ``group-identify``) as
    its flag."""
    table = [(re.compile(p), r) for p, r in _CLI_PHRASES]
    commands = next(
        a for a in _parser()._subparsers._actions  # type: ignore[union-attr]
        if isinstance(a, argparse._SubParsersAction)
    ).choices
    dests = sorted(
        {a.dest for name in ("identify", "group-identify") for a in commands[name]._actions
         if "_" in a.dest},
        key=len,
        reverse=True,
    )
    for dest in dests:
        flag = "--" + _ARG_FLAGS.get(dest, dest).replace("_", "-")
        table.append((re.compile(rf"(?<![\w-])use {dest}=(True)?"), f"use {flag}"))
        table.append((re.compile(rf"(?<![\w-]){dest}=(True)?(?=$|[\s.;,)])"), flag))
        table.append((re.compile(rf"(?<![\w-]){dest}=(True)?"), flag + " "))
        table.append((re.compile(rf"^{dest}\b"), flag))
    for dest in ("set", "add", "append", "prepend", "remove", "unset", "groups", "fields",
                 "nulls", "region"):
        flag = "--" + _ARG_FLAGS.get(dest, dest)
        table.append((re.compile(rf"^{dest}(?=:| must| expects| takes)"), flag))
    return tuple(table)


_CLI_WORDS: tuple[tuple[re.Pattern[str], str], ...] | None = None


def cli_words(message: str) -> str:
    """A library message as the command line says it: flags instead of Python arguments.

    Examples
    --------
    >>> cli_words("set_once: 'x' is not a column label; use literal('x') for a constant")
    "--set-once: 'x' is not a column label; use --literal PROP=VALUE for a constant"
    >>> cli_words("may have been applied; pass retry_ambiguous=True to retry")
    'may have been applied; use --retry-ambiguous to retry'
    >>> cli_words("set  plan  literal('a) b')  1 non-null")
    "set  plan  'a) b' (constant)  1 non-null"
    """
    global _CLI_WORDS
    if _CLI_WORDS is None:
        _CLI_WORDS = _cli_table()
    for pattern, replacement in _CLI_WORDS:
        message = pattern.sub(replacement, message)
    return message


def _pairs(values: Sequence[str], flag: str, *, need_value: bool) -> list[tuple[str, str]]:
    """``NAME=SOURCE`` items as (NAME, SOURCE); a bare ``NAME`` is (NAME, NAME) when allowed."""
    out = []
    for item in values:
        if "=" in item:
            left, right = item.split("=", 1)
        elif need_value:
            raise _UsageError(f"--{flag} expects NAME=VALUE, got {item!r}")
        else:
            left = right = item
        if not left or not right:
            raise _UsageError(f"--{flag} expects NAME=VALUE, got {item!r}")
        out.append((left, right))
    return out


def _literal_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def check_writable(path: str) -> None:
    """Refuse an ``--out`` path that cannot be written, before anything is sent."""
    p = Path(path)
    if p.is_dir():
        raise _UsageError(f"--out {path}: is a folder; name a file such as {p / 'result.csv'}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise _UsageError(f"--out {path}: the folder {parent} does not exist")
    existed = p.exists()
    try:
        with open(p, "a"):
            pass
    except OSError as exc:
        raise _UsageError(f"--out {path}: cannot be written ({exc.strerror})") from None
    if not existed:
        p.unlink()


def _mapping(
    args: argparse.Namespace, operations: Sequence[tuple[str, str]] = _OPERATIONS
) -> dict[str, Any]:
    """The identify() (or group_identify()) mapping from the options; a property named twice
    is a usage error."""
    from amp_pandas import literal

    mapping: dict[str, Any] = {}
    seen: dict[str, str] = {}

    def claim(prop: str, option: str) -> None:
        if prop in seen:
            raise _UsageError(
                f"property {prop!r} is given by both {seen[prop]} and {option}; "
                "each property may come from one option only"
            )
        seen[prop] = option

    for flag, _ in operations:
        items = getattr(args, flag.replace("-", "_"))
        for prop, column in _pairs(items, flag, need_value=False):
            claim(prop, f"--{flag} {prop}={column}" if prop != column else f"--{flag} {prop}")
            mapping.setdefault(flag.replace("-", "_"), {})[prop] = column
    for prop, value in _pairs(args.literal, "literal", need_value=True):
        claim(prop, f"--literal {prop}=...")
        mapping.setdefault("set", {})[prop] = literal(_literal_value(value))
    for prop in args.unset:
        claim(prop, f"--unset {prop}")
    if args.unset:
        mapping["unset"] = list(args.unset)
    for option, key in (("group", "groups"), ("field", "fields")):
        pairs = _pairs(getattr(args, option, []), option, need_value=True)
        names = [name for name, _ in pairs]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise _UsageError(f"--{option} {twice[0]} is given twice; give each one once")
        if pairs:
            mapping[key] = dict(pairs)
    return mapping


class _Terminated(KeyboardInterrupt):
    """SIGTERM arrived where the send could not stop at a safe point."""


@contextmanager
def _sigterm_as_interrupt(defer: bool = False) -> Iterator[dict[str, bool]]:
    """Treat SIGTERM like Ctrl-C while sending: the send stops at a safe point.

    A scheduler's or ``timeout``'s SIGTERM then ends the send the way Ctrl-C does: requests in
    flight are awaited, the partial result is written, and ``not_sent`` rows can be re-run. A
    background job starts with SIGINT ignored; the send's own Ctrl-C handling only takes over the
    default handler, so the default is put back for the send.
    """
    state = {"terminated": False}

    def handler(signum: int, frame: Any) -> None:
        state["terminated"] = True
        current = signal.getsignal(signal.SIGINT)
        if callable(current) and current is not signal.default_int_handler:
            current(signal.SIGINT, frame)  # the send's own Ctrl-C handling: stop at a safe point
        elif not defer:
            raise _Terminated
        # else: a file read in chunks is being read or checked; the next chunk boundary stops
        # (nothing of the next chunk is sent, the rows not sent are marked so)

    try:
        previous_term = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave the signals alone
        yield state
        return
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        if previous_int == signal.SIG_IGN:
            signal.signal(signal.SIGINT, previous_int)


def _whole_file(args: argparse.Namespace, mapping: dict[str, Any]) -> Any:
    """The whole file as one frame, read by the same rule as the streamed path, for runs that
    need every row at once (a sync ledger compares the whole run with the last one)."""
    from ._files import read_table

    keep_text = [c for c in (args.user_id, args.device_id) if c]
    keep_text += list(mapping.get("groups", {}).values())
    return read_table(args.file, missing=args.missing, keep_text=keep_text)


def _identify_whole(
    args: argparse.Namespace, mapping: dict[str, Any], options: dict[str, Any]
) -> int:
    """``identify`` on the whole file at once (a ``--sync`` run), read by the same rule."""
    df = _whole_file(args, mapping)
    preview = df.amplitude.identify(
        user_id=args.user_id,
        device_id=args.device_id,
        dry_run=True,
        **_shared_options(args),
        **mapping,
        **options,
    )
    return _finish(args, preview)


def _shared_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options ``identify`` and ``group-identify`` pass the library alike, whichever path
    (streamed, whole file, groups): nulls, where to send, the progress bar."""
    return {"nulls": args.nulls, "region": args.region, "server_url": args.server_url,
            "progress": not args.no_progress}  # fmt: skip


def _sync_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--sync``, ``--removed`` and ``--ledger`` as keyword arguments."""
    if args.sync is not None:
        return {"sync": args.sync, "removed": args.removed, "ledger": args.ledger}
    if args.removed != "keep" or args.ledger:
        raise _UsageError("--removed and --ledger need --sync NAME")
    return {}


def _identify(args: argparse.Namespace) -> int:
    """Check every row of the file a chunk at a time, then send chunk by chunk (or only print
    the verdict with ``--dry-run``); memory follows ``--chunk-rows``, not the file."""
    import amp_pandas  # noqa: F401  (registers df.amplitude)

    from ._stream import run_file
    from .errors import InterruptedSendWarning

    if args.out:
        check_writable(args.out)
    mapping = _mapping(args)
    options: dict[str, Any] = {}
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    if args.max_workers is not None:
        options["max_workers"] = args.max_workers
    if args.retry_ambiguous:
        options["retry_ambiguous"] = True
    if args.sync is not None:
        options.update(sync=args.sync, removed=args.removed, ledger=args.ledger)
        # A sync run compares the whole run with the ledger's last one: the whole file at once
        return _identify_whole(args, mapping, options)
    if args.removed != "keep" or args.ledger:
        raise _UsageError("--removed and --ledger need --sync NAME")
    arguments = dict(
        user_id=args.user_id,
        device_id=args.device_id,
        **_shared_options(args),
        **mapping,
        **options,
    )
    bad: list[Any] = []

    def keep_bad(result: Any) -> None:
        if sum(len(b) for b in bad) < 10:
            bad.append(result[result.status != "success"].head(10))

    with _sigterm_as_interrupt(defer=True) as state, warnings.catch_warnings(
        record=True
    ) as caught:
        warnings.simplefilter("always")
        try:
            outcome = run_file(
                "identify",
                args.file,
                format=None,
                chunk_rows=args.chunk_rows,
                column_types=None,
                missing_values=args.missing,
                out=args.out,
                problem_rows=5,
                dry_run=args.dry_run,
                arguments=arguments,
                keep_result=False,
                on_chunk=keep_bad,
                stop_requested=lambda: state["terminated"],
            )
        except KeyboardInterrupt:
            if state["terminated"]:
                raise _Terminated from None
            raise
    for w in caught:
        if not issubclass(w.category, InterruptedSendWarning) and args.dry_run:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if args.dry_run:
        if outcome.single is not None:  # the file fitted in one chunk: the whole preview
            print(cli_words(repr(outcome.single)))
            return 1 if outcome.summary["invalid"] else 0
        print(cli_words(repr(outcome)).replace(" — nothing sent", " (dry run, nothing sent)"))
        if outcome.first is not None:
            print("First identification:")
            print("  " + json.dumps(outcome.first, ensure_ascii=False))
        print(f"Run again without --dry-run to send the {outcome.summary['valid']:,} valid rows.")
        return 1 if outcome.summary["invalid"] else 0
    interrupted = any(issubclass(w.category, InterruptedSendWarning) for w in caught)
    counts = outcome[outcome > 0].sort_values(ascending=False, kind="stable")
    print("result: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if args.out:
        print(f"per-row result written to {args.out}")
    if bad:
        import pandas as pd

        shown = pd.concat(bad).head(10).copy()
        if len(shown):
            shown["error"] = shown["error"].map(
                lambda r: cli_words(r) if isinstance(r, str) else r
            )
            print(shown.to_string(), file=sys.stderr)
    if interrupted:
        how = "terminated" if state["terminated"] else "interrupted"
        print(
            f"amp-pandas: {how}; rows not sent are marked not_sent"
            + (f" in {args.out}" if args.out else "")
            + ": run again on those rows to send them",
            file=sys.stderr,
        )
        return 143 if state["terminated"] else 130
    return 0 if int(outcome.get("success", 0)) == int(outcome.sum()) else 1


def _finish(args: argparse.Namespace, preview: Any) -> int:
    """Show a dry run, or send the preview (SIGTERM stops it like Ctrl-C) and report."""
    from .errors import InterruptedSendWarning

    if args.dry_run:
        print(cli_words(repr(preview)))
        return 1 if preview.summary["invalid"] else 0
    with _sigterm_as_interrupt() as state, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = preview.send()
    interrupted = any(issubclass(w.category, InterruptedSendWarning) for w in caught)
    counts = result.status.value_counts()
    print("result: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if args.out:
        result.to_csv(args.out)
        print(f"per-row result written to {args.out}")
    removed = getattr(result, "removed", None)
    if removed is not None and len(removed):
        counts = removed.status.value_counts()
        noun = "groups" if "group_type" in removed.columns else "users"
        print(f"removed {noun}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    bad = result[~result.status.isin(("success", "unchanged"))]
    if len(bad):
        shown = bad.head(10).copy()
        shown["error"] = shown["error"].map(lambda r: cli_words(r) if isinstance(r, str) else r)
        print(shown.to_string(), file=sys.stderr)
    if interrupted:
        how = "terminated" if state["terminated"] else "interrupted"
        print(
            f"amp-pandas: {how}; rows not sent are marked not_sent"
            + (f" in {args.out}" if args.out else "")
            + ": run again on those rows to send them",
            file=sys.stderr,
        )
        return 143 if state["terminated"] else 130
    return 0 if len(bad) == 0 else 1


def _group_identify(args: argparse.Namespace) -> int:
    import amp_pandas  # noqa: F401  (registers df.amplitude)
    from amp_pandas import literal

    from ._files import read_table

    if args.out:
        check_writable(args.out)
    mapping = _mapping(args, _GROUP_OPERATIONS + _GROUP_REFUSED)
    keep_text = [c for c in (args.group_type_column, args.group_value) if c]
    df = read_table(args.file, missing=args.missing, keep_text=keep_text)
    group_type: Any = (
        args.group_type_column if args.group_type is None else literal(args.group_type)
    )
    options: dict[str, Any] = {}
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    if args.max_workers is not None:
        options["max_workers"] = args.max_workers
    if args.retry_ambiguous:
        options["retry_ambiguous"] = True
    options.update(_sync_options(args))
    preview = df.amplitude.group_identify(
        group_type=group_type,
        group_value=args.group_value,
        dry_run=True,
        **_shared_options(args),
        **mapping,
        **options,
    )
    return _finish(args, preview)


def _ledger(args: argparse.Namespace) -> int:
    """``amp-pandas ledger list|show JOB|forget JOB|unlock JOB``."""
    import pandas as pd

    from ._ledger import Ledger
    from ._sync import key_label

    job: str | int | None = getattr(args, "job", None)
    if isinstance(job, str) and job.isdigit():
        job = int(job)
    with Ledger(args.ledger) as ledger:
        if args.ledger_command == "list":
            jobs = ledger.jobs()
            if not len(jobs):
                print(f"no sync jobs in {ledger.path}")
                return 0
            shown = jobs[["id", "job", "endpoint_host", "users", "members", "last_run",
                          "acknowledged", "failed", "unknown", "in_flight"]].copy()  # fmt: skip
            shown["last_run"] = shown["last_run"].dt.strftime("%Y-%m-%d %H:%M:%S UTC")
            print(shown.to_string(index=False))
            return 0
        assert job is not None
        if args.ledger_command == "show":
            users = ledger.users(job)
            users["key"] = users["key"].map(key_label)
            with pd.option_context("display.max_colwidth", 80):
                print(users.drop(columns=["digest"]).to_string(index=False))
            return 0
        if args.ledger_command == "unlock":
            held = ledger.unlock(job)
            if held is None:
                print(f"sync job {job!r} holds no lock")
            else:
                print(f"released the lock of sync job {job!r} (process {held[0]} on {held[1]}); "
                      "its users in flight are now unknown")  # fmt: skip
            return 0
        n = ledger.forget(job)
        print(f"forgot sync job {job!r} ({n:,} users); its next run sends every user")
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from .errors import AmpPandasError, AuthenticationError

    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from ._demo import run_demo

            return run_demo(args.users, progress=not args.no_progress)
        if args.command == "sandbox":
            from .sandbox import serve

            kwargs = {"port": args.port}
            if args.api_key:
                kwargs["api_key"] = args.api_key
            serve(**kwargs)
            return 0
        if args.command == "group-identify":
            return _group_identify(args)
        if args.command == "ledger":
            return _ledger(args)
        return _identify(args)
    except AuthenticationError as exc:
        print(f"amp-pandas: {cli_words(str(exc))}", file=sys.stderr)
        if exc.result is not None and getattr(args, "out", None):
            exc.result.to_csv(args.out)
        return 1
    except (AmpPandasError, _UsageError) as exc:
        print(f"amp-pandas: {cli_words(str(exc))}", file=sys.stderr)
        return 2
    except _Terminated:
        print("amp-pandas: terminated; no result was written", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("amp-pandas: interrupted; no result was written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (``| head``): stop quietly, as Unix tools do,
        # and keep Python from complaining again when it flushes stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _entry() -> None:  # pragma: no cover - console script wrapper
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
