"""`LiveServer`: an app under a real uvicorn on a free loopback port, on a thread of its own."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from starlette.types import ASGIApp

__all__ = ["LiveServer"]


class LiveServer:
    """Serve `app` with uvicorn on 127.0.0.1 until `stop()`; `url` is its base URL.

    The listening socket is bound before uvicorn starts (port 0, so the system picks a free port
    and no other process can take it in between). uvicorn's options pass through; by default it
    leaves the logging configuration alone, so its log reaches pytest's capture.
    """

    def __init__(self, app: ASGIApp, *, start_timeout: float = 10.0, **options: Any) -> None:
        import uvicorn  # here, not at import: the pytest plugin must stay light at collection

        chosen = ", ".join(f"{name}=" for name in sorted({"host", "port", "fd", "uds"} & set(options)))
        if chosen:
            raise TypeError(
                f"LiveServer chooses where uvicorn listens (127.0.0.1, a free port); drop {chosen} "
                "and read the address from its url."
            )
        options.setdefault("log_config", None)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        host, port = self._socket.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"uvicorn {self.url}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                if self._thread.is_alive():
                    why = f"it was not serving after {start_timeout} s"
                elif self._error is not None and not isinstance(self._error, SystemExit):
                    why = f"it raised {self._error!r}"
                else:  # uvicorn logs why, then exits: a port it cannot bind, a lifespan startup that failed
                    why = "it exited before serving; its log above says why (often the app's lifespan startup failed)"
                raise RuntimeError(f"uvicorn did not start {app!r} on {self.url}: {why}.")
            time.sleep(0.005)

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as error:  # SystemExit too: uvicorn exits that way when it cannot start
            self._error = error

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down as uvicorn does on Ctrl-C: finish the requests in flight, run the lifespan's shutdown."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        self._socket.close()
        if self._thread.is_alive():
            raise RuntimeError(f"uvicorn serving on {self.url} did not shut down within {2 * timeout} s.")
