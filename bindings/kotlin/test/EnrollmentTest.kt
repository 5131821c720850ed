// A full enrollment against a live PIMS server through the Kotlin wrapper, in the reference's
// call style (including its example verbatim), asserting every message.
//
// Environment: PIMS_SERVER_URL, PIMS_OUTBOX (the server's SMS outbox file), PIMS_SMS_DOMAIN,
// PIMS_DATA_DIR (a fresh directory), PIMS_RP_CREDENTIALS ("id:secret" of a relying party); the
// remote-command scenarios (RemoteCommandsTest.kt) name their cars and the golden vectors.

import com.pims.sdk.Pims
import com.pims.sdk.SmsCodeReader
import com.pims.sdk.ffi.AccessTokenProvider
import com.pims.sdk.ffi.LogLevel
import com.pims.sdk.ffi.LogSink
import java.io.File
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.util.Base64
import java.util.UUID
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

typealias Message = Map<String, Any?>

val serverUrl = env("PIMS_SERVER_URL")
val outbox = File(env("PIMS_OUTBOX"))
val smsDomain = env("PIMS_SMS_DOMAIN")
val dataDir = File(env("PIMS_DATA_DIR"))
const val PHONE = "+33612340001"
const val PIN = "1234"

fun env(name: String): String = System.getenv(name) ?: error("$name is not set")

var passed = 0
var failed = 0

fun check(name: String, body: () -> Unit) {
    try {
        body()
        passed++
        println("ok   $name")
    } catch (e: Throwable) {
        failed++
        println("FAIL $name: ${e.message}")
    }
}

fun <T> assertEq(expected: T, actual: T, what: String = "value") {
    if (expected != actual) throw AssertionError("$what: expected <$expected> but was <$actual>")
}

/** Runs one call and returns its single message; a second message is an error. */
fun call(start: ((Message) -> Unit) -> Unit): Message {
    val queue = LinkedBlockingQueue<Message>()
    start { queue.put(it) }
    val message = queue.poll(60, TimeUnit.SECONDS) ?: throw AssertionError("no message within 60 s")
    val extra = queue.poll(300, TimeUnit.MILLISECONDS)
    if (extra != null) throw AssertionError("a second message arrived: $extra")
    return message
}

fun succeeded(message: Message, result: Any?) {
    assertEq(setOf("transactionId", "status", "result"), message.keys, "keys of $message")
    assertEq("SUCCEEDED", message["status"], "status")
    assertEq(result, message["result"], "result")
    assertTransactionId(message)
}

fun failedWith(message: Message, error: Map<String, Any?>) {
    assertEq(setOf("transactionId", "status", "error"), message.keys, "keys of $message")
    assertEq("FAILED", message["status"], "status")
    assertEq(error, message["error"], "error")
    assertTransactionId(message)
}

fun assertTransactionId(message: Message) {
    val id = message["transactionId"] as? String ?: throw AssertionError("no transactionId")
    UUID.fromString(id)
}

val http: HttpClient = HttpClient.newHttpClient()

fun post(path: String, body: String, basic: String? = null): Pair<Int, String> {
    val request = HttpRequest.newBuilder(URI.create(serverUrl + path))
        .header("Content-Type", "application/json")
        .apply { if (basic != null) header("Authorization", "Basic " + Base64.getEncoder().encodeToString(basic.toByteArray())) }
        .POST(HttpRequest.BodyPublishers.ofString(body))
        .build()
    val response = http.send(request, HttpResponse.BodyHandlers.ofString())
    return response.statusCode() to response.body()
}

fun mintToken(subject: String): String {
    val (status, body) = post("/v1/dev/tokens", """{"subject":"$subject"}""")
    assertEq(200, status, "token status")
    return Regex("\"accessToken\"\\s*:\\s*\"([^\"]+)\"").find(body)!!.groupValues[1]
}

/** The code of the newest SMS to `number` that has one (security notices carry none). */
fun lastCode(number: String): String {
    val code = Regex("@${Regex.escape(smsDomain)} #(\\d+)")
    return outbox.readLines()
        .filter { it.contains("\"to\":\"$number\"") }
        .mapNotNull { code.find(it)?.groupValues?.get(1) }
        .last()
}

