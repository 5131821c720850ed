// The `pims` facade for Swift, called as in the reference:
//
//     pims.set(api: "pims.authentication.enrollment",
//              parameters: ["action": "enroll", "pinCode": "1234", "smsCode": "123456"]) { message in
//         if message["status"] == "SUCCEEDED" { … }
//     }
//
// Compiled together with the generated `PimsFfi.swift` (same module), or in a package that
// depends on a `PimsFfi` module. Messages are `[String: AnyHashable]` so that the reference's
// `message["status"] == "…"` compiles; `error["code"]` is an integer (NSNumber bridged).

import Foundation
#if canImport(PimsFfi)
import PimsFfi
#endif

public typealias Message = [String: AnyHashable]

public final class Pims: @unchecked Sendable {
    private let sdk: PimsSdk

    /// - Parameters:
    ///   - tokens: the signed-in user's access token, or nil when signed out.
    ///   - deviceKeys: a Secure Enclave P-256 key store; nil keeps a software key in the vault.
    ///   - vaultKeyStore: Keychain storage for the vault key; nil keeps it in the data directory.
    public init(tokens: AccessTokenProvider, deviceKeys: DeviceKeys? = nil, vaultKeyStore: VaultKeyStore? = nil) {
        sdk = PimsSdk(tokens: tokens, deviceKeys: deviceKeys, vaultKey: vaultKeyStore)
    }

    public convenience init(accessToken: @escaping () -> String?) {
        self.init(tokens: ClosureTokens(accessToken))
    }

    public func initialize(configuration: [String: Any], callback: @escaping (Message) -> Void) {
        sdk.initialize(config: Pims.encode(configuration), handler: Handler(callback))
    }

    public func release(callback: @escaping (Message) -> Void) {
        sdk.release(handler: Handler(callback))
    }

    public func get(api: String, parameters: [String: Any] = [:], callback: @escaping (Message) -> Void) {
        sdk.get(api: api, parameters: Pims.encode(parameters), handler: Handler(callback))
    }

    public func set(api: String, parameters: [String: Any] = [:], callback: @escaping (Message) -> Void) {
        sdk.set(api: api, parameters: Pims.encode(parameters), handler: Handler(callback))
    }

    /// One SUCCEEDED or FAILED acknowledgement, then one RESULT message per event.
    public func subscribe(api: String, parameters: [String: Any] = [:], callback: @escaping (Message) -> Void) {
        sdk.subscribe(api: api, parameters: Pims.encode(parameters), handler: Handler(callback))
    }

    public func unsubscribe(api: String, callback: @escaping (Message) -> Void) {
        sdk.unsubscribe(api: api, handler: Handler(callback))
    }

    // Awaitable forms.

    public func get(api: String, parameters: [String: Any] = [:]) async -> Message {
        await withCheckedContinuation { done in get(api: api, parameters: parameters) { done.resume(returning: $0) } }
    }

    public func set(api: String, parameters: [String: Any] = [:]) async -> Message {
        await withCheckedContinuation { done in set(api: api, parameters: parameters) { done.resume(returning: $0) } }
    }

    /// Stops the SDK's threads, waiting briefly for running callbacks; later calls fail with 2001.
    public func close() {
        sdk.shutdown()
    }

    /// Forwards the SDK's logs (never containing secrets) to `sink`; nil stops them.
    public static func setLogSink(_ sink: LogSink?, maxLevel: LogLevel = .info) {
        PimsFfi.setLogSink(sink: sink, maxLevel: maxLevel)
    }

    /// Values the app passes that JSON cannot carry become a non-object, which the SDK answers
    /// with 2102 "Invalid parameters parameter" rather than a crash.
    private static func encode(_ value: [String: Any]) -> String {
        guard JSONSerialization.isValidJSONObject(value),
              let data = try? JSONSerialization.data(withJSONObject: value),
              let text = String(data: data, encoding: .utf8) else { return "false" }
        return text
    }
}

// The SDK calls these from its own threads; they hold only immutable closures.
private final class Handler: MessageHandler, @unchecked Sendable {
    private let callback: (Message) -> Void

    init(_ callback: @escaping (Message) -> Void) { self.callback = callback }

    func onMessage(message: String) {
        guard let data = message.data(using: .utf8),
              let object = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]),
              let dictionary = object as? [String: AnyHashable] else { return }
        callback(dictionary)
    }
}

private final class ClosureTokens: AccessTokenProvider, @unchecked Sendable {
    private let provide: () -> String?

    init(_ provide: @escaping () -> String?) { self.provide = provide }

    func accessToken() throws -> String? { provide() }
}
