import Foundation
import Logging
import NIOCore
@testable import TestSupport
import Testing
import WebhookDelivery
import WebhookReceiver

@Suite("Network policy", .timeLimit(.minutes(4)))
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
        "documentation and other special-purpose blocks are refused in both families, as IANA lists them",
        arguments: [
            ("192.0.2.1", IPAddressClass.documentation), ("198.51.100.7", .documentation),
            ("203.0.113.255", .documentation),
            ("2001:db8::1", .documentation), ("3fff:fff::1", .documentation), ("::ffff:192.0.2.1", .documentation),
            ("2002:c000:201::", .documentation), ("192.0.0.8", .reserved), ("192.88.99.1", .reserved),
            ("198.19.255.255", .reserved), ("2001:2::5", .reserved), ("2001:100::1", .reserved), ("5f00::1", .reserved),
            ("100::1", .reserved), ("64:ff9b:1::1", .privateNetwork), ("fec0::1", .privateNetwork),
        ])
    func specialPurpose(literal: String, expected: IPAddressClass) {
        #expect(IPAddressClass.of(Self.bytes(literal)) == expected)
    }

    @Test(
        "blocks IANA marks globally reachable are allowed, even inside a refused block",
        arguments: [
            "192.0.0.9", "192.0.0.10", "192.31.196.1", "192.175.48.1", "2001:1::1", "2001:1::3", "2001:3::1",
            "2001:20::1", "2620:4f:8000::1", "192.0.3.1", "198.51.99.255", "203.0.114.0", "2001:db9::1", "4000::1",
        ])
    func globalInsideSpecial(literal: String) {
        #expect(IPAddressClass.of(Self.bytes(literal)) == .global)
    }

    @Test("the special-purpose tables are well formed: family sizes, no host bits, no duplicate blocks")
    func tables() {
        for (table, size) in [(SpecialPurposeRange.ipv4, 4), (SpecialPurposeRange.ipv6, 16)] {
            var seen: Set<String> = []
            for range in table {
                #expect(range.prefix.count == size, "\(range)")
                // The block's own address with everything past the prefix cleared is itself.
                var bits = range.length
                for byte in range.prefix {
                    let mask: UInt8 = bits >= 8 ? 0xff : (bits <= 0 ? 0 : ~(0xff >> UInt8(bits)))
                    #expect(byte & ~mask == 0, "host bits set in \(range)")
                    bits -= 8
                }
                #expect(range.contains(range.prefix))
                #expect(seen.insert("\(range.prefix)/\(range.length)").inserted, "duplicate \(range)")
            }
        }
    }

    @Test(
        "public addresses are allowed",
        arguments: [
            "93.184.216.34", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ])
    func allowed(literal: String) {
        #expect(IPAddressClass.of(Self.bytes(literal)) == .global)
    }

    @Test("refused destinations get no connection at all; the allow flags let loopback through")
    func refusedWithoutConnecting() async throws {
        let receiver = try await WebhookReceiverServer.start()
        let strict = WebhookSender(configuration: .init(allowHTTP: true, allowPrivateNetworks: false))
        let logger = Logger(label: "test")
        for url in [
            "http://127.0.0.1:\(receiver.port)/", "http://localhost:\(receiver.port)/",
            "http://[::1]:\(receiver.port)/",
            "http://[::ffff:127.0.0.1]:\(receiver.port)/", "http://0.0.0.0:\(receiver.port)/",
        ] {
            let result = await strict.post(url: url, headers: [], body: [], logger: logger)
            #expect(result.errorClass == .policyRefused, "\(url): \(result.error ?? "")")
            #expect(result.isPermanent)
        }
        #expect(receiver.connectionCount == 0)

        let httpsOnly = WebhookSender(configuration: .init(allowHTTP: false, allowPrivateNetworks: true))
        let plain = await httpsOnly.post(
            url: "http://127.0.0.1:\(receiver.port)/", headers: [], body: [], logger: logger)
        #expect(plain.errorClass == .policyRefused && plain.error?.contains("https") == true)
        for bad in ["ftp://example.com/x", "not a url", "file:///etc/passwd", "https://"] {
            let result = await httpsOnly.post(url: bad, headers: [], body: [], logger: logger)
            #expect(result.isPermanent, "\(bad) should be refused for good")
        }
        #expect(receiver.connectionCount == 0)

        let relaxed = WebhookSender(configuration: .init(allowHTTP: true, allowPrivateNetworks: true))
        let ok = await relaxed.post(
            url: "http://127.0.0.1:\(receiver.port)/", headers: [], body: Array("{}".utf8), logger: logger)
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
        #expect(
            NetworkPolicy(allowHTTP: true, allowPrivateNetworks: true).refusal(
                forPeer: try .init(ipAddress: "127.0.0.1", port: 80)) == nil)
    }
}
