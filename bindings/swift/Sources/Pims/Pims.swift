// The `pims` facade for Swift, called as in the reference:
//
//     pims.set(api: "pims.authentication.enrollment",
//              parameters: ["action": "enroll", "pinCode": "1234", "smsCode": "123456"]) { message in
//         if message["status"] == "SUCCEEDED" { … }
//     }
//
// Compiled together with the generated `PimsFfi.swift` (same module), or in a package that
// depends on a `PimsFfi` module. Values cross as the typed `PimsValue` (no JSON text). Messages
// are `[String: AnyHashable]` so that the reference's `message["status"] == "…"` compiles;
// `error["code"]` is an Int. A parameter with no SDK form is answered FAILED 2102 naming it.

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
    ///   - smsCodeProvider: only for `platform: android`; iOS apps pass `smsCode` themselves.
    public init(tokens: AccessTokenProvider, deviceKeys: DeviceKeys? = nil, vaultKeyStore: VaultKeyStore? = nil,
                smsCodeProvider: SmsCodeProvider? = nil) {
        sdk = PimsSdk(tokens: tokens, deviceKeys: deviceKeys, vaultKey: vaultKeyStore, smsCodes: smsCodeProvider)
    }

    public convenience init(accessToken: @escaping () -> String?) {
        self.init(tokens: ClosureTokens(accessToken))
    }

    public func initialize(configuration: [String: Any], callback: @escaping (Message) -> Void) {
        call(configuration, callback) { p, h in self.sdk.initialize(config: p, handler: h) }
    }

    public func release(callback: @escaping (Message) -> Void) {
        sdk.release(handler: Handler(callback))
    }

    public func get(api: String, parameters: [String: Any] = [:], callback: @escaping (Message) -> Void) {
        call(parameters, callback) { p, h in self.sdk.get(api: api, parameters: p, handler: h) }
    }

    public func set(api: String, parameters: [String: Any] = [:], callback: @escaping (Message) -> Void) {
        call(parameters, callback) { p, h in self.sdk.set(api: api, parameters: p, handler: h) }
    }

    /// One SUCCEEDED or FAILED acknowledgement, then one RESULT message per event.
    public func subscribe(api: String, parameters: [String: Any] = [:], callback: @escaping (Message) -> Void) {
        call(parameters, callback) { p, h in self.sdk.subscribe(api: api, parameters: p, handler: h) }
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

    private func call(_ parameters: [String: Any], _ callback: @escaping (Message) -> Void,
                      _ start: ([String: PimsValue], Handler) -> Void) {
        var converted: [String: PimsValue] = [:]
        for (name, value) in parameters {
            guard let typed = Values.from(value) else {
                // Still exactly one answer, from the SDK's own catalogue.
                return sdk.refuseParameter(name: name, handler: Handler(callback))
            }
            converted[name] = typed
        }
        start(converted, Handler(callback))
    }
}

enum Values {
    /// nil for a value with no `PimsValue` form (a Date, an object, a non-finite number).
    static func from(_ value: Any) -> PimsValue? {
        switch value {
        case is NSNull: return .null
        case let b as Bool: return .bool(value: b)
        case let i as Int: return .integer(value: Int64(i))
        case let i as Int64: return .integer(value: i)
        case let i as Int32: return .integer(value: Int64(i))
        case let d as Double: return d.isFinite ? .real(value: d) : nil
        case let s as String: return .text(value: s)
        case let list as [Any]:
            var items: [PimsValue] = []
            for v in list { guard let t = from(v) else { return nil }; items.append(t) }
            return .items(items: items)
        case let map as [String: Any]:
            var entries: [String: PimsValue] = [:]
            for (k, v) in map { guard let t = from(v) else { return nil }; entries[k] = t }
            return .entries(entries: entries)
        default:
            if case Optional<Any>.none = value { return .null }
            return nil
        }
    }

    /// Every `PimsValue` has a native form: nothing is dropped on the way back.
    static func native(_ value: PimsValue) -> AnyHashable {
        switch value {
        case .null: return NSNull()
        case .bool(let b): return b
        case .integer(let i): return Int(exactly: i).map(AnyHashable.init) ?? AnyHashable(i)
        case .real(let d): return d
        case .text(let s): return s
        case .items(let items): return items.map(native)
        case .entries(let entries): return entries.mapValues(native)
        }
    }
}

// The SDK calls these from its own threads; they hold only immutable closures.
private final class Handler: MessageHandler, @unchecked Sendable {
    private let callback: (Message) -> Void

    init(_ callback: @escaping (Message) -> Void) { self.callback = callback }

    func onMessage(message: [String: PimsValue]) {
        callback(message.mapValues(Values.native))
    }
}

private final class ClosureTokens: AccessTokenProvider, @unchecked Sendable {
    private let provide: () -> String?

    init(_ provide: @escaping () -> String?) { self.provide = provide }

    func accessToken() throws -> String? { provide() }
}
