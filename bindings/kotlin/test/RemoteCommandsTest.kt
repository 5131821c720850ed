// The reference's remote-command component from Kotlin, against the live server and simulated
// cars (`pims vehicle`) that bindings/run-tests.sh started: the reference's flow (subscribe to
// the signal, select the VIN, pair, unlock → 2302, OTP with the PIN, unlock again → executed
// once) and the one-call flow with `pinCode`; then the golden command vectors
// (crates/pims-command/tests/vectors/golden.json) through the binding's verifier, byte for byte.
//
// Environment (besides EnrollmentTest's): PIMS_CAR_KT_REFERENCE and PIMS_CAR_KT_ONE_CALL
// ("VIN URL PAIRING-CODE"), PIMS_GOLDEN_VECTORS (the vectors' path).

import com.pims.sdk.Pims
import com.pims.sdk.ffi.CommandFault
import com.pims.sdk.ffi.CommandKey
import com.pims.sdk.ffi.encodeCommandProof
import com.pims.sdk.ffi.parseCommandProof
import com.pims.sdk.ffi.verifyCommandProof
import java.io.File
import java.net.URI
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.util.UUID
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

const val CAR_PIN = "58203917"
val NOT_RETRYABLE = mapOf("retryable" to false)
val NEED_STRONG = mapOf("code" to 2302, "label" to "Need Strong Authentication", "details" to NOT_RETRYABLE)
val DOORS_LOCKED = mapOf("code" to 2361, "label" to "All vehicle's doors are locked", "details" to NOT_RETRYABLE)

/** A simulated car started for one flow: a pairing code pairs one key. */
class Car(val vin: String, val url: String, val pairingCode: String) {
    /** The car's own vehicle object (GET /v1/state). */
    @Suppress("UNCHECKED_CAST")
    fun state(): Map<String, Any?> {
        val response = http.send(HttpRequest.newBuilder(URI.create("$url/v1/state")).GET().build(), HttpResponse.BodyHandlers.ofString())
        assertEq(200, response.statusCode(), "car state status")
        return Json.parse(response.body()) as Map<String, Any?>
    }

    fun doors(): Any? = path(state(), "ressources", "status", "doorStateInformation", "state")

    companion object {
        fun named(name: String): Car {
            val (vin, url, code) = env("PIMS_CAR_$name").split(" ")
            return Car(vin, url, code)
        }
    }
}

fun path(value: Any?, vararg keys: String): Any? = keys.fold(value) { v, k -> (v as Map<*, *>)[k] }

/** A facade with an active device on a new account whose trusted number is `phone`. */
fun enrolledPims(dir: String, phone: String): Pims {
    val token = mintToken("kotlin-car-${UUID.randomUUID()}")
    val pims = Pims { token }
    succeeded(call { cb -> pims.initialize(config(dir), cb) }, null)
    succeeded(call { cb -> pims.get("pims.authentication.smscode", mapOf("type" to "phoneNumberCertification", "phoneNumber" to phone), cb) }, null)
    succeeded(call { cb -> pims.set("pims.authentication.smscode", mapOf("type" to "addPhoneNumber", "smsCode" to lastCode(phone), "phoneNumber" to phone), cb) }, null)
    succeeded(call { cb -> pims.get("pims.authentication.smscode", mapOf("type" to "enrollment"), cb) }, null)
    succeeded(call { cb -> pims.set("pims.authentication.enrollment", mapOf("action" to "enroll", "pinCode" to CAR_PIN, "smsCode" to lastCode(phone)), cb) }, null)
    return pims
}

fun selectAndPair(pims: Pims, car: Car) {
    succeeded(call { cb -> pims.set("pims.vehicle.vin", mapOf("actionType" to "remote", "vin" to car.vin), cb) }, null)
    succeeded(call { cb -> pims.set("pims.vehicle.pairing", mapOf("pairingCode" to car.pairingCode), cb) }, null)
}

