/// Which destinations the network policy refuses, and why.
///
/// Addresses are classified on their bytes: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`) forms are judged by the IPv4
/// address they carry, so `::ffff:127.0.0.1` is loopback like `127.0.0.1`.
public enum IPAddressClass: String, Sendable, Equatable {
    case loopback
    case privateNetwork = "private"
    case linkLocal = "link-local"
    case carrierGradeNAT = "carrier-grade NAT"
    case multicast
    case unspecified
    case reserved
    case uniqueLocal = "unique-local"
    /// Not internal: allowed.
    case global

    public var isInternal: Bool { self != .global }

    /// Classifies 4 (IPv4) or 16 (IPv6) address bytes.
    public static func of(_ bytes: [UInt8]) -> IPAddressClass {
        switch bytes.count {
        case 4: return ipv4(bytes[0], bytes[1], bytes[2], bytes[3])
        case 16: return ipv6(bytes)
        default: return .reserved
        }
    }

    static func ipv4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) -> IPAddressClass {
        switch (a, b) {
        case (0, _): return .unspecified  // 0.0.0.0/8, "this network"
        case (127, _): return .loopback
        case (10, _): return .privateNetwork
        case (172, 16...31): return .privateNetwork
        case (192, 168): return .privateNetwork
        case (169, 254): return .linkLocal  // includes 169.254.169.254, cloud metadata
        case (100, 64...127): return .carrierGradeNAT
        case (224...239, _): return .multicast
        case (240...255, _): return .reserved  // includes 255.255.255.255
        case (192, 0) where c == 0: return .reserved  // IETF protocol assignments
        case (198, 18...19): return .reserved  // benchmarking
        default: return .global
        }
    }

    static func ipv6(_ bytes: [UInt8]) -> IPAddressClass {
        let first10Zero = bytes[0..<10].allSatisfy { $0 == 0 }
        if bytes.allSatisfy({ $0 == 0 }) { return .unspecified }
        if first10Zero && bytes[10] == 0 && bytes[11] == 0 && bytes[12..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 {
            return .loopback
        }
        // IPv4-mapped ::ffff:0:0/96
        if first10Zero && bytes[10] == 0xff && bytes[11] == 0xff {
            return ipv4(bytes[12], bytes[13], bytes[14], bytes[15])
        }
        // IPv4-compatible ::/96 (deprecated, still routable by some stacks)
        if first10Zero && bytes[10] == 0 && bytes[11] == 0 {
            return ipv4(bytes[12], bytes[13], bytes[14], bytes[15])
        }
        // NAT64 well-known prefix 64:ff9b::/96
        if bytes[0] == 0x00 && bytes[1] == 0x64 && bytes[2] == 0xff && bytes[3] == 0x9b && bytes[4..<12].allSatisfy({ $0 == 0 }) {
            return ipv4(bytes[12], bytes[13], bytes[14], bytes[15])
        }
        // Local-use NAT64 64:ff9b:1::/48
        if bytes[0] == 0x00 && bytes[1] == 0x64 && bytes[2] == 0xff && bytes[3] == 0x9b && bytes[4] == 0 && bytes[5] == 1 {
            return .privateNetwork
        }
        // 6to4 2002::/16 carries an IPv4 address in bits 16..48
        if bytes[0] == 0x20 && bytes[1] == 0x02 {
            let inner = ipv4(bytes[2], bytes[3], bytes[4], bytes[5])
            return inner.isInternal ? inner : .global
        }
        // Teredo 2001::/32 tunnels to an obfuscated IPv4 address: refuse rather than guess.
        if bytes[0] == 0x20 && bytes[1] == 0x01 && bytes[2] == 0x00 && bytes[3] == 0x00 { return .reserved }
        if bytes[0] == 0xff { return .multicast }
        if bytes[0] == 0xfe && bytes[1] & 0xc0 == 0x80 { return .linkLocal }  // fe80::/10
        if bytes[0] == 0xfe && bytes[1] & 0xc0 == 0xc0 { return .privateNetwork }  // fec0::/10, deprecated site-local
        if bytes[0] & 0xfe == 0xfc { return .uniqueLocal }  // fc00::/7
        if bytes[0] == 0x01 && bytes[1] == 0x00 && bytes[2..<8].allSatisfy({ $0 == 0 }) { return .reserved }  // 100::/64 discard
        if bytes[0] == 0x20 && bytes[1] == 0x01 && bytes[2] == 0x0d && bytes[3] == 0xb8 { return .reserved }  // documentation
        return .global
    }
}
