import Testing

@testable import webhook_worker

@Suite("malloc arenas", .timeLimit(.minutes(1)))
struct MallocArenasTests {
    @Test("a replica caps glibc's arenas at 2, and an operator's MALLOC_ARENA_MAX wins")
    func capUnlessSet() {
        #expect(MallocArenas.apply(environment: ["MALLOC_ARENA_MAX": "8"]) == nil)
        #if canImport(Glibc)
            #expect(MallocArenas.apply(environment: ["PATH": "/usr/bin"]) == 2)
        #endif
    }
}
