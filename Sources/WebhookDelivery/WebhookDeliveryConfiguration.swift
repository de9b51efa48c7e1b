import JobQueue

/// How webhooks are built and sent.
public struct WebhookDeliveryConfiguration: Sendable {
    /// Waits between attempts of one delivery; its step count sets the attempts.
    public var retryPolicy: RetryPolicy
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

    public init(
        retryPolicy: RetryPolicy = .standard,
        requestTimeout: Duration = .seconds(15),
        connectTimeout: Duration = .seconds(5),
        allowHTTP: Bool = false,
        allowPrivateNetworks: Bool = false,
        mcpEndpointBase: String = "mcp://core.ai",
        userAgent: String = "Echo-OAuth-Webhooks/1.0",
        maxResponseBytes: Int = 64 * 1024,
        excerptBytes: Int = 1024,
        connectionsPerHost: Int = 32
    ) {
        self.retryPolicy = retryPolicy
        self.requestTimeout = requestTimeout
        self.connectTimeout = connectTimeout
        self.allowHTTP = allowHTTP
        self.allowPrivateNetworks = allowPrivateNetworks
        self.mcpEndpointBase = mcpEndpointBase
        self.userAgent = userAgent
        self.maxResponseBytes = maxResponseBytes
        self.excerptBytes = excerptBytes
        self.connectionsPerHost = max(1, connectionsPerHost)
    }
}