fun config(dir: String, platform: String = "desktop", smsCodeTimeoutSeconds: Int = 10) = mapOf(
    "components" to mapOf(
        "strongAuthentication" to mapOf(
            "serverUrl" to serverUrl,
            "dataDirectory" to File(dataDir, dir).path,
            "platform" to platform,
            "smsCodeTimeoutSeconds" to smsCodeTimeoutSeconds,
            "defaultRegion" to "FR",
        ),
    ),
)

/** An SMS Retriever stand-in: the SMS arrives (from the server's outbox) a moment later. */
class OutboxSmsReader(private val number: String) : SmsCodeReader {
    @Volatile var asked = 0
    override fun requestSmsCode(timeoutMillis: Long, deliver: (String?) -> Unit) {
        asked++
        Thread {
            Thread.sleep(200)
            deliver(lastCode(number))
        }.start()
    }
}

/** A new account whose trusted number is `typed` (the national form people type). */
fun withTrustedNumber(pims: Pims, typed: String, e164: String) {
    succeeded(call { cb -> pims.get("pims.authentication.smscode", mapOf("type" to "phoneNumberCertification", "phoneNumber" to typed), cb) }, null)
    succeeded(call { cb -> pims.set("pims.authentication.smscode", mapOf("type" to "addPhoneNumber", "smsCode" to lastCode(e164), "phoneNumber" to typed), cb) }, null)
    succeeded(call { cb -> pims.get("pims.authentication.trustedphonenumber", mapOf(), cb) }, mapOf("phoneNumber" to e164))
}

fun verifyOtp(pims: Pims, pin: String) {
    val m = call { cb -> pims.get("pims.authentication.otp", mapOf("action" to "withPIN", "pinCode" to pin), cb) }
    assertEq("SUCCEEDED", m["status"], "status of $m")
    val otp = (m["result"] as Map<*, *>)["otp"] as String
    assertEq(200, post("/v1/otp/verify", """{"otp":"$otp"}""", env("PIMS_RP_CREDENTIALS")).first, "verification")
}

