import Foundation
import LibPQ
@testable import TestSupport
import Testing
import WebhookDelivery

/// Payloads are decoded into types; a bad one is described by its first wrong field, in the
/// words the dead letters have always used.
@Suite("Job payloads", .timeLimit(.minutes(4)))
struct JobPayloadTests {
    static func reason(_ text: String) -> String? {
        do {
            _ = try IntegrationConnectedPayload(PQJSON(text), kind: "integration.connected")
            return nil
        } catch {
            return error.description
        }
    }

    @Test(
        "integration.connected payloads that cannot be read say why",
        arguments: [
            ("not json", "payload must be a JSON object"),
            (#"[1, 2]"#, "payload must be a JSON object"),
            (#""acct""#, "payload must be a JSON object"),
            ("{}", #"payload has no "integration_account_id""#),
            (#"{"integration_account_id": ""}"#, #"payload's "integration_account_id" is empty"#),
            (#"{"integration_account_id": " \n\t", "user_id": "u"}"#, #"payload's "integration_account_id" is empty"#),
            (
                #"{"integration_account_id": 5, "user_id": "u"}"#,
                #"payload's "integration_account_id" must be a string"#
            ),
            (
                #"{"integration_account_id": null, "user_id": "u"}"#,
                #"payload's "integration_account_id" must be a string"#
            ),
            (#"{"integration_account_id": "a"}"#, #"payload has no "user_id""#),
            (#"{"integration_account_id": "a", "user_id": ["u"]}"#, #"payload's "user_id" must be a string"#),
            (
                #"{"integration_account_id": "a\u0000b", "user_id": "u"}"#,
                #"payload's "integration_account_id" is not a plausible id"#
            ),
            (
                #"{"integration_account_id": "a", "user_id": "\#(String(repeating: "u", count: 1025))"}"#,
                #"payload's "user_id" is not a plausible id"#
            ),
        ])
    func unreadable(payload: String, reason: String) {
        #expect(Self.reason(payload) == "the integration.connected " + reason)
    }

    @Test("a good payload decodes, extra fields ignored; a delivery id must be a UUID")
    func readable() throws {
        let payload = try IntegrationConnectedPayload(
            PQJSON(#"{"user_id": "u1", "integration_account_id": "a1", "extra": {"x": 1}}"#),
            kind: "integration.connected")
        #expect(payload == IntegrationConnectedPayload(integrationAccountID: "a1", userID: "u1"))
        let id = UUID()
        #expect(
            try DeliverPayload(PQJSON(#"{"delivery_id": "\#(id.uuidString)"}"#), kind: "webhook.deliver")
                .deliveryID == id)
        #expect(throws: PayloadError.self) {
            try DeliverPayload(PQJSON(#"{"delivery_id": "nope"}"#), kind: "webhook.deliver")
        }
        do {
            _ = try DeliverPayload(PQJSON(#"{"delivery_id": "nope"}"#), kind: "webhook.deliver")
        } catch {
            #expect(error.description == #"the webhook.deliver payload's "delivery_id" is not a UUID"#)
        }
    }

    @Test("a webhook.deliver payload as PostgreSQL stores it and in any other JSON form decode alike")
    func deliverPayloadForms() throws {
        let id = UUID()
        let lower = id.uuidString.lowercased()
        for text in [
            #"{"delivery_id": "\#(lower)"}"#, #"{"delivery_id":"\#(lower)"}"#, #"{ "delivery_id": "\#(lower)" }"#,
            #"{"delivery_id": "\#(lower)", "x": 1}"#, #"{"x": [], "delivery_id": "\#(id.uuidString)"}"#,
        ] {
            #expect(try DeliverPayload(PQJSON(text), kind: "webhook.deliver").deliveryID == id, "\(text)")
        }
        // The stored form's length with something that is not a UUID: the decoder's error.
        let notUUID = String(repeating: "z", count: 36)
        do {
            _ = try DeliverPayload(PQJSON(#"{"delivery_id": "\#(notUUID)"}"#), kind: "webhook.deliver")
            Issue.record("a 36-character non-UUID decoded")
        } catch {
            #expect(error.description == #"the webhook.deliver payload's "delivery_id" is not a UUID"#)
        }
        // The stored form with an escaped character inside: not read directly, still refused.
        #expect(throws: PayloadError.self) {
            try DeliverPayload(
                PQJSON(#"{"delivery_id": "\#(String(lower.dropLast(2)))\\"}"#), kind: "webhook.deliver")
        }
    }

    @Test("an integration.connected payload reads alike as PostgreSQL stores it and through the decoder")
    func integrationPayloadForms() throws {
        let kind = "integration.connected"
        func read(_ text: String) -> String {
            do {
                let payload = try IntegrationConnectedPayload(PQJSON(text), kind: kind)
                return "\(payload.integrationAccountID)|\(payload.userID)"
            } catch {
                return error.description
            }
        }
        // As jsonb writes it, and other forms of the same object: the same reading.
        for text in [
            #"{"user_id": "usr_1", "integration_account_id": "acc_1"}"#,
            #"{"integration_account_id": "acc_1", "user_id": "usr_1"}"#,
            #"{"user_id":"usr_1","integration_account_id":"acc_1"}"#,
            #"{"user_id": "usr_1", "integration_account_id": "acc_1", "x": 1}"#,
            #"{"user_id": "usr\u005f1", "integration_account_id": "acc_1"}"#,
        ] {
            #expect(read(text) == "acc_1|usr_1", "\(text)")
        }
        // Unusual ids go through the decoder: its checks and its words.
        let long = String(repeating: "a", count: 1025)
        #expect(read(#"{"user_id": "\#(long)", "integration_account_id": "acc_1"}"#).contains("not a plausible id"))
        #expect(
            read(#"{"user_id": "\#(String(long.dropLast()))", "integration_account_id": "acc_1"}"#).hasPrefix("acc_1|"))
        #expect(read(#"{"user_id": "  ", "integration_account_id": "acc_1"}"#).contains("is empty"))
        #expect(read(#"{"user_id": "", "integration_account_id": "acc_1"}"#).contains("is empty"))
        #expect(read(#"{"user_id": " usr", "integration_account_id": "acc_1"}"#) == "acc_1| usr")
        #expect(read(#"{"user_id": "usr\u0000", "integration_account_id": "acc_1"}"#).contains("not a plausible id"))
        #expect(read(#"{"user_id": "usr_1", "integration_account_id": 7}"#).contains("must be a string"))
        #expect(read(#"{"user_id": "usr_1"}"#).contains("has no \"integration_account_id\""))
        #expect(read(#"{"user_id": "é1", "integration_account_id": "acc_1"}"#) == "acc_1|é1")
    }
}
