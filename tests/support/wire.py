"""Raw HTTP/1.1 on a socket, for requests no client would send as they are (a hostile request line,
header bytes a client would refuse), against a server on loopback."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit


def exchange(base_url: str, request: bytes, timeout: float = 10) -> bytes:
    """Send `request` as is to the server at `base_url` and return everything it sends until it closes.

    The request should ask for `Connection: close`, or the server keeps the connection open.
    """
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data
