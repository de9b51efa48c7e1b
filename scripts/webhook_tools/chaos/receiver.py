"""The receiver pool: one local HTTP/1.1 server whose endpoints misbehave on purpose, recording
every request."""

import base64
import hashlib
import hmac
import socket
import struct
import threading
import time

from ..loopback import LoopbackServer, QuietHandler
from .settings import (
    DEGRADE_FAST,
    DEGRADE_SLOW,
    FLAKY_FAILURE_SHARE,
    FLAP_SECONDS,
    HANG_LIMIT,
    REQUEST_TIMEOUT,
    RESET_SHARE,
    SLOW_SECONDS,
    SLOW_SHARE,
)


def answer(endpoint, chance, flap_status, degraded=lambda: False):
    """What an endpoint (the first segment of the path) answers: (status, delay in seconds). A
    status is an HTTP status, "reset" (RST instead of an answer) or "hang" (no answer until the
    sender gives up). `chance(p)` is true with probability p (drawn only by the flaky, slow and
    reset endpoints, in that order, so that a seed gives the same answers); `flap_status()` is the
    flapping endpoint's status now, and `degraded()` whether the degrading endpoint is slow now."""
    if endpoint == "flaky" and chance(FLAKY_FAILURE_SHARE):
        return 500, 0.0
    if endpoint == "slow" and chance(SLOW_SHARE):
        return 200, SLOW_SECONDS
    if endpoint == "reset" and chance(RESET_SHARE):
        return "reset", 0.0
    if endpoint in ("fail", "never"):
        return 500, 0.0
    if endpoint == "gone":
        return 410, 0.0
    if endpoint == "flap":
        return flap_status(), 0.0
    if endpoint == "degrade":
        return 200, DEGRADE_SLOW if degraded() else DEGRADE_FAST
    if endpoint == "hang":
        return "hang", 0.0
    return 200, 0.0


def expected_signatures(secret, delivery, timestamp, body):
    legacy = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    key = base64.b64decode(secret[len("whsec_"):]) if secret.startswith("whsec_") else secret.encode()
    signed = f"{delivery}.{timestamp}.".encode() + body
    standard = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return legacy, standard


class Receiver:
    """A local HTTP/1.1 keep-alive server whose endpoints (the first path segment) misbehave on
    purpose. Every request is recorded as it arrives."""

    def __init__(self, rng, secrets):
        self.receipts = []
        self.secrets = secrets  # url path -> the client's webhookSecret
        self.lock = threading.Lock()
        self.connections = 0
        self.started = time.time()  # the flapping endpoint's periods count from here
        self.degraded_window = None  # (from, to): the degrading endpoint is slow then
        rng_lock = threading.Lock()
        receiver = self

        def chance(p):
            with rng_lock:
                return rng.random() < p

        class Handler(QuietHandler):
            def setup(self):
                super().setup()
                with receiver.lock:
                    receiver.connections += 1

            def do_POST(self):
                arrived = time.time()
                path = self.path
                endpoint = path.strip("/").split("/")[0]
                body, length = self.read_body()
                delivery = self.headers.get("X-Webhook-Delivery", "")
                receipt = {
                    "t": arrived, "path": path, "endpoint": endpoint, "delivery": delivery,
                    "body_sha": hashlib.sha256(body).hexdigest(), "status": None, "late": False,
                    "signature": None, "connection": id(self.connection), "length": length, "body": body,
                    "headers": dict(self.headers.items()),
                }
                if len(body) < length:
                    # The sender went away mid-body (a replica killed while sending): no answer.
                    receipt["status"] = "truncated"
                    with receiver.lock:
                        receiver.receipts.append(receipt)
                    self.close_connection = True
                    return
                secret = receiver.secrets.get(path)
                if secret is not None:
                    legacy, standard = expected_signatures(
                        secret, self.headers.get("webhook-id", ""), self.headers.get("webhook-timestamp", ""), body)
                    given = (self.headers.get("webhook-signature") or "").split(" ")
                    receipt["signature"] = (
                        hmac.compare_digest(self.headers.get("X-Webhook-Secret", ""), legacy)
                        and standard in given and self.headers.get("webhook-id") == delivery)
                else:
                    receipt["signature"] = "X-Webhook-Secret" not in self.headers

                status, delay = answer(endpoint, chance, lambda: receiver.flap_status(arrived),
                                       lambda: receiver.is_degraded(arrived))
                if status == "hang":
                    receipt["closed"] = None  # when the sender gave up (closed the connection)
                receipt["status"] = status
                receipt["late"] = delay > REQUEST_TIMEOUT
                with receiver.lock:
                    receiver.receipts.append(receipt)

                if status == "hang":
                    # Never answer: hold the request until the sender closes the connection.
                    try:
                        self.hold_until_closed(HANG_LIMIT)
                    finally:
                        receipt["closed"] = time.time()
                        self.close_connection = True
                    return
                if status == "reset":
                    # RST instead of an answer: SO_LINGER 0, then close.
                    self.close_connection = True
                    try:
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        self.connection.close()
                    except OSError:
                        pass
                    return
                if delay:
                    time.sleep(delay)
                try:
                    payload = b"ok" if status == 200 else b"chaos says no"
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    self.close_connection = True

        self.server = LoopbackServer(Handler)
        self.port = self.server.port

    def flap_status(self, t):
        """The flapping endpoint's answer at time t: 200 in even periods, 503 in odd ones."""
        return 503 if int((t - self.started) / FLAP_SECONDS) % 2 else 200

    def degrade(self, start, seconds):
        """Makes the degrading endpoint slow from `start` for `seconds`."""
        self.degraded_window = (start, start + seconds)

    def is_degraded(self, t):
        window = self.degraded_window
        return window is not None and window[0] <= t < window[1]

    def snapshot(self):
        with self.lock:
            return list(self.receipts)

    def close(self):
        self.server.close()