/** The signal's events, after its one SUCCEEDED acknowledgement (checked). */
fun subscribeSignal(pims: Pims): LinkedBlockingQueue<Message> {
    val events = LinkedBlockingQueue<Message>()
    pims.subscribe("pims.vehicle.signal", mapOf()) { events.put(it) }
    val ack = events.poll(10, TimeUnit.SECONDS) ?: throw AssertionError("no acknowledgement")
    assertEq(setOf("transactionId", "status"), ack.keys, "keys of $ack")
    assertEq("SUCCEEDED", ack["status"], "acknowledgement")
    assertTransactionId(ack)
    return events
}

fun doors(pims: Pims, state: String, pin: String? = null): Message {
    val params = mutableMapOf<String, Any?>("action" to "doors", "doorState" to state)
    if (pin != null) params["pinCode"] = pin
    return call { cb -> pims.set("pims.vehicle.command", params, cb) }
}

fun nextEvent(events: LinkedBlockingQueue<Message>): Message =
    events.poll(10, TimeUnit.SECONDS) ?: throw AssertionError("no signal event within 10 s")

fun noMoreEvents(events: LinkedBlockingQueue<Message>) {
    val extra = events.poll(300, TimeUnit.MILLISECONDS)
    if (extra != null) throw AssertionError("an extra signal event: $extra")
}

/** A RESULT event for a command the car executed, its receipt verified by the SDK. */
fun executed(event: Message, car: Car, doorState: String): Map<*, *> {
    assertEq(setOf("transactionId", "status", "result"), event.keys, "keys of $event")
    assertEq("RESULT", event["status"], "status")
    val result = event["result"] as Map<*, *>
    assertEq(setOf("code", "vehicle", "receiptVerified"), result.keys, "result keys")
    assertEq(200, result["code"], "code")
    assertEq(true, result["receiptVerified"], "receiptVerified")
    val status = path(result, "vehicle", "ressources", "status") as Map<*, *>
    assertEq(listOf(doorState), path(status, "doorStateInformation", "state"), "doors")
    assertEq(car.vin, status["vin"], "vin")
    return status
}

fun remoteCommandScenarios() {
    check("remote commands: the reference flow unlocks once after 2302 and an OTP with the PIN") {
        val car = Car.named("KT_REFERENCE")
        enrolledPims("car-reference", "+33612347003").use { pims ->
            val events = subscribeSignal(pims)
            selectAndPair(pims, car)
            assertEq(listOf("Locked"), car.doors(), "car doors")
            failedWith(doors(pims, "unlock"), NEED_STRONG)
            assertEq(listOf("Locked"), car.doors(), "car doors after 2302")
            noMoreEvents(events)
            val otp = call { cb -> pims.get("pims.authentication.otp", mapOf("action" to "withPIN", "pinCode" to CAR_PIN), cb) }
            assertEq("SUCCEEDED", otp["status"], "OTP status")
            succeeded(doors(pims, "unlock"), null)
            executed(nextEvent(events), car, "Unlocked")
            noMoreEvents(events)
            assertEq(listOf("Unlocked"), car.doors(), "car doors after the unlock")
            // Executed once: the kept OTP is spent, so the same command needs the PIN again.
            failedWith(doors(pims, "unlock"), NEED_STRONG)
            noMoreEvents(events)
            succeeded(doors(pims, "lock"), null)
            executed(nextEvent(events), car, "Locked")
            failedWith(doors(pims, "lock"), DOORS_LOCKED)
            // The car's refusal is signalled too: a RESULT event carrying its error.
            val event = nextEvent(events)
            assertEq(setOf("transactionId", "status", "error"), event.keys, "keys of $event")
            assertEq("RESULT", event["status"], "status of $event")
            assertEq(DOORS_LOCKED, event["error"], "error of $event")
            noMoreEvents(events)
            assertEq(listOf("Locked"), car.doors(), "car doors at the end")
        }
    }
    check("remote commands: one call with pinCode unlocks; a wrong PIN is counted") {
        val car = Car.named("KT_ONE_CALL")
        enrolledPims("car-one-call", "+33612347004").use { pims ->
            val events = subscribeSignal(pims)
            selectAndPair(pims, car)
            failedWith(doors(pims, "unlock", "11111111"), mapOf("code" to 2308, "label" to "inwebo: access refused",
                "details" to mapOf("attemptsRemaining" to 4, "retryable" to false)))
            assertEq(listOf("Locked"), car.doors(), "car doors after a wrong PIN")
            noMoreEvents(events)
            succeeded(doors(pims, "unlock", CAR_PIN), null)
            executed(nextEvent(events), car, "Unlocked")
            noMoreEvents(events)
            assertEq(listOf("Unlocked"), car.doors(), "car doors after the unlock")
            succeeded(call { cb -> pims.set("pims.vehicle.command", mapOf("action" to "horn"), cb) }, null)
            assertEq(1, executed(nextEvent(events), car, "Unlocked")["hornCount"], "hornCount")
        }
    }
}

