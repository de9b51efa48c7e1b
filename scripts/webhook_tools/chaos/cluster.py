"""The chaos database: its own PostgreSQL cluster, the seeded web app (users, accounts, OAuth
clients pointing at the receiver), the test instruments, and the queue's state."""

import os
import subprocess

from ..core import ROOT, RunError, log
from ..postgres import PgBouncer, load_app_tables, migrate, psql_lines, recreate_database, run_script, with_dbname
from .settings import CHAOS_DB, HELD_ENDPOINTS, USERS, WHSEC


def terminate_sql(where):
    """pg_terminate_backend of the chaos database's backends matching `where` (not its own);
    selects how many it terminated."""
    return (f"SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = '{CHAOS_DB}' AND pid <> pg_backend_pid() AND {where}")



def start_cluster(chaos):
    log(f"PostgreSQL cluster in {os.path.relpath(chaos.pg_dir, ROOT)}"
        + (" (own, destroyed at the end)" if chaos.own_cluster else " (CHAOS_PG_DIR)"))
    chaos.server_url = run_script("pg", "start", chaos.pg_dir)
    recreate_database(chaos.server_url, CHAOS_DB, force=True)
    chaos.url = with_dbname(chaos.server_url, CHAOS_DB)
    log(f"database {chaos.url}")
    chaos.worker_url = chaos.url
    if chaos.pgbouncer:
        chaos.worker_url = PgBouncer(chaos.url, 20, "chaos").url
        log(f"replicas through PgBouncer (transaction mode) at {chaos.worker_url}, LISTEN direct")


def seed(chaos):
    migrate(chaos.binary, chaos.url)
    load_app_tables(chaos.url)

    base = f"http://127.0.0.1:{chaos.receiver.port}"
    # client id -> (behaviour, scopes, url path, secret, active, users granted)
    all_users = list(range(1, USERS + 1))
    chaos.clients = {
        "client-healthy-1": ("healthy", "profile,email,openid,integration", "/healthy/1", WHSEC, True, all_users),
        "client-healthy-2": ("healthy", "profile, integration ", "/healthy/2", "plain-secret-2", True, all_users),
        "client-healthy-3": ("healthy", "integration", "/healthy/3", None, True, [u for u in all_users if u % 2]),
        "client-flaky": ("flaky", "openid,integration", "/flaky", WHSEC, True, all_users),
        "client-slow": ("slow", "integration", "/slow", None, True, all_users[:6]),
        "client-degrade": ("degrade", "integration", "/degrade", None, True, all_users),
        "client-reset": ("reset", "integration,profile", "/reset", None, True, all_users[1:]),
        "client-fail": ("fail", "integration", "/fail", None, True, all_users),
        "client-gone": ("gone", "integration", "/gone", None, True, all_users[:4]),
        "client-hanging": ("hang", "integration", "/hang", WHSEC, True, all_users[2:]),
        "client-flapping": ("flap", "openid, integration", "/flap", "plain-secret-flap", True,
                            [u for u in all_users if u != 4]),
        # Never recipients.
        "client-wrong-scope": ("never", "profile,integrations", "/never/scope", None, True, all_users),
        "client-inactive": ("never", "integration", "/never/inactive", None, False, all_users),
        "client-revoked": ("never", "integration", "/never/revoked", None, True, all_users),
        "client-no-url": ("never", "integration", None, None, True, all_users),
    }
    chaos.client_behaviour = {cid: c[0] for cid, c in chaos.clients.items()}
    chaos.client_of = {c[0]: cid for cid, c in chaos.clients.items() if c[0] not in ("healthy", "never")}
    chaos.client_by_path = {c[2]: cid for cid, c in chaos.clients.items() if c[2]}
    chaos.secrets_by_path = {c[2]: c[3] for c in chaos.clients.values() if c[2]}
    chaos.receiver.secrets.update(chaos.secrets_by_path)

    def q(text):
        return "NULL" if text is None else "'" + text.replace("'", "''") + "'"

    sql = ["BEGIN;"]
    sql.append("INSERT INTO \"IntegrationDefinitionV2\" (id, name, slug, icon) VALUES "
               "('def-linear', 'Linear', 'linear', 'https://example.com/linear-icon.png');")
    chaos.accounts = []  # (account id, user id)
    for u in all_users:
        sql.append(f"INSERT INTO \"User\" (id, email, name) VALUES ('user-{u}', 'user{u}@example.com', 'User {u}');")
        for k in (1, 2):
            account = f"acct-{u}-{k}"
            external = "NULL" if (u, k) == (3, 2) else f"'lin_ext_{u}_{k}'"
            sql.append("INSERT INTO \"IntegrationAccount\" (id, \"accountId\", \"integrationDefinitionId\", "
                       f"\"integratedById\") VALUES ('{account}', {external}, 'def-linear', 'user-{u}');")
            chaos.accounts.append((account, f"user-{u}"))
    for cid, (_, scopes, path, secret, active, users) in chaos.clients.items():
        url = None if path is None else base + path
        sql.append("INSERT INTO \"OAuthClient\" (id, \"clientId\", name, \"allowedScopes\", \"webhookUrl\", "
                   f"\"webhookSecret\", \"isActive\") VALUES ({q(cid)}, {q(cid + '-public')}, {q(cid)}, "
                   f"{q(scopes)}, {q(url)}, {q(secret)}, {'true' if active else 'false'});")
        for u in users:
            revoked = "now()" if cid == "client-revoked" else "NULL"
            sql.append("INSERT INTO \"OAuthIntegrationGrant\" (id, \"clientId\", \"userId\", "
                       f"\"integrationAccountId\", \"revokedAt\") VALUES ('grant-{cid}-{u}', {q(cid)}, "
                       f"'user-{u}', 'acct-{u}-1', {revoked});")
    # Test instruments, outside the worker's schema: the events the web app inserted (with
    # their job ids, written in the insert's own statement), and every job ever created.
    sql.append("""
        CREATE TABLE chaos_events (
            seq bigint PRIMARY KEY, job_id bigint NOT NULL, account_id text NOT NULL,
            user_id text NOT NULL, created_at timestamptz NOT NULL);
        CREATE TABLE chaos_jobs (
            job_id bigint PRIMARY KEY, kind text NOT NULL, payload jsonb NOT NULL,
            created_at timestamptz NOT NULL);
        CREATE FUNCTION chaos_record_job() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO public.chaos_jobs (job_id, kind, payload, created_at)
            SELECT id, kind, payload, created_at FROM inserted ON CONFLICT DO NOTHING;
            RETURN NULL;
        END $$;
        CREATE TRIGGER chaos_record_job AFTER INSERT ON webhook_worker.jobs
            REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION chaos_record_job();
    """)
    sql.append("COMMIT;")
    psql_lines(chaos.url, "\n".join(sql))
    recipients = len([1 for c in chaos.clients.values() if c[0] != "never"])
    log(f"seeded {USERS} users, {len(chaos.accounts)} integration accounts, {len(chaos.clients)} OAuth clients "
        f"({recipients} recipients, {len(chaos.clients) - recipients} that must never be called); "
        f"receiver on 127.0.0.1:{chaos.receiver.port}")


