"""The agent's httpx transports: artifact bodies read into the caller's buffer, and offline.

httpcore and h11 copy every body byte four times on its way to the caller (onto h11's buffer,
two slices off it, then into `bytes`), and spend tens of microseconds of Python per socket read:
for a 1 GiB artifact that is more CPU than the sha256 (docs/benchmarks.md). This transport sends
one request per connection with `http.client`, and its body stream has `readinto(buffer)`, which
fills the caller's buffer from the socket with the kernel's one copy. It is used for artifact
downloads only; API calls keep httpx's pooled connections.

Errors are raised as httpx's own (ConnectError, ReadTimeout, ReadError...), so callers handle
both transports alike.

`OfflineTransport` is the client's transport on an agent with `mode = "offline"`: it refuses
every request without touching the network.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.request
from collections.abc import Iterator

import httpx

READ_SIZE = 1024 * 1024
# The response extension under which a response's `readinto(buffer)` is found.
READINTO = "tether.readinto"


class BodyStream(httpx.SyncByteStream):
    """A response body read from its socket on demand, into the caller's buffers if asked."""

    def __init__(
        self,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        read_timeout: float | None,
    ) -> None:
        self._connection = connection
        self._response = response
        self._read_timeout = read_timeout

    def readinto(self, buffer: memoryview | bytearray) -> int:
        """Fill `buffer` with the next body bytes; return how many (0 at the end)."""
        try:
            return self._response.readinto(buffer)
        except TimeoutError as error:
            raise httpx.ReadTimeout(str(error) or "timed out reading the body") from error
        except http.client.HTTPException as error:
            raise httpx.RemoteProtocolError(f"{type(error).__name__}: {error}") from error
        except OSError as error:
            raise httpx.ReadError(str(error) or type(error).__name__) from error

    def __iter__(self) -> Iterator[bytes]:
        buffer = bytearray(READ_SIZE)
        view = memoryview(buffer)
        while count := self.readinto(view):
            yield bytes(view[:count])

    def close(self) -> None:
        self._response.close()
        self._connection.close()


class BodyTransport(httpx.BaseTransport):
    """Answer each request over a fresh http.client connection, body left on the socket."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        timeouts = request.extensions.get("timeout", {})
        connect_timeout = timeouts.get("connect")
        read_timeout = timeouts.get("read")
        port = url.port or (443 if url.scheme == "https" else 80)
        connection: http.client.HTTPConnection
        if url.scheme == "https":
            if self._ssl_context is None:
                # The same trust store and settings httpx itself would use.
                self._ssl_context = httpx.create_ssl_context()
            connection = http.client.HTTPSConnection(
                url.host, port, timeout=connect_timeout, context=self._ssl_context
            )
        elif url.scheme == "http":
            connection = http.client.HTTPConnection(url.host, port, timeout=connect_timeout)
        else:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        try:
            connection.connect()
        except TimeoutError as error:
            connection.close()
            raise httpx.ConnectTimeout(str(error) or "timed out connecting") from error
        except OSError as error:
            connection.close()
            raise httpx.ConnectError(str(error) or type(error).__name__) from error
        try:
            assert connection.sock is not None
            connection.sock.settimeout(read_timeout)
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.putrequest(
                request.method,
                url.raw_path.decode("ascii"),
                skip_host=True,
                skip_accept_encoding=True,
            )
            for name, value in request.headers.raw:
                connection.putheader(name.decode("latin-1"), value.decode("latin-1"))
            connection.endheaders(request.read() or None)
            response = connection.getresponse()
        except TimeoutError as error:
            connection.close()
            raise httpx.ReadTimeout(str(error) or "timed out waiting for the answer") from error
        except http.client.HTTPException as error:
            connection.close()
            raise httpx.RemoteProtocolError(f"{type(error).__name__}: {error}") from error
        except OSError as error:
            connection.close()
            raise httpx.ReadError(str(error) or type(error).__name__) from error
        body = BodyStream(connection, response, read_timeout)
        return httpx.Response(
            response.status,
            headers=response.getheaders(),
            stream=body,
            # httpx wraps the stream it is given, so the reader travels as an extension.
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": response.reason.encode("latin-1", "replace"),
                READINTO: body.readinto,
            },
        )


def goes_direct(url: str) -> bool:
    """Tell whether requests to `url` bypass every proxy the environment configures."""
    parsed = httpx.URL(url)
    proxies = urllib.request.getproxies_environment()
    if parsed.scheme not in proxies and "all" not in proxies:
        return True
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # untyped
    return bool(bypass(parsed.host, proxies))


class OfflineTransport(httpx.BaseTransport):
    """Refuse every request without touching the network: the client of an offline agent."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(
            'mode = "offline": this agent never connects; bring models with '
            "`tether agent import-bundle`",
            request=request,
        )