fun hex(s: String): ByteArray = ByteArray(s.length / 2) { s.substring(2 * it, 2 * it + 2).toInt(16).toByte() }

fun assertBytes(expected: ByteArray?, actual: ByteArray?, what: String) {
    if (expected == null && actual == null) return
    if (expected == null || actual == null || !expected.contentEquals(actual)) {
        throw AssertionError("$what: bytes differ")
    }
}

@Suppress("UNCHECKED_CAST")
fun goldenVectorScenarios() {
    val g = Json.parse(File(env("PIMS_GOLDEN_VECTORS")).readText()) as Map<String, Any?>
    val vin = g["vin"] as String
    val audience = g["audience"] as String
    val now = (g["now"] as Number).toLong().toULong()
    val deviceKey = hex(g["devicePublicKey"] as String)
    val cosignKey = hex(g["pinCosignPublicKey"] as String)
    val owner = listOf(CommandKey(deviceKey, "owner", true, 0uL, 0uL))
    val cases = g["cases"] as List<Map<String, Any?>>
    check("golden vectors: three cases") {
        assertEq(listOf("doors.unlock", "horn", "chargeDeferredTime"), cases.map { it["command"] }, "commands")
    }
    for (case in cases) {
        check("golden vector \"${case["name"]}\": parsed byte for byte, verified, every changed byte refused") {
            val proof = hex(case["proof"] as String)
            val parsed = parseCommandProof(proof)
            assertBytes(hex(case["envelope"] as String), parsed.envelope, "envelope")
            assertBytes(hex(case["envelopeSha256"] as String), parsed.envelopeSha256, "envelopeSha256")
            assertBytes(hex(case["deviceSignature"] as String), parsed.deviceSignature, "deviceSignature")
            assertBytes((case["pinCosignature"] as String?)?.let(::hex), parsed.pinCosignature, "pinCosignature")
            assertBytes(hex(case["proofSha256"] as String), parsed.proofSha256, "proofSha256")
            assertBytes(hex(g["keyId"] as String), parsed.keyId, "keyId")
            assertEq(case["command"], parsed.command, "command")
            assertEq((case["counter"] as Number).toLong().toULong(), parsed.counter, "counter")
            assertBytes(proof, encodeCommandProof(parsed.envelope, parsed.deviceSignature, parsed.pinCosignature), "re-encoded proof")

            val ok = verifyCommandProof(proof, vin, audience, cosignKey, now, owner)
            assertEq(case["command"], ok.command, "verified command")
            assertEq(vin, ok.vin, "verified vin")
            assertEq(case["pinCosignature"] != null, ok.withPin, "withPin")
            assertEq(case["command"] == "doors.unlock", ok.needsPin, "needsPin")
            assertBytes(hex(case["proofSha256"] as String), ok.digest, "digest")
            for (i in proof.indices) {
                val changed = proof.copyOf()
                changed[i] = (changed[i].toInt() xor 1).toByte()
                try {
                    verifyCommandProof(changed, vin, audience, cosignKey, now, owner)
                    throw AssertionError("byte $i changed: accepted")
                } catch (e: CommandFault) {
                    // refused, as it must be
                }
            }
            try {
                verifyCommandProof(proof, vin, audience, cosignKey, now,
                    listOf(CommandKey(deviceKey, "owner", true, ok.windowHighest, ok.windowSeenBelow)))
                throw AssertionError("a replay was accepted")
            } catch (e: CommandFault.ReplayedCounter) {
                assertEq("replayedCounter", e.fault, "fault")
            }
        }
    }
    check("golden vectors: the unlock without its PIN co-signature is pinRequired; another car wrongVehicle") {
        val parsed = parseCommandProof(hex(cases[0]["proof"] as String))
        try {
            verifyCommandProof(encodeCommandProof(parsed.envelope, parsed.deviceSignature, null), vin, audience, cosignKey, now, owner)
            throw AssertionError("accepted without the PIN")
        } catch (e: CommandFault.PinRequired) {
            assertEq("pinRequired", e.fault, "fault")
        }
        try {
            verifyCommandProof(hex(cases[0]["proof"] as String), "VR3UPHNKSKT101603", audience, cosignKey, now, owner)
            throw AssertionError("accepted for another car")
        } catch (e: CommandFault.WrongVehicle) {
            assertEq("wrongVehicle", e.fault, "fault")
        }
    }
}

