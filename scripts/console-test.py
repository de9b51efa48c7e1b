#!/usr/bin/env python3
"""The web console in a real browser (run by scripts/console-test, which installs Selenium).

Starts, on the PostgreSQL of DATABASE_URL (in a database of its own, dropped at the end):
a receiver on 127.0.0.1 (this script), a worker with `run --console`, `webhook-worker console`
with two named tokens, and a read-only console. Seeds the web app's tables, lets the worker
deliver (one client's receiver answers 500 until its delivery is dead-lettered), then drives
Debian's chromium through the pages and checks: each page renders real data; a resend from a
delivery's page reaches the receiver; "Resend all matching" counts first, then resends; a dead
letter's retry runs; a wrong token is refused; a forged form without the CSRF token is refused;
a read-only console refuses actions.
CONSOLE_SCREENSHOTS=DIR saves the main pages there as PNGs.
"""
import base64
import http.server
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, os.environ.get("WEBHOOK_WORKER_BIN", ".build/debug/webhook-worker"))
SCREENSHOTS = os.environ.get("CONSOLE_SCREENSHOTS")
START = time.monotonic()
failures = []


def check(condition, what):
    print(("ok: " if condition else "FAILED: ") + what, flush=True)
    if not condition:
        failures.append(what)
    return condition


