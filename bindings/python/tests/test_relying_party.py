"""A Python relying party with the command verifier through the binding: the golden vectors
(crates/pims-command/tests/vectors/golden.json) replayed byte for byte, and the live proofs of
test_remote_commands (as the device signed them and as the car received them) checked by the
binding and by the server's POST /v1/commands/verify."""

import base64
import time
import urllib.request
import json

import pytest

from conftest import golden_vectors
from pims_sdk import (CommandFault, CommandKey, encode_command_proof, parse_command_proof,
                      verify_command_proof)


def owner(public_key, highest=0, seen_below=0):
    return CommandKey(public_key=public_key, role="owner", active=True,
                      window_highest=highest, window_seen_below=seen_below)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_golden_vectors_parse_byte_for_byte_verify_and_refuse_any_changed_byte():
    g = golden_vectors()
    key, cosign = bytes.fromhex(g["devicePublicKey"]), bytes.fromhex(g["pinCosignPublicKey"])
    assert [c["command"] for c in g["cases"]] == ["doors.unlock", "horn", "chargeDeferredTime"]
    for case in g["cases"]:
        proof = bytes.fromhex(case["proof"])
        parsed = parse_command_proof(proof)
        assert parsed.envelope == bytes.fromhex(case["envelope"])
        assert parsed.envelope_sha256 == bytes.fromhex(case["envelopeSha256"])
        assert parsed.device_signature == bytes.fromhex(case["deviceSignature"])
        expected_cosignature = case["pinCosignature"] and bytes.fromhex(case["pinCosignature"])
        assert parsed.pin_cosignature == expected_cosignature
        assert parsed.proof_sha256 == bytes.fromhex(case["proofSha256"])
        assert (parsed.command, parsed.vin, parsed.audience) == (case["command"], g["vin"], g["audience"])
        assert (parsed.counter, parsed.expires_at) == (case["counter"], case["expiresAt"])
        assert parsed.key_id == bytes.fromhex(g["keyId"])
        assert encode_command_proof(parsed.envelope, parsed.device_signature, parsed.pin_cosignature) == proof

        ok = verify_command_proof(proof, g["vin"], g["audience"], cosign, g["now"], [owner(key)])
        assert ok.command == case["command"] and ok.vin == g["vin"]
        assert ok.with_pin == (case["pinCosignature"] is not None)
        assert ok.needs_pin == (case["command"] == "doors.unlock")
        assert (ok.counter, ok.expires_at) == (case["counter"], case["expiresAt"])
        assert ok.digest == bytes.fromhex(case["proofSha256"])
        # From an empty window (0/0): the counter is the highest, 0 below it counts as seen.
        assert (ok.window_highest, ok.window_seen_below) == (case["counter"], 1 << (case["counter"] - 1))

        for i in range(len(proof)):
            changed = bytearray(proof)
            changed[i] ^= 0x01
            with pytest.raises(CommandFault):
                verify_command_proof(bytes(changed), g["vin"], g["audience"], cosign, g["now"], [owner(key)])

        # The relying party saved the window: the same proof again is a replay.
        with pytest.raises(CommandFault.ReplayedCounter) as replay:
            verify_command_proof(proof, g["vin"], g["audience"], cosign, g["now"],
                                 [owner(key, ok.window_highest, ok.window_seen_below)])
        assert replay.value.fault == "replayedCounter"


def test_golden_vectors_are_refused_for_another_car_service_key_or_time():
    g = golden_vectors()
    key, cosign = bytes.fromhex(g["devicePublicKey"]), bytes.fromhex(g["pinCosignPublicKey"])
    unlock = bytes.fromhex(g["cases"][0]["proof"])
    parsed = parse_command_proof(unlock)

    def refused(fault, proof=unlock, vin=g["vin"], audience=g["audience"], now=g["now"], keys=None, pin_key=cosign):
        with pytest.raises(CommandFault) as e:
            verify_command_proof(proof, vin, audience, pin_key, now, keys if keys is not None else [owner(key)])
        assert e.value.fault == fault, e.value

    refused("wrongVehicle", vin="VR3UPHNKSKT101603")
    refused("wrongAudience", audience="another-service")
    refused("unknownKey", keys=[])
    refused("inactiveKey", keys=[CommandKey(public_key=key, role="owner", active=False,
                                            window_highest=0, window_seen_below=0)])
    refused("expired", now=g["now"] + 21)
    refused("ttlTooLong", now=g["now"] - 60)
    # The cloud's co-signature under another key, and the unlock without it.
    refused("badPinEvidence", pin_key=key)
    refused("pinRequired", proof=encode_command_proof(parsed.envelope, parsed.device_signature, None))
    refused("malformed", proof=unlock + b"\x00")
    refused("invalidKeychain", keys=[CommandKey(public_key=key, role="admin", active=True,
                                                window_highest=0, window_seen_below=0)])
    with pytest.raises(CommandFault.Malformed):
        parse_command_proof(b"")


