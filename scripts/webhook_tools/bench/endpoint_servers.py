"""Receivers for the per-endpoint phases: an endpoint that answers after a delay, and one that
answers its first request 429 with Retry-After. Both record when each request arrived and
when it was answered, so that the phases can count requests in flight and inside a window."""

import threading
import time

from ..loopback import LoopbackServer, QuietHandler


class RecordingServer:
    """A loopback endpoint answering every POST with `answer(index)` -> (status, headers, delay
    in seconds), index counting requests from 0. Records (arrived, answered, delivery id, status)
    per request and the most requests open at once."""

    def __init__(self, answer):
        self.lock = threading.Lock()
        self.requests = []
        self.open = self.peak = 0
        server = self

        class Handler(QuietHandler):
            def do_POST(self):
                body, length = self.read_body()
                if len(body) < length:
                    self.close_connection = True
                    return  # the client went away mid-body
                arrived = time.time()
                with server.lock:
                    index = len(server.requests)
                    server.requests.append(None)
                    server.open += 1
                    server.peak = max(server.peak, server.open)
                status, headers, delay = answer(index)
                if delay:
                    time.sleep(delay)
                # Recorded before the answer goes out, so that a client that has it finds it recorded.
                with server.lock:
                    server.open -= 1
                    server.requests[index] = (arrived, time.time(), self.headers.get("X-Webhook-Delivery"), status)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = LoopbackServer(Handler)
        self.port = self.server.port

    def snapshot(self):
        """[(arrived, answered, delivery id, status)] of the requests answered so far, and the peak."""
        with self.lock:
            return [r for r in self.requests if r is not None], self.peak

    def close(self):
        self.server.close()


def slow_endpoint(delay):
    """Answers 204 after `delay` seconds: a healthy endpoint that takes its time."""
    return RecordingServer(lambda index: (204, {}, delay))


def throttling_endpoint(retry_after):
    """Answers its first request 429 with `Retry-After: retry_after` (seconds), every other 204."""
    return RecordingServer(lambda index: (429, {"Retry-After": str(retry_after)}, 0) if index == 0 else (204, {}, 0))
