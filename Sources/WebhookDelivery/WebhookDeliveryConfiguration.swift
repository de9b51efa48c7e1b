import JobQueue

/// How webhooks are built and sent.
public struct WebhookDeliveryConfiguration: Sendable {
    /// Waits between attempts of one delivery, and how many attempts it gets.
    public var retryStrategy: any RetryStrategy
    /// The whole request, connection to last byte read.
    public var requestTimeout: Duration
    public var connectTimeout: Duration
    /// Allow `http://` destinations (development and tests).
    public var allowHTTP: Bool
    /// Allow loopback, private, link-local and other internal destinations (development and tests).
    public var allowPrivateNetworks: Bool
    /// `mcp_endpoint` is `<base>/<provider slug>/<provider account id>`.
    public var mcpEndpointBase: String
    public var userAgent: String
    /// The most of a response body read; the rest is dropped and the connection closed.
    public var maxResponseBytes: Int
    /// The most of a response body stored in `delivery_attempts.response_excerpt`.
    public var excerptBytes: Int
    /// Keep-alive HTTP/1.1 connections to one receiver host at most; set it to the replica's
    /// concurrency so that one busy receiver can use every slot.
    public var connectionsPerHost: Int
    /// Deliveries to one endpoint (one OAuth client) in flight at once, across all replicas,
    /// before its adaptive limit has moved (``AdaptiveLimit``): its starting limit.
    public var endpointConcurrency: Int
    /// The most an endpoint's adaptive limit grows to.
    public var endpointMaxConcurrency: Int
    /// The endpoint's circuit opens after this many failures in a row (timeouts, connection
    /// errors, 5xx).
    public var failureThreshold: Int
    /// The first cool-down of an open circuit; it doubles with each trip up to ``maxCooldown``.
    public var cooldown: Duration
    public var maxCooldown: Duration
    /// An endpoint failing for this long without a single success is disabled.
    public var disableAfter: Duration
    /// How long a client's previous secret keeps signing after it was retired.
    public var secretOverlap: Duration
    /// The longest pause an endpoint gets from a 429 or 503 with `Retry-After`: no request goes
    /// to it before the time it asked for, up to this.
    public var maxEndpointPause: Duration
    /// Send every delivery through this HTTP proxy (`CONNECT`); nil: connect directly.
    public var proxy: EgressProxy?

    public init(
        retryStrategy: any RetryStrategy = .standard,
        requestTimeout: Duration = .seconds(15),
        connectTimeout: Duration = .seconds(5),
        allowHTTP: Bool = false,
        allowPrivateNetworks: Bool = false,
        mcpEndpointBase: String = "mcp://core.ai",
        userAgent: String = "Echo-OAuth-Webhooks/1.0",
        maxResponseBytes: Int = 64 * 1024,
        excerptBytes: Int = 1024,
        connectionsPerHost: Int = 32,
        endpointConcurrency: Int = 4,
        endpointMaxConcurrency: Int = 64,
        failureThreshold: Int = 5,
        cooldown: Duration = .seconds(30),
        maxCooldown: Duration = .seconds(15 * 60),
        disableAfter: Duration = .seconds(5 * 86_400),
        secretOverlap: Duration = .seconds(86_400),
        maxEndpointPause: Duration = .seconds(3600)
    ) {
        self.retryStrategy = retryStrategy
        self.requestTimeout = requestTimeout
        self.connectTimeout = connectTimeout
        self.allowHTTP = allowHTTP
        self.allowPrivateNetworks = allowPrivateNetworks
        self.mcpEndpointBase = mcpEndpointBase
        self.userAgent = userAgent
        self.maxResponseBytes = maxResponseBytes
        self.excerptBytes = excerptBytes
        self.connectionsPerHost = max(1, connectionsPerHost)
        self.endpointConcurrency = max(1, endpointConcurrency)
        self.endpointMaxConcurrency = max(1, endpointMaxConcurrency)
        self.failureThreshold = max(1, failureThreshold)
        self.cooldown = cooldown
        self.maxCooldown = max(cooldown, maxCooldown)
        self.disableAfter = disableAfter
        self.secretOverlap = secretOverlap
        self.maxEndpointPause = maxEndpointPause
    }

    /// The adaptive limit's rule: from 1 to ``endpointMaxConcurrency``, starting at
    /// ``endpointConcurrency``.
    public var adaptiveLimit: AdaptiveLimit.Settings {
        AdaptiveLimit.Settings(floor: 1, initial: endpointConcurrency, ceiling: endpointMaxConcurrency)
    }

    /// How long a probe may take before another delivery may probe instead (its replica may
    /// have died mid-probe).
    var probeTimeout: Duration { requestTimeout + .seconds(5) }
}
