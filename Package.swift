// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "webhook-worker",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "webhook-worker", targets: ["webhook-worker"]),
        .library(name: "LibPQ", targets: ["LibPQ"]),
        .library(name: "JobQueue", targets: ["JobQueue"]),
        .library(name: "WebhookDelivery", targets: ["WebhookDelivery"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.0"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.29.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.25.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.0.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-otel/swift-w3c-trace-context.git", from: "1.0.0"),
        // The OTLP exporter, over HTTP only: its gRPC trait would build grpc-swift as well.
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"]), .brew(["libpq"])]
        ),
        .target(
            name: "LibPQ",
            dependencies: [
                "CLibPQ",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "WebhookWorkerSchema",
            dependencies: ["LibPQ", "JobQueue", "WebhookDelivery"]
        ),
        // The SQL of sql/<target in snake case>/ (migrations and statements), compiled into the
        // target at build time by embed-sql-tool; see Plugins/EmbedSQL.
        .executableTarget(name: "embed-sql-tool"),
        .plugin(name: "EmbedSQL", capability: .buildTool(), dependencies: ["embed-sql-tool"]),
        .target(
            name: "JobQueue",
            dependencies: [
                "LibPQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
            ],
            plugins: ["EmbedSQL"]
        ),
        .target(
            name: "WebhookDelivery",
            dependencies: [
                "LibPQ",
                "JobQueue",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            plugins: ["EmbedSQL"]
        ),
        // Exporting spans (OTLP over HTTP) when OTEL_EXPORTER_OTLP_ENDPOINT is set.
        .target(
            name: "TraceExport",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
            ]
        ),
        .target(
            name: "WebhookReceiver",
            dependencies: [
                "WebhookDelivery",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .executableTarget(
            name: "webhook-worker",
            dependencies: [
                "LibPQ",
                "JobQueue",
                "WebhookDelivery",
                "WebhookReceiver",
                "WebhookWorkerSchema",
                "TraceExport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                // The console's session cookies and CSRF tokens (HMAC), and its response headers.
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]
        ),
        // The tests' shared fixtures, kept out of the product: a database per test, a worker running
        // in the background, receivers that misbehave on purpose, PgBouncer, a TCP proxy.
        .target(
            name: "TestSupport",
            dependencies: [
                "LibPQ",
                "JobQueue",
                "WebhookDelivery",
                "WebhookReceiver",
                "WebhookWorkerSchema",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "Tests/TestSupport"
        ),
        .testTarget(
            name: "LibPQTests",
            dependencies: [
                "TestSupport",
                "LibPQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        // On a schema of JobQueue's own (not webhook_worker), with JobQueue and LibPQ alone.
        .testTarget(
            name: "JobQueueTests",
            dependencies: [
                "TestSupport",
                "LibPQ",
                "JobQueue",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "WebhookDeliveryTests",
            dependencies: [
                "TestSupport",
                "LibPQ",
                "JobQueue",
                "WebhookDelivery",
                "WebhookReceiver",
                "WebhookWorkerSchema",
                "TraceExport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        // The executable's commands, settings and composed schema.
        .testTarget(
            name: "WebhookWorkerTests",
            dependencies: [
                "TestSupport",
                "webhook-worker",
                "LibPQ",
                "JobQueue",
                "WebhookDelivery",
                "WebhookWorkerSchema",
                "WebhookReceiver",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "PropertyBased", package: "swift-property-based"),
                // The console's router, called without a server.
                .product(name: "Hummingbird", package: "hummingbird"),
            ]
        ),
    ]
)
