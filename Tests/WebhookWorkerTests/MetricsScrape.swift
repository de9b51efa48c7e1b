import AsyncHTTPClient

/// A replica's `/metrics` on 127.0.0.1:`port`, or "" while it does not answer.
func scrapeMetrics(port: Int) async -> String {
    var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/metrics")
    request.method = .GET
    guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(5)),
        let body = try? await response.body.collect(upTo: 1 << 22)
    else { return "" }
    return String(buffer: body)
}
