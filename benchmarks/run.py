"""amp_pandas benchmarks: one command, every figure side by side on the same machine.

Run from the repository root::

    python benchmarks/run.py            # the full run (~15 min); rewrites the table in
                                        # benchmarks/README.md between its marker comments
    python benchmarks/run.py --quick    # small sizes, seconds; prints the table, writes nothing
    python benchmarks/run.py --quick --readme /tmp/README.md   # ... or writes it there

Sections: build + encode (no network), end to end against a sandbox in another process (0 ms and
100 ms of added latency), request body encoding, memory (a fresh process sending 1M rows) and
throttling (1% of ids answered 429 once). The official ``amplitude-analytics`` SDK is a
benchmark-only dependency (``pip install -r benchmarks/requirements.txt``); without it its
columns say "not installed".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from _reference import (  # noqa: E402
    BATCH_SIZE,
    MAX_WORKERS,
    Spread,
    check_same_identifications,
    machine,
    reference_frame,
    sdk_drops,
    sdk_version,
)
from bench_end_to_end import NOOP  # noqa: E402

START_MARKER = (
    "<!-- benchmark-results:start (written by benchmarks/run.py; edits inside are lost) -->"
)
END_MARKER = "<!-- benchmark-results:end -->"
SECTIONS = ("build", "e2e", "memory", "throttling")
#: Headings of the generated Markdown, in order (the smoke test checks each is present).
HEADINGS = (
    "### Run",
    "### Build + encode (no network)",
    "### End to end (sandbox in another process)",
    "### Request body encoding",
    "### Memory",
    "### Throttling",
    "### The official SDK and pandas values",
    "### Targets",
)

FULL: dict[str, Any] = {
    "build_sizes": [10_000, 100_000, 1_000_000],
    "build_slow_sizes": [10_000, 100_000],
    "build_repeats": 5,
    "e2e_latencies": [0.0, 0.1],
    "e2e_sizes": [10_000, 100_000, 1_000_000],
    "e2e_slow_sizes": [10_000, 100_000],
    "e2e_repeats": 5,
    "slow_repeats": 3,
    "capacity_requests": 300,
    "memory_rows": 1_000_000,
    "memory_repeats": 3,
    "throttle_rows": 100_000,
    "throttle_pause": 2.0,
    "throttle_repeats": 3,
}
QUICK: dict[str, Any] = {
    "build_sizes": [2_000, 10_000],
    "build_slow_sizes": [2_000],
    "build_repeats": 2,
    "e2e_latencies": [0.0, 0.1],
    "e2e_sizes": [2_000],
    "e2e_slow_sizes": [2_000],
    "e2e_repeats": 1,
    "slow_repeats": 1,
    "capacity_requests": 20,
    "memory_rows": 20_000,
    "memory_repeats": 1,
    "throttle_rows": 5_000,
    "throttle_pause": 0.5,
    "throttle_repeats": 1,
}
MB = 1_000_000


# -- running ----------------------------------------------------------------------------------


def run(settings: dict[str, Any], sections: set[str], *, sdk: bool,
        log: Callable[[str], None]) -> dict[str, Any]:
    """Measure the chosen sections; return every figure."""
    import bench_build
    import bench_end_to_end
    import bench_memory
    import bench_throttling
    from _sandbox_process import SandboxProcess

    check_same_identifications(reference_frame(500), sdk=sdk)
    results: dict[str, Any] = {"machine": machine(), "settings": settings,
                               "sdk": sdk and sdk_version() is not None}
    s = settings
    with SandboxProcess() as sandbox:
        if "memory" in sections:
            # First, while this process is small: a child's ru_maxrss includes the parent's size.
            log(f"memory ({s['memory_rows']:,} rows, fresh process) ...")
            results["memory"] = bench_memory.measure(sandbox, s["memory_rows"],
                                                     s["memory_repeats"])
        if "build" in sections:
            log("build + encode ...")
            results["build"] = bench_build.measure(
                s["build_sizes"], s["build_slow_sizes"], s["build_repeats"],
                slow_repeats=s["slow_repeats"], sdk=sdk, log=log,
            )
        if "e2e" in sections:
            log("end to end ...")
            results["e2e"] = bench_end_to_end.measure(
                sandbox, s["e2e_latencies"], s["e2e_sizes"], s["e2e_slow_sizes"],
                s["e2e_repeats"], slow_repeats=s["slow_repeats"], sdk=sdk, log=log,
            )
            results["encoding"] = bench_end_to_end.encoding_sizes()
            results["sandbox_capacity"] = sandbox_capacity(s["capacity_requests"], log)
        if "throttling" in sections:
            log("throttling ...")
            results["throttling"] = bench_throttling.measure(
                sandbox, s["throttle_rows"], s["throttle_pause"], s["throttle_repeats"],
                log=log,
            )
    if sdk and sdk_version() is not None:
        results["sdk_drops"] = sdk_drops()
    return results


def sandbox_capacity(n_requests: int, log: Callable[[str], None]) -> dict[str, Any]:
    """The sandbox's own capacity, from the sandbox engineer's ``sandbox_throughput.measure``."""
    try:
        import sandbox_throughput

        figures = dict(
            sandbox_throughput.measure(n_requests, batch=BATCH_SIZE, workers=MAX_WORKERS)
        )
    except Exception as exc:  # another engineer's module: report, don't fail the run
        return {"error": f"{type(exc).__name__}: {exc}"}
    log(f"  sandbox capacity: {figures.get('identifications_per_s', 0):,.0f} identifications/s")
    return figures


# -- rendering --------------------------------------------------------------------------------


def _num(x: float) -> str:
    if x >= 10_000_000:
        return f"{x / 1e6:.0f} M"
    if x >= 1_000_000:
        return f"{x / 1e6:.2f} M"
    if x >= 10_000:
        return f"{x / 1e3:.0f} k"
    if x >= 1_000:
        return f"{x / 1e3:.1f} k"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _spread(value: Spread, fmt: Callable[[float], str] = _num) -> str:
    if len(value.values) == 1:
        return fmt(value.median)
    return f"{fmt(value.median)} ({fmt(value.low)}–{fmt(value.high)})"


def _sizes(sizes: list[int]) -> str:
    return " and ".join(f"{n:,}" for n in sizes)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _find(table: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for row in table:
        if all(row.get(k) == v for k, v in match.items()) and "note" not in row:
            return row
    return None


def render(results: dict[str, Any], *, quick: bool) -> str:
    m = results["machine"]
    s = results["settings"]
    lines = ["### Run", ""]
    lines += _table(["", ""], [[k, str(v)] for k, v in m.items()])
    lines += ["", (
        "Figures are medians of several runs, with (min–max), from a **2-core machine shared with "
        "other engineers' test suites**: absolute times are noisy; the ratios, measured side by "
        "side in the same run with interleaved repeats, are the meaningful part."
        if not quick else
        "**Quick run** (`--quick`): small sizes and single runs, to check that the benchmarks "
        "work. These figures are not representative."
    ), ""]

    # build
    lines += ["### Build + encode (no network)", ""]
    if "build" in results:
        body = []
        for row in results["build"]:
            if "note" in row:
                body.append([f"{row['rows']:,}", row["method"], row["note"], "", ""])
                continue
            ours = _find(results["build"], rows=row["rows"], method="amp_pandas")
            ratio = "" if ours is None or row["method"] == "amp_pandas" else (
                f"{ours['rows_per_s'].median / row['rows_per_s'].median:.1f}×")
            body.append([f"{row['rows']:,}", row["method"], _spread(row["rows_per_s"]),
                         _spread(row["cpu_us_per_row"]), ratio])
        lines += _table(["rows", "method", "rows/s", "CPU µs/row", "amp_pandas faster by"], body)
        lines += ["", f"Runs: {s['build_repeats']} per size (at most 3 at 1M rows); "
                  f"{s['slow_repeats']} for the loop and the SDK, measured at "
                  f"{_sizes(s['build_slow_sizes'])} rows only (at 1M rows they would take "
                  "minutes). Every request body is built: amp_pandas checks and encodes every "
                  "row into multipart bodies of 1000; the loop and the floor produce the JSON "
                  "text of each batch of 1000; the SDK its HTTP V2 JSON bodies.", ""]
    else:
        lines += ["not run (`--sections`)", ""]

    # end to end
    lines += ["### End to end (sandbox in another process)", ""]
    if "e2e" in results:
        body = []
        for row in results["e2e"]:
            lat = f"{row['latency_ms']:.0f} ms"
            if "note" in row:
                body.append([lat, f"{row['rows']:,}", row["client"], row["note"]] + [""] * 7)
                continue
            sdk = _find(results["e2e"], latency_ms=row["latency_ms"], rows=row["rows"],
                        client="official SDK")
            ratio = "" if sdk is None or row["client"] in ("official SDK", NOOP) else (
                f"{row['rows_per_s'].median / sdk['rows_per_s'].median:.1f}×")
            body.append([
                lat, f"{row['rows']:,}", row["client"], _spread(row["rows_per_s"]), ratio,
                _spread(row["client_cpu_us"]), _spread(row["server_cpu_us"]),
                f"{row['server_busy'].median:.0%}",
                _spread(row["requests"], lambda x: f"{x:,.0f}"),
                f"{row['bytes_per_identification'].median:.0f}", row["applied"],
            ])
        lines += _table(["added latency", "rows", "client", "rows/s", "vs SDK",
                         "client CPU µs/row", "server CPU µs/row", "server CPU busy",
                         "requests", "body bytes/identification", "applied"], body)
        bound = MAX_WORKERS * BATCH_SIZE / 0.1
        lines += ["", (
            f"Runs: {s['e2e_repeats']} per size for amp_pandas (at most 3 at 1M rows), "
            f"{s['slow_repeats']} for the SDK and the loop, which run at "
            f"{_sizes(s['e2e_slow_sizes'])} rows only. Client CPU is this process's CPU time "
            "(all threads); the server runs in its own process and its CPU is shown apart "
            "(*server CPU busy*: server CPU seconds per second of the run; near 100% the "
            "server, one Python process under one GIL, is the bottleneck). "
            f"amp_pandas: defaults (batches of {BATCH_SIZE}, {MAX_WORKERS} requests in flight, "
            "multipart). SDK: `flush_queue_size=1000`, its own pool of 16 sending threads, a new "
            "connection per request; it also sends smaller batches whenever its consumer thread "
            "finds fewer than 1000 events waiting. Loop: sequential form-urlencoded posts of "
            "1000 over a keep-alive session. The concurrency bound at 100 ms is "
            f"max_workers × batch_size / latency = {bound:,.0f} rows/s. After every run the "
            "sandbox had applied every row, and a sample profile held the expected properties. "
            "*amp_pandas → no-op server* is a diagnostic: the same call against a server that "
            "reads each body, waits the added latency and answers 200 without parsing anything "
            "(what the client alone can do)."
        ), ""]
        cap = results.get("sandbox_capacity", {})
        if "identifications_per_s" in cap:
            lines += [f"The sandbox's own capacity (`benchmarks/sandbox_throughput.py`: its own "
                      f"identification shape, pre-built bodies, {cap.get('requests', '?')} "
                      f"requests "
                      f"of {cap.get('batch', '?')} from {cap.get('workers', '?')} threads): "
                      f"**{_num(cap['identifications_per_s'])} identifications/s**.", ""]
        elif "error" in cap:
            lines += [f"`sandbox_throughput.measure` failed: {cap['error']}", ""]
    else:
        lines += ["not run (`--sections`)", ""]

    lines += ["### Request body encoding", ""]
    if "encoding" in results:
        body = [[row["encoding"], f"{row['bytes_per_identification']:.1f}",
                 f"+{row['overhead_pct']:.0f}%", _spread(row["cpu_us"])]
                for row in results["encoding"]]
        lines += _table(["body", "bytes/identification", "vs the JSON text",
                         "CPU µs/identification to encode"], body)
        lines += ["", "The same 1000 identifications (amp_pandas' compact JSON) and key per "
                  "body. Form encoding percent-escapes every `{ } \" : ,` of the JSON.", ""]
    else:
        lines += ["not run (`--sections e2e`)", ""]

    lines += ["### Memory", ""]
    if "memory" in results:
        mem = results["memory"]
        runs = ", ".join(f"{p / MB:,.0f}" for p in mem["peak_rss_runs"])
        lines += _table(
            ["rows", "frame `memory_usage(deep=True)`", "RSS after imports", "RSS with the frame",
             "peak RSS after the build", "peak RSS after the send", "`ru_maxrss`",
             "peak − frame", "peak − RSS with the frame"],
            [[f"{mem['rows']:,}", f"{mem['frame_bytes'] / MB:,.0f} MB",
              f"{mem['rss_after_imports'] / MB:,.0f} MB", f"{mem['rss_with_frame'] / MB:,.0f} MB",
              f"{mem['peak_rss_after_build'] / MB:,.0f} MB", f"{mem['peak_rss'] / MB:,.0f} MB",
              f"{mem['ru_maxrss'] / MB:,.0f} MB",
              f"{(mem['peak_rss'] - mem['frame_bytes']) / MB:,.0f} MB",
              f"{(mem['peak_rss'] - mem['rss_with_frame']) / MB:,.0f} MB"]],
        )
        lines += ["", f"A fresh process imports pandas and amp_pandas, builds the frame and sends "
                  "it (no added latency): `identify(..., dry_run=True)` then `preview.send()`, "
                  "which is what `identify` does without a dry run, so the peak can be "
                  "attributed. Peaks are the child's own high-water mark (`VmHWM`); "
                  "`ru_maxrss` agrees when the child is spawned from a small process (this "
                  "section runs first), but on Linux it includes the parent's size at spawn "
                  f"time. Median of {len(mem['peak_rss_runs'])} processes "
                  f"(peaks: {runs} MB). MB = 10⁶ bytes.", ""]
    else:
        lines += ["not run (`--sections`)", ""]

    lines += ["### Throttling", ""]
    if "throttling" in results:
        t = results["throttling"]

        def secs(x: float) -> str:
            return f"{x:.2f} s"

        def count(x: float) -> str:
            return f"{x:,.0f}"

        body = []
        for kind, label, key in (("unthrottled", "unthrottled", "unthrottled_s"),
                                 ("throttled, pause 0", "throttled, `throttle_pause=0`",
                                  "throttled_no_pause_s"),
                                 ("throttled", f"throttled, `throttle_pause={t['pause']:g}`",
                                  "throttled_s")):
            body.append([label, _spread(t[key], secs), _spread(t["requests"][kind], count),
                         _spread(t["received"][kind], count)])
        lines += _table(["run", "time", "requests", "identifications the server received"],
                        body)
        lines += [""]
        lines += _table(
            ["rows", "ids throttled once", "answers 429", "overhead (throttled − unthrottled)",
             "overhead / pause", "of which 429 round trips (`throttle_pause=0` − unthrottled)"],
            [[f"{t['rows']:,}", f"{t['throttled_ids']:,} (1%)",
              _spread(t["answers_429"], count), _spread(t["overhead_s"], secs),
              _spread(t["overhead_over_pause"], lambda x: f"{x:.2f}"),
              _spread(t["resend_overhead_s"], secs)]],
        )
        lines += ["", f"`throttle_pause={t['pause']:g}` instead of the default 15 s so that the "
                  "run is short; the throttled ids are spread at random, so every request of "
                  "1000 rows carries about ten of them and is answered 429 once. Differences "
                  "are paired run by run; no added latency.", ""]
    else:
        lines += ["not run (`--sections`)", ""]

    lines += ["### The official SDK and pandas values", ""]
    if "sdk_drops" in results:
        lines += _table(["cell value", "how you get one from pandas",
                         "`amplitude.Identify().set(...)` does"],
                        [list(row) for row in results["sdk_drops"]])
        lines += ["", "So the benchmarks hand the SDK `int(...)` and `Timestamp.isoformat()`; "
                  "amp_pandas sends all of these correctly (and NaN as a missing value).", ""]
    else:
        lines += ["`amplitude-analytics` not installed (pip install -r "
                  "benchmarks/requirements.txt): SDK columns skipped.", ""]

    lines += ["### Targets", ""]
    lines += _table(["target", "measured", "met?"], targets(results))
    if quick:
        lines += ["", "Quick run: small sizes, so these verdicts are indicative only."]
    return "\n".join(lines) + "\n"


def targets(results: dict[str, Any]) -> list[list[str]]:
    out: list[list[str]] = []

    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else ("**met**" if ok else "**missed**")

    build = [r for r in results.get("build", []) if r["method"] == "amp_pandas"]
    if build:
        biggest = max(build, key=lambda r: r["rows"])
        per_size = ", ".join(f"{_num(r['rows_per_s'].median)} at {r['rows']:,}" for r in build)
        out.append(["build + encode ≥ 500k rows/s", f"{per_size} rows/s",
                    verdict(biggest["rows_per_s"].median >= 500_000)])
    else:
        out.append(["build + encode ≥ 500k rows/s", "", verdict(None)])

    e2e = results.get("e2e", [])
    ours = [r for r in e2e if r["client"] == "amp_pandas" and "note" not in r]
    if ours:
        n = max(r["rows"] for r in ours)
        at_n = [r for r in ours if r["rows"] == n]
        worst = max(r["client_cpu_us"].median for r in at_n)
        detail = ", ".join(f"{r['client_cpu_us'].median:.2f} at {r['latency_ms']:.0f} ms"
                           for r in at_n)
        out.append(["client CPU ≤ 5 µs/row end to end", f"{detail} ({n:,} rows)",
                    verdict(worst <= 5.0)])
        ratios = []
        for r in ours:
            sdk = _find(e2e, latency_ms=r["latency_ms"], rows=r["rows"], client="official SDK")
            if sdk is not None:
                ratios.append((r, r["rows_per_s"].median / sdk["rows_per_s"].median))
        if ratios:
            m = max(r["rows"] for r, _ in ratios)
            picked = [(r, x) for r, x in ratios if r["rows"] == m]
            detail = ", ".join(f"{x:.0f}× at {r['latency_ms']:.0f} ms" for r, x in picked)
            out.append(["end to end ≥ 10× the official SDK", f"{detail} ({m:,} rows)",
                        verdict(min(x for _, x in picked) >= 10)])
        else:
            out.append(["end to end ≥ 10× the official SDK", "SDK not installed", verdict(None)])
        slow = [r for r in at_n if r["latency_ms"] == 100]
        if slow:
            bound = MAX_WORKERS * BATCH_SIZE / 0.1
            share = slow[0]["rows_per_s"].median / bound
            noop = _find(e2e, latency_ms=100, rows=n, client=NOOP)
            text = (f"sandbox: {_num(slow[0]['rows_per_s'].median)} of {_num(bound)} rows/s = "
                    f"{share:.0%}")
            ok = verdict(share >= 0.7)
            if noop is not None:
                noop_share = noop["rows_per_s"].median / bound
                text += f"; no-op server: {_num(noop['rows_per_s'].median)} = {noop_share:.0%}"
                ok += f" against the sandbox; {verdict(noop_share >= 0.7)} against a no-op server"
            out.append(["≥ 70% of the concurrency bound at 100 ms",
                        f"{text} ({n:,} rows, build included)", ok])
    else:
        out.append(["client CPU ≤ 5 µs/row end to end", "", verdict(None)])

    mem = results.get("memory")
    if mem:
        # Counted above the interpreter with pandas, pyarrow and amp_pandas imported (~120 MB
        # before any data exists): the budget is the frame's and the send's, not the libraries'.
        limit = mem["frame_bytes"] + 300 * MB
        above = mem["peak_rss"] - mem["rss_after_imports"]
        out.append([f"peak RSS ≤ frame + 300 MB ({mem['rows']:,} rows)",
                    f"{above / MB:,.0f} MB above the {mem['rss_after_imports'] / MB:,.0f} MB of "
                    f"the interpreter with its imports, vs {limit / MB:,.0f} MB (frame "
                    f"{mem['frame_bytes'] / MB:,.0f} MB + 300 MB); {mem['peak_rss'] / MB:,.0f} MB "
                    "in all",
                    verdict(above <= limit) + " counted above the imports; "
                    + verdict(mem["peak_rss"] <= limit) + " counting them"])
    else:
        out.append(["peak RSS ≤ frame + 300 MB", "", verdict(None)])

    t = results.get("throttling")
    if t:
        ratio = t["overhead_over_pause"].median
        out.append(["throttling overhead ≤ one pause + 10%",
                    f"{t['overhead_s'].median:.2f} s = {ratio:.2f} × the {t['pause']:g} s pause "
                    f"({t['resend_overhead_s'].median:.2f} s of it with `throttle_pause=0`)",
                    verdict(ratio <= 1.1)])
    else:
        out.append(["throttling overhead ≤ one pause + 10%", "", verdict(None)])
    return out


# -- README -----------------------------------------------------------------------------------


def write_between_markers(path: Path, table: str) -> None:
    """Replace what lies between the marker comments of ``path`` (prose around them survives).

    Without markers (or without the file), the markers and the table are appended.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{START_MARKER}\n{table}{END_MARKER}"
    start = text.find(START_MARKER[: START_MARKER.index(" (")])
    end = text.find(END_MARKER)
    if start != -1 and end > start:
        text = text[:start] + block + text[end + len(END_MARKER):]
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + block + "\n"
    path.write_text(text, encoding="utf-8")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Spread):
        return value.as_dict()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, single runs (seconds); writes no README unless --readme")
    parser.add_argument("--readme", type=Path, default=None,
                        help="Markdown file to write the table into, between the marker comments "
                        "(default: benchmarks/README.md for a full run, none for --quick)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--no-sdk", action="store_true",
                        help="leave the official SDK out, as if it were not installed")
    args = parser.parse_args(argv)
    sections = {x.strip() for x in args.sections.split(",") if x.strip()}
    unknown = sections - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.monotonic()
    results = run(QUICK if args.quick else FULL, sections, sdk=not args.no_sdk, log=log)
    table = render(results, quick=args.quick)
    log(f"done in {time.monotonic() - started:.0f} s")
    print(table)
    readme = args.readme if args.readme is not None else (
        None if args.quick else _HERE / "README.md")
    if readme is not None and not args.no_write:
        write_between_markers(readme, table)
        log(f"table written to {readme}")
    if args.json is not None:
        args.json.write_text(json.dumps(_jsonable(results), indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
