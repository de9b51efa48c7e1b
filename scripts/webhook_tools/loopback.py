"""A loopback HTTP server and request handler, for the tools' receivers."""

import select
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 at a free port (`port`), a thread per connection, serving from
    a thread of its own from construction until close(). Errors of connections that the client
    reset or gave up on are what these receivers expect, so they are not printed."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, handler_class):
        super().__init__(("127.0.0.1", 0), handler_class)
        self.port = self.server_address[1]
        self.stopping = threading.Event()  # ends the requests held by QuietHandler.hold_until_closed
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self.thread.start()

    def handle_error(self, request, client_address):
        pass

    def close(self):
        self.stopping.set()
        self.shutdown()
        self.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler for LoopbackServer: HTTP/1.1 keep-alive, no request log."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self):
        """(the body read, the Content-Length announced); the body is shorter when the client
        went away mid-body."""
        length = int(self.headers.get("Content-Length") or 0)
        return (self.rfile.read(length) if length else b""), length

    def hold_until_closed(self, limit=None):
        """Never answers: holds the request until the client closes the connection (gives up),
        the server closes, or `limit` seconds pass."""
        sock = self.connection
        deadline = None if limit is None else time.monotonic() + limit
        while not self.server.stopping.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                readable, _, _ = select.select([sock], [], [], 0.05)
                if readable and not sock.recv(4096):
                    return  # end of stream: the client gave up
            except (OSError, ValueError):
                return