/** Just enough JSON for the golden vectors and the car's state. */
object Json {
    fun parse(text: String): Any? {
        val p = Parser(text)
        val value = p.value()
        p.ws()
        if (p.i != text.length) throw IllegalArgumentException("trailing characters at ${p.i}")
        return value
    }

    private class Parser(val s: String) {
        var i = 0

        fun ws() {
            while (i < s.length && s[i].isWhitespace()) i++
        }

        fun expect(c: Char) {
            ws()
            if (s[i] != c) throw IllegalArgumentException("expected '$c' at $i")
            i++
        }

        fun value(): Any? {
            ws()
            return when (s[i]) {
                '{' -> {
                    i++
                    val map = LinkedHashMap<String, Any?>()
                    ws()
                    if (s[i] == '}') {
                        i++
                    } else {
                        do {
                            ws()
                            val key = string()
                            expect(':')
                            map[key] = value()
                            ws()
                        } while (s[i++] == ',')
                        if (s[i - 1] != '}') throw IllegalArgumentException("expected '}' at ${i - 1}")
                    }
                    map
                }
                '[' -> {
                    i++
                    val list = ArrayList<Any?>()
                    ws()
                    if (s[i] == ']') {
                        i++
                    } else {
                        do {
                            list.add(value())
                            ws()
                        } while (s[i++] == ',')
                        if (s[i - 1] != ']') throw IllegalArgumentException("expected ']' at ${i - 1}")
                    }
                    list
                }
                '"' -> string()
                't' -> { i += 4; true }
                'f' -> { i += 5; false }
                'n' -> { i += 4; null }
                else -> {
                    val start = i
                    while (i < s.length && s[i] in "+-.eE0123456789") i++
                    val n = s.substring(start, i)
                    n.toLongOrNull()?.let { if (it in Int.MIN_VALUE..Int.MAX_VALUE) it.toInt() else it } ?: n.toDouble()
                }
            }
        }

        fun string(): String {
            expect('"')
            val out = StringBuilder()
            while (s[i] != '"') {
                if (s[i] == '\\') {
                    i++
                    when (s[i]) {
                        'n' -> out.append('\n')
                        't' -> out.append('\t')
                        'r' -> out.append('\r')
                        'b' -> out.append('\b')
                        'f' -> out.append('\u000c')
                        'u' -> { out.append(s.substring(i + 1, i + 5).toInt(16).toChar()); i += 4 }
                        else -> out.append(s[i])
                    }
                } else {
                    out.append(s[i])
                }
                i++
            }
            i++
            return out.toString()
        }
    }
}