def held_clients(chaos):
    return [chaos.client_of[b] for b in HELD_ENDPOINTS]


def queue_state(chaos):
    """The queue's jobs; `held`: deliveries of the never-succeeding endpoints (HELD_ENDPOINTS)
    that wait for their open circuit (snoozed: last_error 'waiting: ...'); `unsettled`: every
    other job, plus pending deliveries of the other endpoints."""
    clients = "ARRAY[" + ", ".join(f"'{c}'" for c in held_clients(chaos)) + "]::text[]"
    held = (f"j.kind = 'webhook.deliver' AND j.state = 'available' AND j.last_error LIKE 'waiting:%' "
            f"AND j.concurrency_key = ANY(SELECT 'client:' || c FROM unnest({clients}) c)")
    row = psql_lines(chaos.url, f"""
        SELECT (SELECT count(*) FROM webhook_worker.jobs),
               (SELECT count(*) FROM webhook_worker.jobs WHERE state = 'running'),
               (SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'pending'),
               (SELECT count(*) FROM webhook_worker.jobs j WHERE {held}),
               (SELECT count(*) FROM webhook_worker.webhook_deliveries
                WHERE status = 'pending' AND oauth_client_id <> ALL({clients}))""")[0]
    jobs, running, pending, held_jobs, pending_other = (int(x) for x in row.split("|"))
    return {"jobs": jobs, "running": running, "pending": pending, "held": held_jobs,
            "unsettled": jobs - held_jobs + pending_other}


def cli(chaos, *args, timeout=60):
    """A webhook-worker operator command against the chaos database; its standard output."""
    done = subprocess.run([chaos.binary, *args, "--database-url", chaos.url], capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RunError(f"webhook-worker {' '.join(args)} failed ({done.returncode}): "
                         f"{(done.stderr or done.stdout).strip()[-400:]}")
    return done.stdout.strip()
