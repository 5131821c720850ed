package com.pims.sdk

import com.pims.sdk.ffi.AccessTokenProvider
import com.pims.sdk.ffi.DeviceKeys
import com.pims.sdk.ffi.LogLevel
import com.pims.sdk.ffi.LogSink
import com.pims.sdk.ffi.MessageHandler
import com.pims.sdk.ffi.PimsSdk
import com.pims.sdk.ffi.VaultKeyStore
import com.pims.sdk.ffi.setLogSink as ffiSetLogSink

/** A message as the reference shows it: `transactionId`, `status`, `result` or `error`. */
typealias Message = Map<String, Any?>

/**
 * The `pims` facade, called as in the reference:
 *
 * ```
 * pims.set("pims.authentication.enrollment", mapOf("action" to "enroll", …)) { message -> … }
 * ```
 *
 * Callbacks run on an SDK thread (post to the main thread for UI work). A callback that throws
 * is reported on stderr and does not disturb the SDK.
 *
 * @param tokens the signed-in user's access token, or null when signed out.
 * @param deviceKeys a hardware P-256 key store (Android Keystore); null keeps a software key in
 *   the SDK's encrypted vault.
 * @param vaultKeyStore secure storage for the vault key; null keeps it in the data directory.
 */
class Pims(
    tokens: AccessTokenProvider,
    deviceKeys: DeviceKeys? = null,
    vaultKeyStore: VaultKeyStore? = null,
) : AutoCloseable {
    constructor(accessToken: () -> String?) : this(object : AccessTokenProvider {
        override fun accessToken(): String? = accessToken()
    })

    private val sdk = PimsSdk(tokens, deviceKeys, vaultKeyStore)

    fun initialize(configuration: Map<String, Any?>, callback: (Message) -> Unit) =
        sdk.initialize(Json.encode(configuration), handler(callback))

    fun release(callback: (Message) -> Unit) = sdk.release(handler(callback))

    fun get(api: String, parameters: Map<String, Any?> = emptyMap(), callback: (Message) -> Unit) =
        sdk.get(api, Json.encode(parameters), handler(callback))

    fun set(api: String, parameters: Map<String, Any?> = emptyMap(), callback: (Message) -> Unit) =
        sdk.set(api, Json.encode(parameters), handler(callback))

    /** One SUCCEEDED or FAILED acknowledgement, then one RESULT message per event. */
    fun subscribe(api: String, parameters: Map<String, Any?> = emptyMap(), callback: (Message) -> Unit) =
        sdk.subscribe(api, Json.encode(parameters), handler(callback))

    fun unsubscribe(api: String, callback: (Message) -> Unit) = sdk.unsubscribe(api, handler(callback))

    /** Stops the SDK's threads (waiting briefly for running callbacks) and frees the facade. */
    override fun close() {
        sdk.shutdown()
        sdk.close()
    }

    companion object {
        /** Forwards the SDK's logs (never containing secrets) to `sink`; null stops them. */
        fun setLogSink(sink: LogSink?, maxLevel: LogLevel = LogLevel.INFO) = ffiSetLogSink(sink, maxLevel)

        private fun handler(callback: (Message) -> Unit) = object : MessageHandler {
            override fun onMessage(message: String) {
                try {
                    @Suppress("UNCHECKED_CAST")
                    callback(Json.decode(message) as Message)
                } catch (e: Throwable) {
                    System.err.println("pims: the app's callback threw ${e::class.java.name}")
                }
            }
        }
    }
}
