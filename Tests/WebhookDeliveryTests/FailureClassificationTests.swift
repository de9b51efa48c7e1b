import AsyncHTTPClient
import Foundation
import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
@testable import TestSupport
import Testing
@testable import WebhookDelivery

/// An attempt without a response is classified by the error's type, never by its message.
@Suite("Failure classification", .timeLimit(.minutes(4)))
struct FailureClassificationTests {
    @Test(
        "NIO, NIOSSL and AsyncHTTPClient errors map to their classes",
        arguments: [
            (HTTPClientError.deadlineExceeded as any Error, DeliveryErrorClass.timeout),
            (HTTPClientError.connectTimeout, .timeout),
            (HTTPClientError.tlsHandshakeTimeout, .timeout),
            (HTTPClientError.remoteConnectionClosed, .connectionReset),
            (HTTPClientError.invalidURL, .error),
            (CancellationError(), .timeout),
            (NIOSSLError.handshakeFailed(.unknownError([])), .tls),
            (NIOSSLExtraError.failedToValidateHostname, .tls),
            (IOError(errnoCode: ECONNREFUSED, reason: "connect"), .connectFailed),
            (IOError(errnoCode: EHOSTUNREACH, reason: "connect"), .connectFailed),
            (IOError(errnoCode: ECONNRESET, reason: "read"), .connectionReset),
            (IOError(errnoCode: EPIPE, reason: "write"), .connectionReset),
            (IOError(errnoCode: ETIMEDOUT, reason: "read"), .timeout),
            (IOError(errnoCode: ENOMEM, reason: "read"), .error),
            (ChannelError.ioOnClosedChannel, .connectionReset),
            (ChannelError.eof, .connectionReset),
            (ChannelError.connectTimeout(.seconds(1)), .timeout),
            (HTTPParserError.invalidEOFState, .connectionReset),
            (HTTPParserError.invalidHeaderToken, .error),
        ])
    func classified(error: any Error, expected: DeliveryErrorClass) {
        #expect(WebhookSender.classify(error).0 == expected, "\(error)")
    }

    @Test("words in a message do not decide the class")
    func wordsDoNotCount() {
        struct Odd: Error, CustomStringConvertible { var description: String { "SSL handshake timeout ECONNRESET" } }
        #expect(WebhookSender.classify(Odd()) == (.error, "SSL handshake timeout ECONNRESET"))
    }

    @Test("a port nobody listens on is connect_failed, retried")
    func connectionRefused() async throws {
        // A port bound but not listening refuses connections, and stays ours for the test (a
        // port merely closed could be taken by another test's server meanwhile).
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0
            }
        }
        try #require(bound)
        let port = Int(UInt16(bigEndian: address.sin_port))
        let sender = WebhookSender(
            configuration: WebhookDeliveryConfiguration(
                requestTimeout: .seconds(5), connectTimeout: .seconds(2), allowHTTP: true, allowPrivateNetworks: true))
        let result = await sender.post(
            url: "http://127.0.0.1:\(port)/", headers: [], body: Array("{}".utf8), logger: TestDatabase.logger)
        try await sender.shutdown()
        #expect(result.errorClass == .connectFailed, "\(result)")
        #expect(!result.isPermanent)
    }
}
