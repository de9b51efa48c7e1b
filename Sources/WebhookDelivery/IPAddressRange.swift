import Foundation

/// Which destinations the network policy refuses, and why.
///
/// Addresses are looked up in ``SpecialPurposeRange/ipv4`` and ``SpecialPurposeRange/ipv6``, one
/// table per family mirroring IANA's special-purpose address registries, longest prefix first.
/// IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) and
/// 6to4 (`2002::/16`) forms are judged by the IPv4 address they carry, so `::ffff:127.0.0.1` is
/// loopback like `127.0.0.1`.
public enum IPAddressClass: String, Sendable, Equatable {
    case loopback
    case privateNetwork = "private"
    case linkLocal = "link-local"
    case carrierGradeNAT = "carrier-grade NAT"
    case multicast
    case unspecified
    /// Documentation examples (192.0.2.0/24, 2001:db8::/32, ...): never a real destination.
    case documentation
    case reserved
    case uniqueLocal = "unique-local"
    /// Not internal: allowed.
    case global

    public var isInternal: Bool { self != .global }

    /// Classifies 4 (IPv4) or 16 (IPv6) address bytes.
    public static func of(_ bytes: [UInt8]) -> IPAddressClass {
        switch bytes.count {
        case 4: return SpecialPurposeRange.lookup(bytes, in: SpecialPurposeRange.ipv4)
        case 16: return SpecialPurposeRange.lookup(bytes, in: SpecialPurposeRange.ipv6)
        default: return .reserved
        }
    }
}

/// One row of a special-purpose address registry: a CIDR block and what an address in it is.
public struct SpecialPurposeRange: Sendable, CustomStringConvertible {
    /// What an address in the block is.
    public enum Meaning: Sendable, Equatable {
        case `class`(IPAddressClass)
        /// The block carries an IPv4 address at this byte offset; that address decides.
        case carriesIPv4(at: Int)
    }

    public let prefix: [UInt8]
    public let length: Int
    public let meaning: Meaning
    /// The registry's name for the block.
    public let name: String

