# syntax=docker/dockerfile:1
#
# webhook-worker container image: one static-stdlib Swift binary on Debian 12 (bookworm) slim.
#
#   docker build -t webhook-worker:local .
#   docker run --rm -e DATABASE_URL=postgresql://... webhook-worker:local          # run
#   docker run --rm -e DATABASE_URL=postgresql://... webhook-worker:local migrate  # one command
#
# The SQL of sql/ is compiled into the binary (the EmbedSQL build-tool plugin), so the image
# carries no sql/ folder: `migrate` and `run` need nothing but DATABASE_URL.

# The resolved dependencies (swift-log, swift-metrics, async-http-client, swift-service-lifecycle,
# ...) declare swift-tools-version 6.2, so the toolchain must be 6.2 or newer even though
# Package.swift itself says 6.0. The default matches the toolchain the project is developed and
# tested with (6.3.x). Override with --build-arg SWIFT_VERSION=6.2 if you must.
ARG SWIFT_VERSION=6.3

# ---------------------------------------------------------------------------------------------
# Build stage
# ---------------------------------------------------------------------------------------------
FROM swift:${SWIFT_VERSION}-bookworm AS build

# libpq-dev and pkg-config: the CLibPQ system-library target finds libpq through pkg-config.
# Versions are not pinned: bookworm's own libpq (PostgreSQL 15) is what the run stage installs.
# hadolint ignore=DL3008
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update \
    && apt-get install -y --no-install-recommends libpq-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first, so that a source change does not fetch them again. Package.resolved is
# git-ignored; when the build context has one (a developer's checkout), `Package.*` copies it
# and the image builds the same dependency versions that were tested; otherwise SwiftPM
# resolves the newest versions Package.swift allows.
COPY Package.* ./
RUN swift package resolve

# Tests/ is copied only because Package.swift declares the test target and SwiftPM looks for its
# folder whenever it loads the package; the tests are neither built nor shipped.
# Plugins/ and sql/: the EmbedSQL plugin compiles sql/ into the binary during the build.
COPY Sources ./Sources
COPY Tests ./Tests
COPY Plugins ./Plugins
COPY sql ./sql

# The release binary with the Swift runtime and Foundation linked statically: the result needs
# only glibc, libstdc++/libgcc, zlib and libpq at run time. The Swift backtracer goes along so
# that a crash prints a symbolicated backtrace to the container log.
RUN swift build -c release --product webhook-worker --static-swift-stdlib \
    && install -D -m 0755 "$(swift build -c release --show-bin-path)/webhook-worker" /staging/webhook-worker \
    && install -D -m 0755 /usr/libexec/swift/linux/swift-backtrace-static /staging/swift-backtrace-static

# ---------------------------------------------------------------------------------------------
# Run stage
# ---------------------------------------------------------------------------------------------
FROM debian:bookworm-slim

# libpq5: the PostgreSQL client library (the only shared library the binary needs that slim
#   lacks; it brings libssl3 and the Kerberos/LDAP libraries it links with).
# ca-certificates: trust roots for HTTPS webhook deliveries (swift-nio-ssl reads
#   /etc/ssl/certs).
# tzdata: named time zones for Foundation. The webhook's timestamp force-unwraps
#   TimeZone(identifier: "UTC"); Foundation's bundled ICU data should resolve it without tzdata,
#   but the package is small insurance against a crash on every fan-out.
# No libcurl4: nothing imports FoundationNetworking (HTTP goes through AsyncHTTPClient/NIO).
# No libxml2: nothing imports FoundationXML.
# hadolint ignore=DL3008
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libpq5 tzdata \
    && rm -rf /var/lib/apt/lists/*

# An unprivileged user with a fixed id (10001), so that volume permissions and Kubernetes'
# runAsNonRoot check (which needs a numeric USER) work.
RUN groupadd --gid 10001 worker \
    && useradd --uid 10001 --gid worker --no-log-init --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin worker

COPY --from=build /staging/webhook-worker /usr/local/bin/webhook-worker
COPY --from=build /staging/swift-backtrace-static /usr/local/libexec/swift/swift-backtrace-static

ENV SWIFT_BACKTRACE=enable=yes,sanitize=yes,threads=all,images=all,interactive=no,swift-backtrace=/usr/local/libexec/swift/swift-backtrace-static

# worker:worker
USER 10001:10001

# `run` handles SIGTERM: it stops claiming, gives in-flight jobs WORKER_SHUTDOWN_TIMEOUT (30 s by
# default) to finish, releases the rest and exits 0. Give the container a stop timeout above
# that (docker stop -t 40, Compose stop_grace_period: 40s, Kubernetes
# terminationGracePeriodSeconds: 40).
STOPSIGNAL SIGTERM
ENTRYPOINT ["webhook-worker"]
CMD ["run"]
