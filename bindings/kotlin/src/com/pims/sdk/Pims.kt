package com.pims.sdk

import com.pims.sdk.ffi.AccessTokenProvider
import com.pims.sdk.ffi.DeviceKeys
import com.pims.sdk.ffi.LogLevel
import com.pims.sdk.ffi.LogSink
import com.pims.sdk.ffi.MessageHandler
import com.pims.sdk.ffi.PimsSdk
import com.pims.sdk.ffi.PimsValue
import com.pims.sdk.ffi.SmsCodeProvider
import com.pims.sdk.ffi.VaultKeyStore
import java.util.concurrent.CompletableFuture
import java.util.concurrent.TimeUnit
import com.pims.sdk.ffi.setLogSink as ffiSetLogSink

/** A message as the reference shows it: `transactionId`, `status`, `result` or `error`. */
typealias Message = Map<String, Any?>

/**
 * Android's SMS reader for `enroll` without `smsCode`, in the callback shape of the SMS
 * Retriever and User Consent APIs: start listening (`SmsRetriever.getClient(context)
 * .startSmsRetriever()`, or `startSmsUserConsent`), and when the broadcast brings the SMS, call
 * `deliver` with the code read from it; call `deliver(null)` on timeout or refusal. The SDK
 * waits at most `timeoutMillis` (`smsCodeTimeoutSeconds`) and calls this on its own thread.
 */
fun interface SmsCodeReader {
    fun requestSmsCode(timeoutMillis: Long, deliver: (String?) -> Unit)
}

/**
 * The `pims` facade, called as in the reference:
 *
 * ```
 * pims.set("pims.authentication.enrollment", mapOf("action" to "enroll", …)) { message -> … }
 * ```
 *
 * Callbacks run on an SDK thread (post to the main thread for UI work). A callback that throws
 * is reported on stderr and does not disturb the SDK. A parameter with no SDK form (a Date, an
 * object) is answered FAILED 2102 naming it, like any wrong value.
 *
 * Remote commands (`pims.vehicle.vin`, `pims.vehicle.pairing`, `pims.vehicle.command`,
 * `pims.vehicle.signal`) go through the same calls. A relying party checks a command proof with
 * the car's own verifier, `com.pims.sdk.ffi.verifyCommandProof(proof, vin, audience,
 * pinCosignKey, now, keychain)` (throws `CommandFault`, `.fault` its stable name), and reads one
 * with `parseCommandProof`.
 *
 * @param tokens the signed-in user's access token, or null when signed out.
 * @param deviceKeys a hardware P-256 key store (Android Keystore); null keeps a software key in
 *   the SDK's encrypted vault.
 * @param vaultKeyStore secure storage for the vault key; null keeps it in the data directory.
 * @param smsCodeReader Android: reads the enrollment SMS when `enroll` has no `smsCode`.
 */
class Pims(
    tokens: AccessTokenProvider,
    deviceKeys: DeviceKeys? = null,
    vaultKeyStore: VaultKeyStore? = null,
    smsCodeReader: SmsCodeReader? = null,
) : AutoCloseable {
    constructor(smsCodeReader: SmsCodeReader? = null, accessToken: () -> String?) : this(
        object : AccessTokenProvider {
            override fun accessToken(): String? = accessToken()
        },
        smsCodeReader = smsCodeReader,
    )

    private val sdk = PimsSdk(tokens, deviceKeys, vaultKeyStore, smsCodeReader?.let(::provider))

    fun initialize(configuration: Map<String, Any?>, callback: (Message) -> Unit) =
        call(configuration, callback) { p, h -> sdk.initialize(p, h) }

    fun release(callback: (Message) -> Unit) = sdk.release(handler(callback))

    fun get(api: String, parameters: Map<String, Any?> = emptyMap(), callback: (Message) -> Unit) =
        call(parameters, callback) { p, h -> sdk.get(api, p, h) }

    fun set(api: String, parameters: Map<String, Any?> = emptyMap(), callback: (Message) -> Unit) =
        call(parameters, callback) { p, h -> sdk.set(api, p, h) }

    /** One SUCCEEDED or FAILED acknowledgement, then one RESULT message per event. */
    fun subscribe(api: String, parameters: Map<String, Any?> = emptyMap(), callback: (Message) -> Unit) =
        call(parameters, callback) { p, h -> sdk.subscribe(api, p, h) }

    fun unsubscribe(api: String, callback: (Message) -> Unit) = sdk.unsubscribe(api, handler(callback))

    /** Stops the SDK's threads (waiting briefly for running callbacks) and frees the facade. */
    override fun close() {
        sdk.shutdown()
        sdk.close()
    }

    private fun call(
        parameters: Map<String, Any?>,
        callback: (Message) -> Unit,
        start: (Map<String, PimsValue>, MessageHandler) -> Unit,
    ) {
        val converted = HashMap<String, PimsValue>()
        for ((name, value) in parameters) {
            try {
                converted[name] = Values.fromNative(value)
            } catch (e: Values.NotRepresentable) {
                // Still exactly one answer, from the SDK's own catalogue.
                return sdk.refuseParameter(name, handler(callback))
            }
        }
        start(converted, handler(callback))
    }

    companion object {
        /** Forwards the SDK's logs (never containing secrets) to `sink`; null stops them. */
        fun setLogSink(sink: LogSink?, maxLevel: LogLevel = LogLevel.INFO) = ffiSetLogSink(sink, maxLevel)

        private fun handler(callback: (Message) -> Unit) = object : MessageHandler {
            override fun onMessage(message: Map<String, PimsValue>) {
                try {
                    callback(message.mapValues { Values.toNative(it.value) })
                } catch (e: Throwable) {
                    System.err.println("pims: the app's callback threw ${e::class.java.name}")
                }
            }
        }

        private fun provider(reader: SmsCodeReader) = object : SmsCodeProvider {
            override fun smsCode(timeoutMillis: ULong): String? {
                val code = CompletableFuture<String?>()
                reader.requestSmsCode(timeoutMillis.toLong()) { code.complete(it) }
                return try {
                    code.get(timeoutMillis.toLong(), TimeUnit.MILLISECONDS)
                } catch (e: java.util.concurrent.TimeoutException) {
                    null
                }
            }
        }
    }
}