    /// `cidr` is `address/length`; the tables are fixed text, so a typo stops the program at once.
    init(_ cidr: String, _ meaning: Meaning, _ name: String) {
        let parts = cidr.split(separator: "/")
        precondition(parts.count == 2, "bad CIDR \(cidr)")
        let length = Int(parts[1])!
        var bytes: [UInt8]
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, String(parts[0]), &v4) == 1 {
            bytes = withUnsafeBytes(of: v4) { Array($0) }
        } else {
            precondition(inet_pton(AF_INET6, String(parts[0]), &v6) == 1, "bad CIDR \(cidr)")
            bytes = withUnsafeBytes(of: v6) { Array($0) }
        }
        precondition(length >= 0 && length <= bytes.count * 8, "bad CIDR \(cidr)")
        self.prefix = bytes
        self.length = length
        self.meaning = meaning
        self.name = name
    }

    init(_ cidr: String, _ kind: IPAddressClass, _ name: String) {
        self.init(cidr, .class(kind), name)
    }

    public var description: String { "\(name) (/\(length)): \(meaning)" }

    /// Whether `address` (of the same family) lies in the block.
    public func contains(_ address: [UInt8]) -> Bool {
        guard address.count == prefix.count else { return false }
        var bits = length
        for index in prefix.indices where bits > 0 {
            let mask: UInt8 = bits >= 8 ? 0xff : ~(0xff >> UInt8(bits))
            if address[index] & mask != prefix[index] & mask { return false }
            bits -= 8
        }
        return true
    }

    /// The class of `address` by the most specific block of `table` holding it; global when none does.
    static func lookup(_ address: [UInt8], in table: [SpecialPurposeRange]) -> IPAddressClass {
        guard let range = table.filter({ $0.contains(address) }).max(by: { $0.length < $1.length }) else {
            return .global
        }
        switch range.meaning {
        case .class(let kind):
            return kind
        case .carriesIPv4(let offset):
            return lookup(Array(address[offset..<offset + 4]), in: ipv4)
        }
    }

    /// IANA's IPv4 Special-Purpose Address Registry (RFC 6890 and later), with multicast from the
    /// IPv4 Multicast Address Space Registry. Blocks the registry marks globally reachable are
    /// `global`, so a more specific one inside a refused block is allowed.
    public static let ipv4: [SpecialPurposeRange] = [
        .init("0.0.0.0/8", .unspecified, "This network"),  // RFC 791
        .init("10.0.0.0/8", .privateNetwork, "Private-Use"),  // RFC 1918
        .init("100.64.0.0/10", .carrierGradeNAT, "Shared Address Space"),  // RFC 6598
        .init("127.0.0.0/8", .loopback, "Loopback"),  // RFC 1122
        .init("169.254.0.0/16", .linkLocal, "Link Local"),  // RFC 3927; includes 169.254.169.254, cloud metadata
        .init("172.16.0.0/12", .privateNetwork, "Private-Use"),  // RFC 1918
        .init("192.0.0.0/24", .reserved, "IETF Protocol Assignments"),  // RFC 6890
        .init("192.0.0.9/32", .global, "Port Control Protocol Anycast"),  // RFC 7723
        .init("192.0.0.10/32", .global, "Traversal Using Relays around NAT Anycast"),  // RFC 8155
        .init("192.0.2.0/24", .documentation, "Documentation (TEST-NET-1)"),  // RFC 5737
        .init("192.31.196.0/24", .global, "AS112-v4"),  // RFC 7535
        .init("192.52.193.0/24", .global, "AMT"),  // RFC 7450
        .init("192.88.99.0/24", .reserved, "Deprecated (6to4 Relay Anycast)"),  // RFC 7526
        .init("192.168.0.0/16", .privateNetwork, "Private-Use"),  // RFC 1918
        .init("192.175.48.0/24", .global, "Direct Delegation AS112 Service"),  // RFC 7534
        .init("198.18.0.0/15", .reserved, "Benchmarking"),  // RFC 2544
        .init("198.51.100.0/24", .documentation, "Documentation (TEST-NET-2)"),  // RFC 5737
        .init("203.0.113.0/24", .documentation, "Documentation (TEST-NET-3)"),  // RFC 5737
        .init("224.0.0.0/4", .multicast, "Multicast"),  // RFC 5771
        .init("240.0.0.0/4", .reserved, "Reserved"),  // RFC 1112
        .init("255.255.255.255/32", .reserved, "Limited Broadcast"),  // RFC 919
    ]

    /// IANA's IPv6 Special-Purpose Address Registry, with multicast and the deprecated
    /// site-local block from the IPv6 Address Space registry, and the IPv4-compatible form.
    public static let ipv6: [SpecialPurposeRange] = [
        .init("::/128", .unspecified, "Unspecified Address"),  // RFC 4291
        .init("::1/128", .loopback, "Loopback Address"),  // RFC 4291
        .init("::/96", .carriesIPv4(at: 12), "IPv4-compatible (deprecated)"),  // RFC 4291; still routed by some stacks
        .init("::ffff:0:0/96", .carriesIPv4(at: 12), "IPv4-mapped Address"),  // RFC 4291
        .init("64:ff9b::/96", .carriesIPv4(at: 12), "IPv4-IPv6 Translat."),  // RFC 6052
        .init("64:ff9b:1::/48", .privateNetwork, "IPv4-IPv6 Translat. (local use)"),  // RFC 8215
        .init("100::/64", .reserved, "Discard-Only Address Block"),  // RFC 6666
        .init("100:0:0:1::/64", .reserved, "Dummy IPv6 Prefix"),  // RFC 9780
        .init("2001::/23", .reserved, "IETF Protocol Assignments"),  // RFC 2928
        // Teredo tunnels to an obfuscated IPv4 address: refused rather than guessed.
        .init("2001::/32", .reserved, "TEREDO"),  // RFC 4380
        .init("2001:1::1/128", .global, "Port Control Protocol Anycast"),  // RFC 7723
        .init("2001:1::2/128", .global, "Traversal Using Relays around NAT Anycast"),  // RFC 8155
        .init("2001:1::3/128", .global, "DNS-SD Service Registration Protocol Anycast"),  // RFC 9665
        .init("2001:2::/48", .reserved, "Benchmarking"),  // RFC 5180
        .init("2001:3::/32", .global, "AMT"),  // RFC 7450
        .init("2001:4:112::/48", .global, "AS112-v6"),  // RFC 7535
        .init("2001:10::/28", .reserved, "Deprecated (previously ORCHID)"),  // RFC 4843
        .init("2001:20::/28", .global, "ORCHIDv2"),  // RFC 7343
        .init("2001:30::/28", .global, "Drone Remote ID Protocol Entity Tags (DETs) Prefix"),  // RFC 9374
        .init("2001:db8::/32", .documentation, "Documentation"),  // RFC 3849
        .init("2002::/16", .carriesIPv4(at: 2), "6to4"),  // RFC 3056
        .init("2620:4f:8000::/48", .global, "Direct Delegation AS112 Service"),  // RFC 7534
        .init("3fff::/20", .documentation, "Documentation"),  // RFC 9637
        .init("5f00::/16", .reserved, "Segment Routing (SRv6) SIDs"),  // RFC 9602
        .init("fc00::/7", .uniqueLocal, "Unique-Local"),  // RFC 4193
        .init("fe80::/10", .linkLocal, "Link-Local Unicast"),  // RFC 4291
        .init("fec0::/10", .privateNetwork, "Site-Local (deprecated)"),  // RFC 3879
        .init("ff00::/8", .multicast, "Multicast"),  // RFC 4291
    ]
}
