"""Run a sandbox in the foreground until Ctrl-C (the ``amp-pandas sandbox`` command)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from ._sandbox import DEFAULT_API_KEY, Sandbox

__all__ = ["serve"]


def serve(port: int = 0, api_key: str = DEFAULT_API_KEY, out: TextIO | None = None) -> None:
    """Run a sandbox on ``127.0.0.1`` until interrupted (Ctrl-C), printing how to use it.

    Parameters
    ----------
    port : int, default 0
        The port to listen on; 0 picks a free one (printed).
    api_key : str, default "sandbox-key"
        The key requests must carry. A key other than the default is never printed.
    out : text stream, optional
        Where to print (default: ``sys.stdout`` at call time).

    Raises
    ------
    amp_pandas.errors.SandboxError
        When the port cannot be bound.

    Examples
    --------
    Run it from a terminal (it blocks until Ctrl-C)::

        $ amp-pandas sandbox --port 8765
        amp_pandas sandbox: a local stand-in for Amplitude's Identify API
          Identify endpoint: http://127.0.0.1:8765/identify
          ...
    """
    stream = sys.stdout if out is None else out
    shown_key = api_key if api_key == DEFAULT_API_KEY else "<the key you gave>"
    with Sandbox(api_key, port=port) as sandbox:
        lines = [
            "amp_pandas sandbox: a local stand-in for Amplitude's Identify API",
            f"  Identify endpoint: {sandbox.url}",
            f"  HTTP V2 endpoint:  {sandbox.http_v2_url}",
            f"  Group Identify endpoint: {sandbox.group_url}",
            f"  API key:           {shown_key}"
            + ("" if api_key == DEFAULT_API_KEY else " (not echoed)"),
            "Send identifications to the Identify endpoint with that key, for example:",
            f"  curl {sandbox.url} --data-urlencode 'api_key={shown_key}' \\",
            (
                '       --data-urlencode \'identification={"user_id": "user-1", '
                '"user_properties": {"plan": "pro"}}\''
            ),
            "From pandas:",
            f"  df.amplitude.identify(user_id=..., set=[...], server_url={sandbox.url!r},",
            f"                        api_key={shown_key!r})",
            "(Amplitude's own SDK works too: give it the HTTP V2 endpoint as server_url.)",
            "Profiles live in memory only. Press Ctrl-C to stop.",
        ]
        try:  # Ctrl-C may come while the lines are still being written
            print("\n".join(lines), file=stream, flush=True)
            while True:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
    counts = sandbox.applied_counts()
    group_counts = sandbox.group_applied_counts()
    groups = (
        f" and {int(group_counts.sum())} group identifications to {len(group_counts)} groups"
        if len(group_counts)
        else ""
    )
    print(
        f"Sandbox stopped: {len(sandbox.requests)} requests, {int(counts.sum())} "
        f"identifications applied to {len(counts)} profiles{groups}.",
        file=stream,
        flush=True,
    )
