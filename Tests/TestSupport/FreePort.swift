#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A TCP port on 127.0.0.1 that nothing listens on right now, for a program under test that must
/// be told its port before it starts (`console --port`, `run --http-port`). The kernel picks it
/// (bind to port 0), so it is not in use, unlike a random number in the ephemeral range, which
/// outgoing connections and other tests' servers also draw from.
public func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw FreePortError(call: "socket", errno: errno) }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard bound == 0 else { throw FreePortError(call: "bind", errno: errno) }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw FreePortError(call: "getsockname", errno: errno) }
    return Int(UInt16(bigEndian: address.sin_port))
}

struct FreePortError: Error, CustomStringConvertible {
    let call: String
    let errno: Int32
    var description: String { "\(call) failed while looking for a free port: errno \(errno)" }
}
