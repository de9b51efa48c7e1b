#if canImport(Glibc)
    import Glibc
#endif

/// glibc's malloc gives a thread that finds the arenas busy an arena of its own, up to eight per
/// core, and memory freed into one arena is not reused by threads allocating from another. A
/// replica's event loops and task threads all allocate, so its resident memory grew with arenas
/// it hardly needed. Two arenas are enough for a replica's few threads (each also has glibc's
/// per-thread cache for small blocks): in the bench's 16-endpoint run, peak RSS fell from 68–71
/// MiB to 59–62 MiB at the same deliveries a second.
enum MallocArenas {
    static let limit: Int32 = 2

    /// Caps the arenas unless `MALLOC_ARENA_MAX` is set: glibc reads it itself, and an operator's
    /// own value wins. Called before the first thread starts. The limit set, or nil when none was
    /// (the variable is set, or this is not glibc).
    @discardableResult
    static func apply(environment: [String: String]) -> Int32? {
        guard environment["MALLOC_ARENA_MAX"] == nil else { return nil }
        #if canImport(Glibc)
            // mallopt is in <malloc.h>, which the Glibc module leaves out: looked up by name.
            typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
            guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return nil }
            let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
            return mallopt(arenaMax, limit) == 1 ? limit : nil
        #else
            return nil
        #endif
    }

    /// `M_ARENA_MAX` of glibc's <malloc.h>.
    static let arenaMax: Int32 = -8
}