def wait_for(condition, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return check(True, what)
        time.sleep(0.05)
    return check(condition(), what + " (waited %.0f s)" % timeout)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url(base, name):
    parts = urllib.parse.urlsplit(base)
    if parts.scheme in ("postgres", "postgresql"):
        return urllib.parse.urlunsplit(parts._replace(path="/" + name))
    return base + " dbname=" + name


def psql(url, sql):
    out = subprocess.run(
        ["psql", url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=True, capture_output=True, text=True)
    return out.stdout.strip()


class Receiver(http.server.ThreadingHTTPServer):
    """Records every webhook; /flaky answers 500 while `flaky_fails` is set."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        self.received = []
        self.flaky_fails = True
        self.lock = threading.Lock()

    def deliveries(self, delivery_id):
        with self.lock:
            return [r for r in self.received if r["delivery"] == delivery_id]


class ReceiverHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status = 500 if self.path.startswith("/flaky") and self.server.flaky_fails else 200
        with self.server.lock:
            self.server.received.append(
                {"path": self.path, "delivery": self.headers.get("X-Webhook-Delivery"), "status": status,
                 "event": self.headers.get("X-Webhook-Event"),
                 "body": body.decode("utf-8", "replace")})
        answer = b'{"ok": true}' if status == 200 else b'{"error": "analytics backend unavailable"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def http(method, url, token=None, form=None, cookie=None):
    """(status, headers, body) without following redirects."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", "Bearer " + token)
    if cookie:
        request.add_header("Cookie", cookie)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def wait_http(url, token=None, timeout=20.0):
    def up():
        try:
            return http("GET", url, token)[0] < 500
        except OSError:
            return False
    return wait_for(up, "%s answers" % url, timeout)


def main():
    base = os.environ["DATABASE_URL"]
    name = "console_test_%d" % os.getpid()
    psql(base, "CREATE DATABASE %s" % name)
    db = database_url(base, name)
    processes = []
    logs = tempfile.mkdtemp(prefix="console-test-")
    driver = None
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        subprocess.run([BIN, "migrate", "--database-url", db], check=True, capture_output=True)
        subprocess.run(["psql", db, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f",
                        os.path.join(ROOT, "sql/dev/001_app_tables.sql")],
                       check=True, capture_output=True)
        hook = "http://127.0.0.1:%d" % receiver.server_address[1]
        closed = free_port()  # nothing listens there: connect_failed
        psql(db, f"""
            INSERT INTO "User" (id, email, name) VALUES ('user-ada', 'ada@example.com', 'Ada'),
                ('user-ben', 'ben@example.com', 'Ben');
            INSERT INTO "IntegrationDefinitionV2" (id, name, slug, icon)
                VALUES ('def-linear', 'Linear', 'linear', 'https://example.com/linear.png');
            INSERT INTO "IntegrationAccount" (id, "accountId", "integrationDefinitionId", "integratedById") VALUES
                ('acct-ada', 'lin_ext_42', 'def-linear', 'user-ada'),
                ('acct-ben', 'lin_ext_43', 'def-linear', 'user-ben');
            INSERT INTO "OAuthClient" (id, "clientId", name, "allowedScopes", "webhookUrl", "webhookSecret") VALUES
                ('cl_01acme', 'acme-crm', 'Acme CRM', 'profile,integration', '{hook}/acme', 'whsec_acme_not_shown'),
                ('cl_02flaky', 'flaky-analytics', 'Flaky Analytics', 'profile,integration', '{hook}/flaky', NULL),
                ('cl_03beta', 'beta-notes', 'Beta Notes', 'integration', '{hook}/beta?token=hidden', NULL),
                ('cl_04gone', 'gone-tasks', 'Gone Tasks', 'integration', 'http://127.0.0.1:{closed}/hooks', NULL);
            INSERT INTO "OAuthIntegrationGrant" (id, "clientId", "userId", "integrationAccountId") VALUES
                ('g1', 'cl_01acme', 'user-ada', 'acct-ada'), ('g2', 'cl_02flaky', 'user-ada', 'acct-ada'),
                ('g3', 'cl_03beta', 'user-ada', 'acct-ada'), ('g4', 'cl_01acme', 'user-ben', 'acct-ben'),
                ('g5', 'cl_04gone', 'user-ada', 'acct-ada');
            -- Jobs of kinds no replica here handles: one waiting, two scheduled for later.
            INSERT INTO webhook_worker.jobs (kind, payload, run_at) VALUES
                ('report.export', '{{}}', now() - interval '90 seconds'),
                ('email.digest', '{{}}', now() + interval '1 hour'),
                ('email.digest', '{{}}', now() + interval '2 hours');
        """)

        alice = "alice:" + secrets.token_hex(16)
        ci = "ci:" + secrets.token_hex(16)
        alice_secret, ci_secret = alice.split(":")[1], ci.split(":")[1]
        env = dict(os.environ, DATABASE_URL=db, LOG_FORMAT="text")
        env.pop("WORKER_CONSOLE_TOKEN", None)

        def start(args, extra_env, log):
            out = open(os.path.join(logs, log), "w")
            process = subprocess.Popen([BIN] + args, env=dict(env, **extra_env), stdout=out, stderr=subprocess.STDOUT)
            processes.append(process)
            return process

        worker_port, console_port, readonly_port = free_port(), free_port(), free_port()
        start(["run", "--allow-http", "--allow-private-networks", "--poll-interval", "200ms",
               "--retry-schedule", "100ms,100ms", "--worker-id", "console-test-replica",
               "--http-port", str(worker_port), "--http-host", "127.0.0.1", "--console"], {}, "worker.log")
        start(["console", "--port", str(console_port)], {"WORKER_CONSOLE_TOKEN": alice + "," + ci}, "console.log")
        start(["console", "--port", str(readonly_port), "--read-only"], {"WORKER_CONSOLE_TOKEN": ci}, "readonly.log")
        console = "http://127.0.0.1:%d" % console_port
        wait_http(console + "/console/login")
        wait_http("http://127.0.0.1:%d/healthz" % worker_port)
        wait_http("http://127.0.0.1:%d/console/login" % readonly_port)

        # The web app connects two integrations: Ada's fans out to three clients, Ben's to one.
        for account, user in (("acct-ada", "user-ada"), ("acct-ben", "user-ben")):
            psql(db, "INSERT INTO webhook_worker.jobs (kind, payload) VALUES ('integration.connected', "
                     "jsonb_build_object('integration_account_id', '%s', 'user_id', '%s'))" % (account, user))
        wait_for(lambda: psql(db, "SELECT count(*) FROM webhook_worker.webhook_deliveries "
                                  "WHERE status = 'delivered'") == "3",
                 "three deliveries delivered")
        wait_for(lambda: psql(db, "SELECT count(*) FROM webhook_worker.dead_letter_jobs") == "2",
                 "the flaky and the unreachable clients' deliveries dead-lettered")
        subprocess.run([BIN, "enqueue", "noop", "--count", "250", "--database-url", db], check=True,
                       capture_output=True)
        wait_for(lambda: psql(db, "SELECT count(*) FROM webhook_worker.jobs WHERE kind = 'noop'") == "0",
                 "250 noop jobs worked")
        acme_delivery = psql(db, "SELECT delivery_id FROM webhook_worker.webhook_deliveries "
                                 "WHERE oauth_client_id = 'cl_01acme' AND user_id = 'user-ada'")
        flaky_delivery = psql(db, "SELECT delivery_id FROM webhook_worker.webhook_deliveries "
                                  "WHERE oauth_client_id = 'cl_02flaky'")

        # Scripts: a wrong bearer token is refused, a right one reads.
        check(http("GET", console + "/console", "wrong-" + alice_secret)[0] == 401, "a wrong bearer token gets 401")
        check(http("POST", console + "/console/jobs/pause", "wrong-" + alice_secret, {"kind": "noop"})[0] == 401,
              "an action with a wrong bearer token gets 401")
        status, headers, body = http("GET", console + "/console", ci_secret)
        check(status == 200 and "Queue depth" in body, "a bearer token reads the overview")
        check("unsafe-inline" not in headers.get("Content-Security-Policy", "unsafe-inline")
              and headers.get("X-Frame-Options") == "DENY" and headers.get("Cache-Control") == "no-store",
              "security headers: CSP without unsafe-inline, X-Frame-Options DENY, no-store")
        check(alice_secret not in body and ci_secret not in body and "whsec_acme_not_shown" not in body,
              "no token or webhook secret in a page")

        # run --console: the same pages on the worker's --http-port (loopback, no token).
        status, _, body = http("GET", "http://127.0.0.1:%d/console/deliveries" % worker_port)
        check(status == 200 and "acme-crm" in body and "signed in as local" in body, "run --console serves the pages")
        check(http("GET", "http://127.0.0.1:%d/metrics" % worker_port)[0] == 200, "/metrics still answers beside it")

        options = Options()
        options.binary_location = "/usr/bin/chromium"
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,1000", "--hide-scrollbars"):
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
        driver.implicitly_wait(5)

        def text():
            return driver.find_element(By.TAG_NAME, "body").text

        def shot(name):
            if not SCREENSHOTS:
                return
            os.makedirs(SCREENSHOTS, exist_ok=True)
            # The whole page (up to 2400 px), not only the window: Chrome's own capture.
            size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 2400), "scale": 1}
            shot = driver.execute_cdp_cmd("Page.captureScreenshot",
                                          {"format": "png", "captureBeyondViewport": True, "clip": clip})
            with open(os.path.join(SCREENSHOTS, name + ".png"), "wb") as f:
                f.write(base64.b64decode(shot["data"]))

        def click(element):
            """Clicks and waits for the next page (a form's POST, its 303 and the GET)."""
            page = driver.find_element(By.TAG_NAME, "html")
            element.click()
            WebDriverWait(driver, 10).until(lambda _: left_behind(page))

        def left_behind(page):
            """Whether the browser has left the page `page` belonged to. While the next page
            replaces it, chromedriver may answer with a plain WebDriverException ("Node with
            given id does not belong to the document") instead of a stale element: both say
            the old page is gone."""
            try:
                return expected_conditions.staleness_of(page)(driver)
            except WebDriverException as error:
                if "does not belong to the document" in str(error):
                    return True
                raise

        def submit(form_action):
            forms = [f for f in driver.find_elements(By.CSS_SELECTOR, "form[method=post]")
                     if f.get_attribute("action").endswith(form_action)]
            if not forms:
                return check(False, "a form posting to %s on %s" % (form_action, driver.current_url))
            click(forms[0].find_element(By.CSS_SELECTOR, "button[type=submit]"))

        # A browser: the login form refuses a wrong token, then signs in.
        driver.get(console + "/console")
        check(driver.current_url.endswith("/console/login"), "a browser without a session is sent to the login form")
        driver.find_element(By.NAME, "token").send_keys("not-" + alice_secret)
        click(driver.find_element(By.CSS_SELECTOR, "form.login button"))
        check("Wrong token" in text(), "the login form refuses a wrong token")
        driver.find_element(By.NAME, "token").send_keys(alice_secret)
        click(driver.find_element(By.CSS_SELECTOR, "form.login button"))
        check("signed in as alice" in text(), "signed in as alice")
        cookie = driver.get_cookie("wwc_session")
        check(cookie and cookie.get("httpOnly") and cookie.get("sameSite") == "Strict",
              "the session cookie is HttpOnly and SameSite=Strict")

        # Overview.
        body = text()
        check("Queue depth" in body and "Attempts per minute" in body, "the overview renders")
        bars = driver.find_elements(By.CSS_SELECTOR, "svg.chart rect")
        check(len(bars) >= 1, "the chart has bars for the attempts of the last hour (%d)" % len(bars))
        check("report.export" in body and "email.digest" in body,
              "the queue depth lists the waiting and scheduled kinds")
        check("failure rate, last hour" in body and "n/a" not in body.split("failure rate")[0][-20:],
              "the overview shows a failure rate")
        shot("overview")

        # Deliveries: search by the public clientId; the failed one says why.
        driver.get(console + "/console/deliveries")
        driver.find_element(By.NAME, "client").send_keys("flaky-analytics")
        click(driver.find_element(By.CSS_SELECTOR, "form.search button"))
        rows = driver.find_elements(By.CSS_SELECTOR, "table tbody tr")
        check(len(rows) == 1 and "failed" in rows[0].text and "Flaky Analytics" in rows[0].text,
              "the search by clientId finds the client's failed delivery")
        driver.get(console + "/console/deliveries?" + urllib.parse.urlencode({"user": "user-ada"}))
        check(len(driver.find_elements(By.CSS_SELECTOR, "table tbody tr")) == 4, "the search by user finds Ada's four")
        check("connect_failed" in text(), "the unreachable client's error class is listed")
        shot("deliveries")

        driver.get(console + "/console/deliveries?client=flaky-analytics")
        click(driver.find_element(By.LINK_TEXT, flaky_delivery))
        body = text()
        check("Not delivered: gave up after 3 attempt(s)" in body and "HTTP 500" in body,
              "the failed delivery's page says it was not delivered, and why")
        check(len(driver.find_elements(By.CSS_SELECTOR, "ol.timeline li")) == 3, "its timeline has three attempts")
        check("analytics backend unavailable" in body, "the timeline shows the response excerpt")
        shot("delivery")

        # Resend from a delivery's page reaches the receiver again, with the same id.
        driver.get(console + "/console/deliveries/" + acme_delivery)
        check("Delivered at" in text(), "the delivered one says when")
        before = len(receiver.deliveries(acme_delivery))
        submit("/resend")
        check("again as job" in text(), "the resend's flash message")
        wait_for(lambda: len(receiver.deliveries(acme_delivery)) == before + 1,
                 "the resent delivery reaches the receiver")

        # Resend all matching: Beta Notes' deliveries of the last hour, the count first, then the resend.
        beta_delivery = psql(db, "SELECT delivery_id FROM webhook_worker.webhook_deliveries "
                                 "WHERE oauth_client_id = 'cl_03beta'")
        before = len(receiver.deliveries(beta_delivery))
        driver.get(console + "/console/deliveries?" + urllib.parse.urlencode({"client": "beta-notes", "from": "1h"}))
        click(driver.find_element(By.ID, "resend-matching"))
        body = text()
        check("1 delivery of OAuth client cl_03beta matches" in body and "Nothing has changed yet" in body,
              "Resend all matching shows the count first")
        check(len(receiver.deliveries(beta_delivery)) == before, "and sends nothing yet")
        submit("/console/deliveries/resend")
        check("Resent 1 of 1 matching delivery" in text(), "the range resend's flash message")
        wait_for(lambda: len(receiver.deliveries(beta_delivery)) == before + 1,
                 "the range's delivery reaches the receiver again, with the same id")

        # Endpoints: health, redacted URLs, disable and enable.
        driver.get(console + "/console/endpoints")
        body = text()
        check("Acme CRM" in body and "Flaky Analytics" in body and "/beta?***" in body and "hidden" not in body,
              "the endpoints page lists the clients with redacted URLs")
        shot("endpoints")
        def beta_form(action):
            rows = [r for r in driver.find_elements(By.CSS_SELECTOR, "table tbody tr") if "Beta Notes" in r.text]
            return [f for f in rows[0].find_elements(By.CSS_SELECTOR, "form[method=post]")
                    if f.get_attribute("action").endswith(action)][0]

        click(beta_form("/console/endpoints/disable").find_element(By.CSS_SELECTOR, "button[type=submit]"))
        check("Disabled client:cl_03beta" in text(), "an endpoint is disabled")
        click(beta_form("/console/endpoints/enable").find_element(By.CSS_SELECTOR, "button[type=submit]"))
        check("Enabled client:cl_03beta" in text(), "and enabled again")

        # Limits: a fixed max in flight and a rate limit, set from the endpoint's row, then cleared.
        check("max in flight adaptive, rate none" in text(), "the endpoints page shows the limits")
        form = beta_form("/console/endpoints/limits")
        form.find_element(By.NAME, "max_in_flight").send_keys("2")
        form.find_element(By.NAME, "rate_limit").send_keys("5")
        click(form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
        check("Set client:cl_03beta: max in flight 2, rate limit 5/s" in text(), "the limits' flash message")
        check(psql(db, "SELECT max_in_flight || ' ' || rate_limit FROM webhook_worker.endpoints"
                       " WHERE key = 'client:cl_03beta'") == "2 5", "the limits are stored")
        check("max in flight 2, rate 5/s" in text(), "the endpoint's row shows its limits")
        beta_row = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "table tbody tr") if "Beta Notes" in r.text]
        check("in flight of limit" in text() and re.search(r"\b\d+ of 2\b", beta_row[0]) is not None,
              "the endpoint's row shows its deliveries in flight against the limit in force")
        form = beta_form("/console/endpoints/limits")
        form.find_element(By.NAME, "max_in_flight").clear()
        form.find_element(By.NAME, "rate_limit").clear()
        click(form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
        check("Set client:cl_03beta: max in flight adaptive, rate limit none" in text(), "and cleared")
        events = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "table tbody tr.event")]
        check(any("cl_03beta" in e and "endpoint_disabled" in e for e in events)
              and any("cl_03beta" in e and "endpoint_enabled" in e for e in events),
              "the operational events show the disable and the enable")

        # A test event to Acme CRM: the button queues it and shows its delivery, which arrives signed.
        rows = [r for r in driver.find_elements(By.CSS_SELECTOR, "table tbody tr") if "Acme CRM" in r.text]
        forms = [f for f in rows[0].find_elements(By.CSS_SELECTOR, "form[method=post]")
                 if f.get_attribute("action").endswith("/console/endpoints/test")]
        check(len(forms) == 1, "the endpoint's row has a Send test event button")
        click(forms[0].find_element(By.CSS_SELECTOR, "button[type=submit]"))
        check("Queued a webhook.test event to client:cl_01acme" in text() and "/console/deliveries/" in
              driver.current_url, "the test event's flash message, on its delivery's page")
        test_delivery = driver.current_url.rsplit("/", 1)[1]
        wait_for(lambda: any(r["event"] == "webhook.test" and r["status"] == 200
                             for r in receiver.deliveries(test_delivery)), "the test event reaches the receiver")
        wait_for(lambda: psql(db, "SELECT status FROM webhook_worker.webhook_deliveries WHERE delivery_id = '%s'"
                              % test_delivery) == "delivered", "and is recorded delivered")
        driver.refresh()
        check("webhook.test" in text() and "Delivered at" in text(), "its page shows the delivered test event")

        # Ordering: Acme CRM made FIFO (one delivery at a time, in creation order), then unordered again.
        def acme_ordering_form():
            driver.get(console + "/console/endpoints")
            rows = [r for r in driver.find_elements(By.CSS_SELECTOR, "table tbody tr") if "Acme CRM" in r.text]
            forms = [f for f in rows[0].find_elements(By.CSS_SELECTOR, "form[method=post]")
                     if f.get_attribute("action").endswith("/console/endpoints/ordering")]
            check(len(forms) == 1, "the endpoint's row has an ordering button")
            return rows[0], forms[0]
        fifo_sql = "SELECT webhook_worker.concurrency_key_is_ordered('webhook.deliver', 'client:cl_01acme')"
        row, form = acme_ordering_form()
        check("none" in row.text.split() and form.text == "Make FIFO", "Acme CRM is unordered, with Make FIFO")
        click(form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
        check("client:cl_01acme now gets its deliveries one at a time" in text(), "the FIFO flash message")
        check(psql(db, fifo_sql) == "t", "and the endpoint's key is ordered")
        row, form = acme_ordering_form()
        check("fifo" in row.text.split() and form.text == "Make unordered", "the row shows fifo")
        click(form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
        check("client:cl_01acme is no longer FIFO" in text(), "made unordered again")
        check(psql(db, fifo_sql) == "f", "and the endpoint's key is unordered")

        # Dead letters: both, then filtered by client; retry one: it is delivered this time.
        driver.get(console + "/console/dead-letters")
        check(len(driver.find_elements(By.CSS_SELECTOR, "table tbody tr")) == 2, "the dead letters page lists both")
        shot("dead-letters")
        driver.get(console + "/console/dead-letters?client=flaky-analytics")
        rows = driver.find_elements(By.CSS_SELECTOR, "table tbody tr")
        check(len(rows) == 1 and "webhook.deliver" in rows[0].text and "attempts_exhausted" in rows[0].text,
              "the dead letters page finds the client's dead letter")
        check("Flaky Analytics" in rows[0].text, "a delivery's dead letter names its OAuth client")
        receiver.flaky_fails = False
        click(rows[0].find_element(By.CSS_SELECTOR, "button[type=submit]"))
        check("Requeued dead letter" in text(), "the retry's flash message")
        wait_for(lambda: any(r["status"] == 200 for r in receiver.deliveries(flaky_delivery)),
                 "the retried dead letter is delivered")
        wait_for(lambda: psql(db, "SELECT status FROM webhook_worker.webhook_deliveries WHERE delivery_id = '%s'"
                              % flaky_delivery) == "delivered", "and recorded delivered")

        # Jobs: pause and resume a kind.
        driver.get(console + "/console/jobs")
        submit("/console/jobs/pause")
        check("Paused" in text(), "a kind is paused")
        submit("/console/jobs/resume")
        check("Resumed" in text(), "and resumed")

        # A forged form: the session cookie (as a cross-site page would get it sent) without the CSRF token.
        session = "wwc_session=" + cookie["value"]
        status, _, _ = http("POST", console + "/console/deliveries/%s/resend" % acme_delivery,
                            form={"back": "/console"},
                            cookie=session)
        check(status == 403, "a forged form without the CSRF token gets 403")
        status, _, _ = http("POST", console + "/console/jobs/pause", form={"kind": "noop", "csrf": "0" * 64},
                            cookie=session)
        check(status == 403, "a forged form with a wrong CSRF token gets 403")
        check(psql(db, "SELECT count(*) FROM webhook_worker.paused_kinds") == "0", "and changed nothing")

        # Read-only: no action buttons, every POST refused.
        readonly = "http://127.0.0.1:%d" % readonly_port
        status, _, body = http("GET", readonly + "/console/deliveries/" + acme_delivery, ci_secret)
        check(status == 200 and 'method="post"' not in body and "read-only" in body, "read-only renders no actions")
        status, _, _ = http("POST", readonly + "/console/jobs/pause", ci_secret, {"kind": "noop"})
        check(status == 403, "read-only refuses a POST with 403")
        status, _, _ = http("POST", readonly + "/console/endpoints/ordering", ci_secret,
                            {"endpoint": "cl_01acme", "ordering": "fifo"})
        check(status == 403 and psql(db, fifo_sql) == "f", "read-only refuses to change an endpoint's ordering")
        status, _, _ = http("POST", readonly + "/console/endpoints/limits", ci_secret,
                            {"endpoint": "cl_03beta", "max_in_flight": "1"})
        check(status == 403 and psql(db, "SELECT coalesce(max_in_flight, 0) FROM webhook_worker.endpoints"
                                         " WHERE key = 'client:cl_03beta'") == "0",
              "read-only refuses to set limits")

        # The audit page lists what alice did, and the refusals.
        driver.get(console + "/console/audit")
        body = text()
        check("delivery.resend" in body and "delivery.resend_range" in body and "dead_letter.retry" in body
              and "endpoint.disable" in body and "endpoint.test" in body and "endpoint.set" in body
              and "endpoint.set_limits" in body and "refused: bad CSRF token" in body,
              "the audit page lists the actions and the refusals")
        audit = psql(db, "SELECT count(*) FROM webhook_worker.console_audit WHERE actor = 'alice' AND outcome = 'ok'"
                         " AND action NOT LIKE 'console.%'")
        check(audit == "12", "twelve actions by alice recorded ok in console_audit (%s)" % audit)
        sign_ins = psql(db, "SELECT count(*) FROM webhook_worker.console_audit WHERE action = 'console.sign_in'")
        check(sign_ins != "0", "sign-ins recorded in console_audit (%s)" % sign_ins)
    finally:
        if driver:
            driver.quit()
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        receiver.shutdown()
        if failures:
            for log in sorted(os.listdir(logs)):
                print("---- %s (last lines)" % log, file=sys.stderr)
                with open(os.path.join(logs, log)) as f:
                    print("".join(f.readlines()[-25:]), file=sys.stderr)
        subprocess.run(["rm", "-rf", logs])
        subprocess.run(["psql", base, "-X", "-q", "-c", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name],
                       capture_output=True)
    elapsed = time.monotonic() - START
    passed = "console browser test: %d failed, in %.1f s" % (len(failures), elapsed)
    print(passed)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