fun androidScenarios() {
    check("android: the reference's example verbatim, the SMS read by the app's reader") {
        val phone = "+33612340002"
        val reader = OutboxSmsReader(phone)
        val token = mintToken("kotlin-android-${UUID.randomUUID()}")
        Pims(reader) { token }.use { pims ->
            succeeded(call { cb -> pims.initialize(config("android", "android"), cb) }, null)
            withTrustedNumber(pims, "06 12 34 00 02", phone)
            succeeded(call { cb -> pims.get("pims.authentication.smscode", mapOf("type" to "enrollment"), cb) }, null)
            val recording = Recording(pims)
            referenceExample(recording)
            succeeded(recording.next(), null)
            assertEq("SUCCEEDED", recording.branch, "branch the example's `when` took")
            assertEq(1, reader.asked, "reader asked")
            verifyOtp(pims, "1234")
        }
    }
    check("android: a reader that gets no SMS gives 2101 once its timeout passes") {
        val token = mintToken("kotlin-android-${UUID.randomUUID()}")
        val silent = SmsCodeReader { _, _ -> }
        Pims(silent) { token }.use { pims ->
            succeeded(call { cb -> pims.initialize(config("android-silent", "android", 1), cb) }, null)
            withTrustedNumber(pims, "0612340004", "+33612340004")
            succeeded(call { cb -> pims.get("pims.authentication.smscode", mapOf("type" to "enrollment"), cb) }, null)
            val recording = Recording(pims)
            referenceExample(recording)
            failedWith(recording.next(), mapOf("code" to 2101, "label" to "Missing smsCode parameter", "details" to mapOf("retryable" to false)))
        }
    }
    check("android: without a reader, the blank smsCode gives 2101") {
        val token = mintToken("kotlin-android-${UUID.randomUUID()}")
        Pims { token }.use { pims ->
            succeeded(call { cb -> pims.initialize(config("android-none", "android", 1), cb) }, null)
            val recording = Recording(pims)
            referenceExample(recording)
            failedWith(recording.next(), mapOf("code" to 2101, "label" to "Missing smsCode parameter", "details" to mapOf("retryable" to false)))
        }
    }
    check("tutorial shortcut 1 → 4·1 with the documentation's national number") {
        val token = mintToken("kotlin-shortcut-${UUID.randomUUID()}")
        Pims { token }.use { pims ->
            succeeded(call { cb -> pims.initialize(config("shortcut", "ios"), cb) }, null)
            succeeded(call { cb -> pims.get("pims.authentication.account", mapOf("actionType" to "strong", "type" to "isDeviceActivated"), cb) }, mapOf("isDeviceActivated" to false))
            succeeded(call { cb -> pims.get("pims.authentication.account", mapOf("actionType" to "strong", "type" to "isAccountBlocked"), cb) }, mapOf("isAccountBlocked" to "NotBlocked"))
            failedWith(call { cb -> pims.get("pims.authentication.trustedphonenumber", mapOf(), cb) }, mapOf("code" to 2307, "label" to "User dont have a phone number", "details" to mapOf("retryable" to false)))
            succeeded(call { cb -> pims.get("pims.authentication.smscode", mapOf("type" to "phoneNumberCertification", "phoneNumber" to "0612340003"), cb) }, null)
            val m = call { cb -> pims.set("pims.authentication.enrollment", mapOf("action" to "enrollWithPhoneNumber", "pinCode" to "424242", "smsCode" to lastCode("+33612340003"), "phoneNumber" to "0612340003"), cb) }
            succeeded(m, null)
            succeeded(call { cb -> pims.get("pims.authentication.trustedphonenumber", mapOf(), cb) }, mapOf("phoneNumber" to "+33612340003"))
            verifyOtp(pims, "424242")
        }
    }
    check("a parameter with no SDK form is answered once: FAILED 2102 naming it") {
        val token = mintToken("kotlin-values-${UUID.randomUUID()}")
        Pims { token }.use { pims ->
            succeeded(call { cb -> pims.initialize(config("values"), cb) }, null)
            val m = call { cb -> pims.get("pims.authentication.otp", mapOf("action" to "withPIN", "pinCode" to java.util.Date()), cb) }
            failedWith(m, mapOf("code" to 2102, "label" to "Invalid pinCode parameter", "details" to mapOf("retryable" to false)))
            val n = call { cb -> pims.get("pims.authentication.otp", mapOf("action" to "withPIN", "pinCode" to Double.NaN), cb) }
            failedWith(n, mapOf("code" to 2102, "label" to "Invalid pinCode parameter", "details" to mapOf("retryable" to false)))
        }
    }
}

