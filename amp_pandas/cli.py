"""The ``amp-pandas`` command: ``demo``, ``sandbox`` and ``identify FILE``.

Exit status: 0 when everything succeeded (for ``identify --dry-run``: no row is invalid);
1 when some rows did not succeed (or are invalid in a dry run), or Amplitude rejected the key;
2 for bad arguments or an unreadable file, with a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from ._amplitude import OPERATIONS

__all__ = ["main"]

_OPERATIONS = tuple((arg.replace("_", "-"), op) for arg, op in OPERATIONS.items())


class _UsageError(Exception):
    """A bad argument or file, reported on one line with exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amp-pandas",
        description="Update Amplitude user properties in bulk from a table.",
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
        help="send (or --dry-run) one identification per row of a CSV/Parquet/JSON-lines file",
        description=(
            "Each row of FILE becomes one identification. The API key comes from the "
            "AMPLITUDE_API_KEY environment variable."
        ),
    )
    ident.add_argument("file", help="a .csv, .parquet or .jsonl/.ndjson file")
    ident.add_argument("--user-id", metavar="COL")
    ident.add_argument("--device-id", metavar="COL")
    for flag, op in _OPERATIONS:
        ident.add_argument(
            f"--{flag}",
            metavar="COL[=PROP]",
            action="append",
            default=[],
            help=f"{op} column COL (as property PROP); repeatable",
        )
    ident.add_argument(
        "--literal",
        metavar="PROP=VALUE",
        action="append",
        default=[],
        help="$set PROP to VALUE on every row (VALUE read as JSON when it parses, else text)",
    )
    ident.add_argument("--unset", metavar="PROP", action="append", default=[])
    ident.add_argument("--group", metavar="TYPE=COL", action="append", default=[])
    ident.add_argument("--field", metavar="KEY=COL", action="append", default=[])
    ident.add_argument("--nulls", choices=("skip", "unset", "error"), default="skip")
    ident.add_argument("--region", choices=("standard", "eu"), default="standard")
    ident.add_argument("--server-url", metavar="URL")
    ident.add_argument("--dry-run", action="store_true", help="check and show; send nothing")
    ident.add_argument("--out", metavar="results.csv", help="write the per-row result here")
    ident.add_argument("--batch-size", type=int)
    ident.add_argument("--max-workers", type=int)
    ident.add_argument("--no-progress", action="store_true")
    return parser


def _pairs(values: Sequence[str], flag: str, *, need_value: bool) -> list[tuple[str, str]]:
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


def read_table(path: str) -> Any:
    """Read CSV, Parquet or JSON lines by extension; a one-line error otherwise."""
    import pandas as pd

    from .errors import InputFileError

    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"cannot read {path}: no such file")
    suffix = "".join(p.suffixes[-2:]).lower() if p.suffix == ".gz" else p.suffix.lower()
    try:
        if suffix in (".csv", ".csv.gz", ".txt"):
            return pd.read_csv(p)
        if suffix in (".parquet", ".pq"):
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise InputFileError(
                    "reading Parquet needs pyarrow: pip install pyarrow"
                ) from None
            return pd.read_parquet(p)
        if suffix in (".jsonl", ".ndjson", ".json", ".jsonl.gz"):
            return pd.read_json(p, lines=True)
    except InputFileError:
        raise
    except Exception as exc:  # pandas raises many types; one clear line is what helps
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputFileError(f"cannot read {path}: {first}") from exc
    raise InputFileError(
        f"cannot read {path}: unknown file type {p.suffix!r} (use .csv, .parquet or .jsonl)"
    )


def _identify(args: argparse.Namespace) -> int:
    import amp_pandas  # noqa: F401
    from amp_pandas import literal

    df = read_table(args.file)
    mapping: dict[str, Any] = {}
    for flag, _ in _OPERATIONS:
        pairs = _pairs(getattr(args, flag.replace("-", "_")), flag, need_value=False)
        if pairs:
            mapping[flag.replace("-", "_")] = {prop: col for col, prop in pairs}
    for prop, value in _pairs(args.literal, "literal", need_value=True):
        mapping.setdefault("set", {})[prop] = literal(_literal_value(value))
    options: dict[str, Any] = {}
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    if args.max_workers is not None:
        options["max_workers"] = args.max_workers
    preview = df.amplitude.identify(
        user_id=args.user_id,
        device_id=args.device_id,
        unset=args.unset or None,
        groups=dict(_pairs(args.group, "group", need_value=True)) or None,
        fields=dict(_pairs(args.field, "field", need_value=True)) or None,
        nulls=args.nulls,
        region=args.region,
        server_url=args.server_url,
        dry_run=True,
        progress=not args.no_progress,
        **mapping,
        **options,
    )
    if args.dry_run:
        print(repr(preview))
        return 1 if preview.summary["invalid"] else 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the summary printed below says the same
        result = preview.send()
    counts = result.status.value_counts()
    print("result: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if args.out:
        result.to_csv(args.out)
        print(f"per-row result written to {args.out}")
    bad = result[result.status != "success"]
    if len(bad):
        print(bad.head(10).to_string(), file=sys.stderr)
    return 0 if len(bad) == 0 else 1


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
        return _identify(args)
    except AuthenticationError as exc:
        print(f"amp-pandas: {exc}", file=sys.stderr)
        if exc.result is not None and getattr(args, "out", None):
            exc.result.to_csv(args.out)
        return 1
    except (AmpPandasError, _UsageError) as exc:
        print(f"amp-pandas: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("amp-pandas: interrupted", file=sys.stderr)
        return 130


def _entry() -> None:  # pragma: no cover - console script wrapper
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
