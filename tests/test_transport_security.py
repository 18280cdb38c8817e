"""Transport security: where the key may travel, and how.

* ``http://`` to a host that is not this machine is refused, with a clear error, before any
  request -- however the URL is spelled (``requests`` must not connect to a host the check did
  not see);
* TLS verification is never turned off by the package, not even for a session that asks for it;
* redirects are not followed (a 307 would re-post the body, key included, elsewhere);
* the sandbox listens on 127.0.0.1 only;
* the key travels in the request body only: never in a URL, a query string or a header.

Every request is observed by wrapping ``requests.Session.send``, the one door all of them pass.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import ssl
import threading
import urllib.parse
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

import amp_pandas  # noqa: F401
from amp_pandas import cli
from amp_pandas._transport import new_session
from amp_pandas.errors import InsecureEndpointError, RowsNotSucceededWarning
from amp_pandas.sandbox import Sandbox

KEY = "transport-KEY-4b7e91d0c3a2"
MAPPING = {"user_id": "uid", "set": ["plan"]}


def frame(n: int = 20) -> pd.DataFrame:
    return pd.DataFrame({"uid": [f"user-{i:04d}" for i in range(n)], "plan": ["pro"] * n})


class Recorder:
    """Every request ``requests`` sends: the prepared request and the keyword arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[requests.PreparedRequest, dict[str, Any]]] = []


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    real_send = requests.Session.send

    def send(self: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> Any:
        recorder.calls.append((request, dict(kwargs)))
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", send)
    return recorder


@pytest.fixture
def blocked(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Like ``sent``, but nothing leaves this process: every request fails to connect.

    For the URLs that must be refused: should the check let one through, the test must not
    send a key to a real host while it finds that out.
    """
    recorder = Recorder()

    def send(self: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> Any:
        recorder.calls.append((request, dict(kwargs)))
        raise requests.ConnectionError("blocked by the test: no request may leave")

    monkeypatch.setattr(requests.Session, "send", send)
    return recorder


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(api_key=KEY) as sandbox:
        yield sandbox


def verifying(value: Any) -> bool:
    """``True``, or a CA bundle path (``REQUESTS_CA_BUNDLE`` turns ``True`` into one)."""
    return value is True or (isinstance(value, str) and bool(value))


def outside_address() -> str | None:
    """This machine's address on a non-loopback interface, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


# ------------------------------------------------------------------------------------ http://
REFUSED = [
    "http://example.com/identify",
    "HTTP://EXAMPLE.COM/identify",
    "  http://example.com/identify  ",
    "http://10.0.0.1/identify",
    "http://192.168.1.10:8080/identify",
    "http://[2001:db8::1]/identify",
    "http://0.0.0.0:8080/identify",
    "http://localhost.example.com/identify",
    "http://127.0.0.1.nip.io/identify",
    "http://localhost@example.com/identify",
    "http://127.0.0.1:80@example.com/identify",
    "http://example.com#@127.0.0.1/identify",
    "http://example.com?@127.0.0.1/identify",
    # urlsplit reads the host after '@' (127.0.0.1); requests/urllib3 read '\' as the end of
    # the host (example.com): the check must not look at another host than the one dialled.
    "http://example.com\\@127.0.0.1/identify",
    "http://192.0.2.1:8080\\@localhost/identify",
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("url", REFUSED)
def test_plain_http_to_another_host_is_refused_before_any_request(
    url: str, blocked: Recorder
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RowsNotSucceededWarning)  # if it were sent (blocked)
        with pytest.raises(InsecureEndpointError, match=r"plain http://.*use https://") as info:
            frame().amplitude.identify(**MAPPING, api_key=KEY, server_url=url, progress=False,
                                       max_retries=0, timeout=1)
    dialled = requests.Request("POST", url.strip()).prepare().url
    host = urllib.parse.urlsplit(dialled).hostname
    assert host and host.lower() in str(info.value).lower()  # it names the host refused
    assert blocked.calls == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("url", ["http://example.com/identify",
                                 "http://example.com\\@127.0.0.1/identify"])
def test_preview_send_and_cli_refuse_it_too(
    url: str, blocked: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    preview = frame().amplitude.identify(**MAPPING, dry_run=True, api_key=KEY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RowsNotSucceededWarning)
        with pytest.raises(InsecureEndpointError):
            preview.send(server_url=url, progress=False, max_retries=0, timeout=1)
    path = tmp_path / "users.csv"
    frame().to_csv(path, index=False)
    monkeypatch.setenv("AMPLITUDE_API_KEY", KEY)
    code = cli.main(["identify", str(path), "--user-id", "uid", "--set", "plan",
                     "--server-url", url, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "plain http://" in err
    assert blocked.calls == []


@pytest.mark.timeout(30)
def test_a_key_sent_in_clear_text_to_an_outside_address_is_impossible() -> None:
    # Real sockets: a listener on every interface, dialled through a URL whose host, as the
    # check reads it, is 127.0.0.1, but whose host, as requests dials it, is not loopback.
    address = outside_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(4)
    listener.settimeout(3)
    port = listener.getsockname()[1]
    received: list[bytes] = []

    def accept() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(1)
            data = b""
            try:
                while KEY.encode() not in data:  # headers and body come in separate writes
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsuccess")
            except OSError:
                pass
            received.append(data)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"http://{address}:{port}\\@127.0.0.1/identify"
    refused = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RowsNotSucceededWarning)
            frame(1).amplitude.identify(**MAPPING, api_key=KEY, server_url=url,
                                        progress=False, max_retries=0, timeout=2)
    except InsecureEndpointError:
        refused = True
    finally:
        listener.close()
        thread.join(4)
    leaked = [data for data in received if KEY.encode() in data]
    assert not leaked, f"the key went in clear text to {address}:{port}: {leaked[0][:300]!r}"
    assert refused


ALLOWED = ["http://127.0.0.1:{port}/identify", "http://localhost:{port}/identify",
           "http://LOCALHOST:{port}/identify"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("url", ALLOWED)
def test_plain_http_to_this_machine_is_allowed(url: str, sb: Sandbox) -> None:
    result = frame().amplitude.identify(**MAPPING, api_key=KEY, progress=False,
                                        server_url=url.format(port=sb.port))
    assert (result["status"] == "success").all()


# ------------------------------------------------------------------------------------ TLS
@pytest.mark.timeout(30)
def test_the_default_session_verifies_and_every_request_says_so(
    sb: Sandbox, sent: Recorder
) -> None:
    assert new_session(4).verify is True
    frame().amplitude.identify(**MAPPING, api_key=KEY, server_url=sb.url, progress=False,
                               batch_size=5)
    assert len(sent.calls) == 4
    assert all(verifying(kwargs.get("verify")) for _, kwargs in sent.calls)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("asked", [False, None])
def test_a_session_with_verification_off_is_sent_with_it_on(
    sb: Sandbox, sent: Recorder, caplog: pytest.LogCaptureFixture, asked: Any
) -> None:
    session = requests.Session()
    session.verify = asked
    with caplog.at_level(logging.WARNING, logger="amp_pandas"):
        frame().amplitude.identify(**MAPPING, api_key=KEY, server_url=sb.url, progress=False,
                                   session=session, batch_size=5)
    assert sent.calls and all(verifying(kwargs.get("verify")) for _, kwargs in sent.calls)
    assert "verify=False" in caplog.text
    session.close()


@pytest.mark.timeout(30)
def test_a_custom_ca_bundle_is_kept(sb: Sandbox, sent: Recorder, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")  # never read: the sandbox is plain http
    session = requests.Session()
    session.verify = str(bundle)
    frame().amplitude.identify(**MAPPING, api_key=KEY, server_url=sb.url, progress=False,
                               session=session)
    assert sent.calls and all(kwargs.get("verify") == str(bundle) for _, kwargs in sent.calls)
    session.close()


# ------------------------------------------------------------------------------- environment
@pytest.mark.timeout(30)
def test_proxy_variables_are_honoured_and_read_once_per_send(
    sb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """amp_pandas' own session reads the environment once per send, not once per request,
    and still goes through the proxy it names."""
    reads: list[str] = []
    real = requests.utils.get_environ_proxies

    def counting(url: str, no_proxy: Any = None) -> dict[str, str]:
        reads.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counting)
    with Sandbox(api_key=KEY) as proxy:  # stands in for the proxy: records what it receives
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with pytest.warns(RowsNotSucceededWarning):  # it is no proxy: it answers 404
            frame().amplitude.identify(**MAPPING, api_key=KEY, server_url=sb.url,
                                       progress=False, batch_size=5)
        # the proxy got the four requests, in the absolute form a proxy gets; the server none
        assert [r.path for r in proxy.requests] == [sb.url] * 4
        assert not sb.requests
    assert len(reads) == 1


@pytest.mark.timeout(30)
def test_a_ca_bundle_named_by_the_environment_is_used(
    sb: Sandbox, sent: Recorder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("")  # never read: the sandbox is plain http
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    frame().amplitude.identify(**MAPPING, api_key=KEY, server_url=sb.url, progress=False,
                               batch_size=5)
    assert len(sent.calls) == 4
    assert all(kwargs.get("verify") == str(bundle) for _, kwargs in sent.calls)


@pytest.fixture
def self_signed_server(tmp_path: Path) -> Iterator[tuple[str, list[bytes]]]:
    """An https:// server on 127.0.0.1 with a self-signed certificate; what it received."""
    crypto = pytest.importorskip("cryptography")
    del crypto
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except OSError:
                continue
            try:
                with context.wrap_socket(raw, server_side=True) as tls:
                    tls.settimeout(1)
                    data = b""
                    while KEY.encode() not in data:
                        chunk = tls.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    received.append(data)
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsuccess")
            except (OSError, ssl.SSLError):
                pass  # the client refused the certificate: the handshake failed
            finally:
                raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}/identify", received
    finally:
        stop.set()
        thread.join(2)
        listener.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("session_verify", [True, False], ids=["default", "session-verify-off"])
def test_an_unverifiable_certificate_gets_no_key(
    self_signed_server: tuple[str, list[bytes]], session_verify: bool
) -> None:
    url, received = self_signed_server
    session = requests.Session()
    session.verify = session_verify
    with pytest.warns(RowsNotSucceededWarning):
        result = frame(3).amplitude.identify(**MAPPING, api_key=KEY, server_url=url,
                                             progress=False, session=session, max_retries=3)
    session.close()
    assert (result["status"] == "failed").all()
    assert result["error"].str.contains("TLS").all()
    assert (result["attempts"] == 1).all()  # a certificate problem is not retried
    assert not any(KEY.encode() in data for data in received)


# ------------------------------------------------------------------------------------ redirects
@pytest.mark.timeout(30)
@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(code: int, sb: Sandbox, sent: Recorder) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(3)

    def redirect() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(2)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            while len(body) < length:
                body += conn.recv(65536)
            conn.sendall(f"HTTP/1.1 {code} Moved\r\nLocation: {sb.url}\r\n"
                         "Content-Length: 0\r\n\r\n".encode())

    thread = threading.Thread(target=redirect, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/identify"
    try:
        with pytest.warns(RowsNotSucceededWarning):
            result = frame(3).amplitude.identify(**MAPPING, api_key=KEY, server_url=url,
                                                 progress=False)
    finally:
        thread.join(3)
        listener.close()
    assert (result["status"] == "failed").all()
    assert (result["http_status"] == code).all()
    assert sb.requests == []  # the redirect target never saw the body
    assert len(sent.calls) == 1


# ------------------------------------------------------------------------------------ sandbox
@pytest.mark.timeout(30)
def test_the_sandbox_listens_on_loopback_only(sb: Sandbox) -> None:
    assert sb._server is not None and sb._server.server_address[0] == "127.0.0.1"
    assert urllib.parse.urlsplit(sb.url).hostname == "127.0.0.1"
    address = outside_address()
    if address is not None:
        with pytest.raises(OSError):
            socket.create_connection((address, sb.port), timeout=2).close()


# ------------------------------------------------------------------------------------ key in body
@pytest.mark.timeout(60)
def test_the_key_travels_in_request_bodies_only(sb: Sandbox, sent: Recorder) -> None:
    sb.set_faults(rate_503=0.3, max_identifications=7)  # retries and splits: more requests
    result = frame(100).amplitude.identify(
        **MAPPING, api_key=KEY, server_url=sb.url, progress=False, batch_size=20,
        backoff=0.001, backoff_max=0.01, max_retries=20,
    )
    assert (result["status"] == "success").all()
    assert len(sent.calls) >= 10
    forms = {KEY, urllib.parse.quote(KEY, safe=""), urllib.parse.quote_plus(KEY), KEY[:8]}
    for request, _ in sent.calls:
        assert request.method == "POST"
        assert not any(f in request.url for f in forms), request.url
        assert not any(f in f"{k}: {v}" for k, v in request.headers.items() for f in forms)
        assert isinstance(request.body, bytes) and request.body.count(KEY.encode()) == 1
    for record in sb.requests:
        assert record.method == "POST" and record.path == "/identify"
        assert not any(f in record.path for f in forms)
