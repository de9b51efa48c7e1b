import Foundation
import Logging
import NIOCore
import Testing
import WebhookDelivery
import WebhookReceiver

@Suite("Network policy")
struct NetworkPolicyTests {
    static func bytes(_ literal: String) -> [UInt8] {
        var v4 = in_addr()
        if inet_pton(AF_INET, literal, &v4) == 1 { return withUnsafeBytes(of: v4) { Array($0) } }
        var v6 = in6_addr()
        precondition(inet_pton(AF_INET6, literal, &v6) == 1, "bad literal \(literal)")
        return withUnsafeBytes(of: v6) { Array($0) }
    }

    @Test(
        "internal addresses are refused, in IPv4, IPv6 and embedded forms",
        arguments: [
            ("127.0.0.1", IPAddressClass.loopback), ("127.255.0.9", .loopback), ("::1", .loopback),
            ("10.1.2.3", .privateNetwork), ("172.16.0.1", .privateNetwork), ("172.31.255.255", .privateNetwork),
            ("192.168.1.1", .privateNetwork), ("169.254.169.254", .linkLocal), ("fe80::1", .linkLocal),
            ("100.64.0.1", .carrierGradeNAT), ("100.127.255.254", .carrierGradeNAT), ("224.0.0.1", .multicast),
            ("ff02::1", .multicast), ("0.0.0.0", .unspecified), ("::", .unspecified), ("fc00::1", .uniqueLocal),
            ("fd00:ec2::254", .uniqueLocal), ("::ffff:127.0.0.1", .loopback), ("::ffff:169.254.169.254", .linkLocal),
            ("::ffff:10.0.0.1", .privateNetwork), ("64:ff9b::a9fe:a9fe", .linkLocal), ("64:ff9b::7f00:1", .loopback),
            ("::127.0.0.1", .loopback), ("2002:7f00:1::", .loopback), ("2002:c0a8:101::1", .privateNetwork),
            ("255.255.255.255", .reserved), ("240.0.0.1", .reserved), ("2001:0::1", .reserved),
        ])
    func refused(literal: String, expected: IPAddressClass) {
        #expect(IPAddressClass.of(Self.bytes(literal)) == expected)
        #expect(expected.isInternal)
    }

    @Test(
        "public addresses are allowed",
        arguments: ["93.184.216.34", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"])
    func allowed(literal: String) {
        #expect(IPAddressClass.of(Self.bytes(literal)) == .global)
    }

    @Test("refused destinations get no connection at all; the allow flags let loopback through")
    func refusedWithoutConnecting() async throws {
        let receiver = try await WebhookReceiverServer.start()
        let strict = WebhookSender(configuration: .init(allowHTTP: true, allowPrivateNetworks: false))
        let logger = Logger(label: "test")
        for url in [
            "http://127.0.0.1:\(receiver.port)/", "http://localhost:\(receiver.port)/", "http://[::1]:\(receiver.port)/",
            "http://[::ffff:127.0.0.1]:\(receiver.port)/", "http://0.0.0.0:\(receiver.port)/",
        ] {
            let result = await strict.post(url: url, headers: [], body: [], logger: logger)
            #expect(result.errorClass == .policyRefused, "\(url): \(result.error ?? "")")
            #expect(result.isPermanent)
        }
        #expect(receiver.connectionCount == 0)

        let httpsOnly = WebhookSender(configuration: .init(allowHTTP: false, allowPrivateNetworks: true))
        let plain = await httpsOnly.post(url: "http://127.0.0.1:\(receiver.port)/", headers: [], body: [], logger: logger)
        #expect(plain.errorClass == .policyRefused && plain.error?.contains("https") == true)
        for bad in ["ftp://example.com/x", "not a url", "file:///etc/passwd", "https://"] {
            let result = await httpsOnly.post(url: bad, headers: [], body: [], logger: logger)
            #expect(result.isPermanent, "\(bad) should be refused for good")
        }
        #expect(receiver.connectionCount == 0)

        let relaxed = WebhookSender(configuration: .init(allowHTTP: true, allowPrivateNetworks: true))
        let ok = await relaxed.post(url: "http://127.0.0.1:\(receiver.port)/", headers: [], body: Array("{}".utf8), logger: logger)
        #expect(ok.status == 200)
        #expect(receiver.connectionCount == 1)

        try await strict.shutdown()
        try await httpsOnly.shutdown()
        try await relaxed.shutdown()
        await receiver.stop()
    }

    @Test("the peer of an open connection is checked again before a request is written")
    func peerCheck() throws {
        let policy = NetworkPolicy(allowHTTP: true, allowPrivateNetworks: false)
        #expect(policy.refusal(forPeer: try .init(ipAddress: "127.0.0.1", port: 80)) != nil)
        #expect(policy.refusal(forPeer: try .init(ipAddress: "::ffff:10.0.0.1", port: 443)) != nil)
        #expect(policy.refusal(forPeer: try .init(ipAddress: "93.184.216.34", port: 443)) == nil)
        #expect(NetworkPolicy(allowHTTP: true, allowPrivateNetworks: true).refusal(forPeer: try .init(ipAddress: "127.0.0.1", port: 80)) == nil)
    }
}
