import HTTPTypes
import Hummingbird

extension Console {
    /// Every route of the console, with the middleware before it and its handler: the one place
    /// to read what a path does and which checks it passes. `console` is the group of `/console`
    /// (``ConsoleServer/register(_:on:)``).
    ///
    /// Each stage below adds middleware for the routes added after it:
    /// 1. every answer: the request read, the security headers, the Host check (421);
    /// 2. but for the style sheet: a POST from another site refused (403);
    /// 3. but for signing in: who is asking (bearer token, session, or the local session; else
    ///    303 to the sign-in form or 401), control characters refused (400), the flash message;
    /// 4. actions (POST), but for signing out: read-only mode and the CSRF token (403).
    ///
    /// A path answers every method the console serves: GET and HEAD that have no page show the
    /// "No such page" page, a POST that has no action answers 404, both after the checks of
    /// stage 3 and 4; so does any other path under /console (`**`).
    func addRoutes(to console: RouterGroup<ConsoleContext>) {
        var routes = ConsoleRouteTable()
        let served = console.add(middleware: ConsoleRequestReader())
            .add(middleware: ConsoleSecurityHeaders())
            .add(middleware: ConsoleHostCheck(console: self))
        routes.add(served, .get, "style.css") { _ in ConsoleResponse.styleSheet }

        let sameSite = served.group().add(middleware: ConsoleOriginCheck(console: self))
        routes.add(sameSite, .get, "login", use: loginPage)
        routes.add(sameSite, .head, "login", use: loginHead)
        routes.add(sameSite, .post, "login", use: signIn)

        let signedIn = sameSite.group()
            .add(middleware: ConsoleAuthentication(console: self))
            .add(middleware: ConsoleFieldCheck(console: self))
            .add(middleware: ConsoleFlashCookie(console: self))
            .add(middleware: ConsoleSessionCookie(console: self))
        routes.add(signedIn, .post, "logout", use: signOut)
        routes.page(signedIn, "", use: overviewPage)
        routes.page(signedIn, "deliveries", use: deliveriesPage)
        routes.page(signedIn, "deliveries/:id", use: deliveryPage)
        routes.page(signedIn, "deliveries/resend", use: resendRangePage)
        routes.page(signedIn, "endpoints", use: endpointsPage)
        routes.page(signedIn, "dead-letters", use: deadLettersPage)
        routes.page(signedIn, "dead-letters/:id", use: deadLetterPage)
        // The actions' paths below shadow this id: their GET reads them as one ("'retry' is not a dead letter id").
        routes.page(signedIn, "dead-letters/retry", use: deadLetterPage)
        routes.page(signedIn, "dead-letters/purge", use: deadLetterPage)
        routes.page(signedIn, "jobs", use: jobsPage)
        routes.page(signedIn, "audit", use: auditPage)

        let actions = signedIn.group().add(middleware: ConsoleActionGuard(console: self))
        routes.add(actions, .post, "deliveries/resend", use: resendDeliveryRange)
        routes.add(actions, .post, "deliveries/:id/resend", use: resendDelivery)
        routes.add(actions, .post, "deliveries/:id/cancel", use: cancelDelivery)
        routes.add(actions, .post, "deliveries/:id/*", use: unknownDeliveryAction)
        routes.add(actions, .post, "endpoints/enable") { await self.setEndpoint($0, enable: true) }
        routes.add(actions, .post, "endpoints/disable") { await self.setEndpoint($0, enable: false) }
        routes.add(actions, .post, "endpoints/test", use: testEndpoint)
        routes.add(actions, .post, "endpoints/ordering", use: setEndpointOrdering)
        routes.add(actions, .post, "endpoints/limits", use: setEndpointLimits)
        routes.add(actions, .post, "dead-letters/:id/retry", use: retryDeadLetter)
        routes.add(actions, .post, "dead-letters/retry", use: retryDeadLetters)
        routes.add(actions, .post, "dead-letters/purge", use: purgeDeadLetters)
        routes.add(actions, .post, "jobs/pause") { await self.setKindPaused($0, pause: true) }
        routes.add(actions, .post, "jobs/resume") { await self.setKindPaused($0, pause: false) }

        routes.answerTheRest(pages: signedIn, actions: actions, page: noSuchPage, action: noSuchAction)
    }
}

extension ConsoleResponse {
    static let styleSheet = ConsoleResponse(
        status: 200, headers: [("Content-Type", "text/css; charset=utf-8")], body: Console.css)
}

/// The console's routes as ``Console/addRoutes(to:)`` adds them, with the methods of each path,
/// so that the methods a path lacks (and every other path) can be answered as the console does.
struct ConsoleRouteTable {
    typealias Handler = @Sendable (ConsoleContext) async -> ConsoleResponse

    /// The console's methods: no other is routed (Hummingbird answers it 404).
    static let methods: [HTTPRequest.Method] = [.get, .head, .post]

    private(set) var paths: [String] = []
    private var methodsOf: [String: Set<HTTPRequest.Method>] = [:]

    mutating func add(
        _ group: RouterGroup<ConsoleContext>, _ method: HTTPRequest.Method, _ path: String,
        use handler: @escaping Handler
    ) {
        precondition(methodsOf[path]?.contains(method) != true, "\(method) \(path) twice")
        if methodsOf[path] == nil { paths.append(path) }
        methodsOf[path, default: []].insert(method)
        group.on(RouterPath(path), method: method) { _, context in await handler(context) }
    }

    /// A page: GET and HEAD.
    mutating func page(_ group: RouterGroup<ConsoleContext>, _ path: String, use handler: @escaping Handler) {
        add(group, .get, path, use: handler)
        add(group, .head, path, use: handler)
    }

    /// Every method of ``methods`` a path lacks, and any other path (`**`): GET and HEAD on
    /// `pages` with `page`, POST on `actions` with `action`.
    mutating func answerTheRest(
        pages: RouterGroup<ConsoleContext>, actions: RouterGroup<ConsoleContext>, page: @escaping Handler,
        action: @escaping Handler
    ) {
        for path in paths + ["**"] {
            for method in Self.methods where methodsOf[path]?.contains(method) != true {
                add(method == .post ? actions : pages, method, path, use: method == .post ? action : page)
            }
        }
    }
}