def check_live_proofs(server, car, subject, device_id, device_key, signed, relayed):
    """The relying party's side of test_remote_commands' one-call flow. `signed`: the envelopes
    and signatures the device made for its unlock with the PIN and its horn; `relayed`: the
    proofs as the car received them (through the test's relay), the unlock with the command
    service's PIN co-signature. Checked with the binding against the service's pinned
    co-signing key and by the server's verification API; the relayed unlock replayed to the car
    is refused."""
    with urllib.request.urlopen(server.url + "/v1/commands/keys", timeout=10) as response:
        keys = json.loads(response.read())
    audience, cosign = keys["audience"], unb64url(keys["pinCosignKey"])
    assert audience == "pims-commands" and len(cosign) == 65
    (unlock_envelope, unlock_signature), (horn_envelope, horn_signature) = signed
    assert len(relayed) == 2, "the unlock with a wrong PIN never reached the car"
    unlock, horn = relayed
    now = int(time.time())

    # What reached the car is what the device signed, plus the co-signature for the unlock.
    parsed = parse_command_proof(unlock)
    assert (parsed.envelope, parsed.device_signature) == (unlock_envelope, unlock_signature)
    assert parsed.pin_cosignature is not None
    assert (parsed.command, parsed.vin, parsed.audience) == ("doors.unlock", car.vin, audience)
    assert horn == encode_command_proof(horn_envelope, horn_signature, None)

    ok = verify_command_proof(unlock, car.vin, audience, cosign, now, [owner(device_key)])
    assert (ok.command, ok.vin, ok.with_pin, ok.needs_pin) == ("doors.unlock", car.vin, True, True)
    assert ok.digest == parsed.proof_sha256 and now <= ok.expires_at <= now + 30
    # Without the service's co-signature, or with it checked against another key: refused.
    without_pin = encode_command_proof(unlock_envelope, unlock_signature, None)
    with pytest.raises(CommandFault.PinRequired) as e:
        verify_command_proof(without_pin, car.vin, audience, cosign, now, [owner(device_key)])
    assert e.value.fault == "pinRequired"
    with pytest.raises(CommandFault.BadPinEvidence):
        verify_command_proof(unlock, car.vin, audience, device_key, now, [owner(device_key)])

    horn_ok = verify_command_proof(horn, car.vin, audience, cosign, now, [owner(device_key)])
    assert (horn_ok.command, horn_ok.with_pin, horn_ok.needs_pin) == ("horn", False, False)
    assert horn_ok.counter > ok.counter
    with pytest.raises(CommandFault.WrongVehicle):
        verify_command_proof(horn, "VR3UPHNKSKT101603", audience, cosign, now, [owner(device_key)])

    # The server's verification of the same proofs, for the account and device the app names.
    def server_verify(proof):
        return server.post("/v1/commands/verify", {"proof": b64url(proof), "subject": subject, "deviceId": device_id},
                           server.rp_credentials)

    fields = ("subject", "deviceId", "vin", "command", "withPin", "pinRequired", "counter", "expiresAt")
    for proof, verified in [(unlock, ok), (horn, horn_ok)]:
        status, body = server_verify(proof)
        assert status == 200, body
        assert {k: body[k] for k in fields} == {
            "subject": subject, "deviceId": device_id, "vin": car.vin, "command": verified.command,
            "withPin": verified.with_pin, "pinRequired": verified.needs_pin, "counter": verified.counter,
            "expiresAt": verified.expires_at}
    status, body = server_verify(without_pin)
    assert status == 403 and "pinRequired" in json.dumps(body), (status, body)

    # The relay replays the unlock it carried straight to the car: refused, in a signed receipt.
    request = urllib.request.Request(car.url + "/v1/commands", data=json.dumps({"proof": b64url(unlock)}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        receipt = json.loads(response.read())
    assert (receipt["code"], receipt["fault"]) == (2356, "replayedCounter"), receipt
    assert unb64url(receipt["request"]) == parsed.proof_sha256