fun main() {
    val logs = CopyOnWriteArrayList<String>()
    Pims.setLogSink(object : LogSink {
        override fun log(level: LogLevel, target: String, message: String) {
            logs.add("$level $target $message")
        }
    }, LogLevel.TRACE)

    val token = mintToken("kotlin-${UUID.randomUUID()}")
    val pims = Pims { token }

    check("a call before initialize fails with 2001") {
        val m = call { cb -> pims.get("pims.authentication.account", mapOf("actionType" to "strong", "type" to "isDeviceActivated"), cb) }
        failedWith(m, mapOf("code" to 2001, "label" to "Facade not initialized", "details" to mapOf("retryable" to false)))
    }
    check("initialize succeeds with a null result") {
        succeeded(call { cb -> pims.initialize(config("phone"), cb) }, null)
    }
    check("a throwing token provider gives 2301, not a crash") {
        val throwing = Pims(object : AccessTokenProvider {
            override fun accessToken(): String? = throw IllegalStateException("keychain locked")
        })
        succeeded(call { cb -> throwing.initialize(config("throwing"), cb) }, null)
        val m = call { cb -> throwing.get("pims.authentication.account", mapOf("actionType" to "strong", "type" to "isDeviceActivated"), cb) }
        failedWith(m, mapOf("code" to 2301, "label" to "Need Basic Authentication", "details" to mapOf(
            "hint" to "no access token: the app's AccessTokenProvider gave none (it returned null or blank, or failed)", "retryable" to false)))
        throwing.close()
    }
    check("an unknown API gives 2002") {
        failedWith(call { cb -> pims.get("pims.nothing.here", mapOf(), cb) }, mapOf("code" to 2002, "label" to "API not supported", "details" to mapOf("retryable" to false)))
    }
    check("GET pims.sdk.version") {
        val m = call { cb -> pims.get("pims.sdk.version", mapOf(), cb) }
        assertEq("SUCCEEDED", m["status"], "status")
        assertEq(true, ((m["result"] as Map<*, *>)["version"] as String).isNotEmpty(), "version")
    }
    check("1 isDeviceActivated is false") {
        val m = call { cb -> pims.get("pims.authentication.account", mapOf(Pair("actionType", "strong"), Pair("type", "isDeviceActivated")), cb) }
        succeeded(m, mapOf("isDeviceActivated" to false))
    }
    check("2 isAccountBlocked is NotBlocked") {
        val m = call { cb -> pims.get("pims.authentication.account", mapOf("actionType" to "strong", "type" to "isAccountBlocked"), cb) }
        succeeded(m, mapOf("isAccountBlocked" to "NotBlocked"))
    }
    check("3 no trusted phone number yet: 2307") {
        val m = call { cb -> pims.get("pims.authentication.trustedphonenumber", mapOf(), cb) }
        failedWith(m, mapOf("code" to 2307, "label" to "User dont have a phone number", "details" to mapOf("retryable" to false)))
    }
    check("certify the phone number by SMS") {
        val m = call { cb -> pims.get("pims.authentication.smscode", mapOf("type" to "phoneNumberCertification", "phoneNumber" to PHONE), cb) }
        succeeded(m, null)
    }
    check("a wrong SMS code gives 2305 with the attempts left") {
        val code = lastCode(PHONE)
        val wrong = if (code == "000000") "111111" else "000000"
        val m = call { cb -> pims.set("pims.authentication.smscode", mapOf("type" to "addPhoneNumber", "smsCode" to wrong, "phoneNumber" to PHONE), cb) }
        failedWith(m, mapOf("code" to 2305, "label" to "The sms code is invalid", "details" to mapOf("attemptsRemaining" to 4, "retryable" to false)))
    }
    check("add the phone number with its code") {
        val m = call { cb -> pims.set("pims.authentication.smscode", mapOf("type" to "addPhoneNumber", "smsCode" to lastCode(PHONE), "phoneNumber" to PHONE), cb) }
        succeeded(m, null)
    }
    check("the trusted number is now known") {
        succeeded(call { cb -> pims.get("pims.authentication.trustedphonenumber", mapOf(), cb) }, mapOf("phoneNumber" to PHONE))
    }
    check("request the enrollment SMS") {
        succeeded(call { cb -> pims.get("pims.authentication.smscode", mapOf("type" to "enrollment"), cb) }, null)
    }
    check("the enrollment code says the account has no PIN yet") {
        val m = call { cb -> pims.set("pims.authentication.smscode", mapOf("action" to "enrollment", "smsCode" to lastCode(PHONE)), cb) }
        succeeded(m, mapOf("status" to "NotEnrolled"))
    }
    check("the reference's example, verbatim: its blank smsCode is refused on desktop") {
        val recording = Recording(pims)
        referenceExample(recording)
        failedWith(recording.next(), mapOf("code" to 2101, "label" to "Missing smsCode parameter", "details" to mapOf("retryable" to false)))
        assertEq("FAILED", recording.branch, "branch the example's `when` took")
    }
    check("enroll with the PIN and the SMS code, in the reference's call style") {
        val queue = LinkedBlockingQueue<Message>()
        val smsCode = lastCode(PHONE)
        pims.set("pims.authentication.enrollment",
            mapOf( /* parameters */
                Pair("action", "enroll"),
                Pair("pinCode", PIN),
                Pair("smsCode", smsCode)
            )
        ) { message -> when (message["status"] as? String) {
              "SUCCEEDED" -> { queue.put(message) }       // handle succeeded status
              "FAILED" ->    { queue.put(message) }       // handle failed status
          } }
        succeeded(queue.poll(60, TimeUnit.SECONDS) ?: throw AssertionError("no message"), null)
    }
    check("the device is now activated") {
        val m = call { cb -> pims.get("pims.authentication.account", mapOf("actionType" to "strong", "type" to "isDeviceActivated"), cb) }
        succeeded(m, mapOf("isDeviceActivated" to true))
    }
    check("8 the same enroll call again validates the PIN: SUCCEEDED, no new device") {
        val m = call { cb -> pims.set("pims.authentication.enrollment", mapOf("action" to "enroll", "pinCode" to PIN, "smsCode" to lastCode(PHONE)), cb) }
        succeeded(m, null)
        val devices = call { cb -> pims.get("pims.authentication.devices", mapOf(), cb) }
        assertEq(1, ((devices["result"] as Map<*, *>)["devices"] as List<*>).size, "devices in $devices")
    }
    check("an OTP with the PIN, verified once by a relying party") {
        val m = call { cb -> pims.get("pims.authentication.otp", mapOf("action" to "withPIN", "pinCode" to PIN), cb) }
        assertEq("SUCCEEDED", m["status"], "status")
        val otp = (m["result"] as Map<*, *>)["otp"] as String
        assertEq(setOf("otp", "expiresInSeconds"), (m["result"] as Map<*, *>).keys, "result keys")
        assertEq(true, ((m["result"] as Map<*, *>)["expiresInSeconds"] as Int) in 1..120, "expiresInSeconds")
        val rp = env("PIMS_RP_CREDENTIALS")
        val (status, body) = post("/v1/otp/verify", """{"otp":"$otp"}""", rp)
        assertEq(200, status, "first verification")
        assertEq(true, body.contains("\"withPin\":true"), "withPin in $body")
        assertEq(404, post("/v1/otp/verify", """{"otp":"$otp"}""", rp).first, "second verification")
    }
    check("a wrong PIN gives 2308 with the attempts left") {
        val m = call { cb -> pims.get("pims.authentication.otp", mapOf("action" to "withPIN", "pinCode" to "9999"), cb) }
        failedWith(m, mapOf("code" to 2308, "label" to "inwebo: access refused", "details" to mapOf("attemptsRemaining" to 4, "retryable" to false)))
    }
    check("an OTP without the PIN") {
        val m = call { cb -> pims.get("pims.authentication.otp", mapOf("action" to "withoutPIN"), cb) }
        assertEq("SUCCEEDED", m["status"], "status")
        assertEq(true, ((m["result"] as Map<*, *>)["otp"] as String).isNotEmpty(), "otp")
    }
    check("a callback that throws does not disturb the SDK") {
        pims.get("pims.sdk.version", mapOf()) { throw IllegalStateException("app bug") }
        val m = call { cb -> pims.get("pims.sdk.version", mapOf(), cb) }
        assertEq("SUCCEEDED", m["status"], "status")
    }
    check("subscribing to an unknown API is acknowledged once with 2002") {
        failedWith(call { cb -> pims.subscribe("pims.nothing.events", mapOf(), cb) }, mapOf("code" to 2002, "label" to "API not supported", "details" to mapOf("retryable" to false)))
    }
    check("release succeeds, then calls fail with 2001") {
        succeeded(call { cb -> pims.release(cb) }, null)
        failedWith(call { cb -> pims.get("pims.sdk.version", mapOf(), cb) }, mapOf("code" to 2001, "label" to "Facade not initialized", "details" to mapOf("retryable" to false)))
    }
    check("the log sink received the SDK's logs, without the PIN, codes or token") {
        if (logs.isEmpty()) throw AssertionError("no log line")
        val all = logs.joinToString("\n")
        for (secret in listOf(token, lastCode(PHONE))) {
            if (all.contains(secret)) throw AssertionError("a secret reached the logs")
        }
    }
    pims.close()
    androidScenarios()
    remoteCommandScenarios()
    goldenVectorScenarios()
    println("kotlin: $passed passed, $failed failed")
    if (failed > 0 || passed == 0) kotlin.system.exitProcess(1)
}

/** Records what the reference's example does with its message, without changing its text. */
class Recording(private val pims: Pims) {
    private val queue = LinkedBlockingQueue<Message>()
    @Volatile var branch: String? = null

    fun set(api: String, parameters: Map<String, Any?>, callback: (Message) -> Unit) =
        pims.set(api, parameters) { message ->
            callback(message)
            branch = message["status"] as? String
            queue.put(message)
        }

    fun next(): Message = queue.poll(60, TimeUnit.SECONDS) ?: throw AssertionError("no message")
}
