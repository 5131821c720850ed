"""The reference's remote-command component from Python, against a real server and a simulated
car (`pims vehicle`) that verifies every command itself: the reference's flow (subscribe to the
signal, select the VIN, pair, unlock → 2302, OTP with the PIN, unlock again → executed once)
and the one-call flow with ``pinCode``. Each test has its own car: a pairing code pairs one key.
The one-call test reaches its car through a relay that keeps the proofs, which a Python relying
party then checks (test_relying_party.check_live_proofs).
"""

import json
import os
import queue
import threading
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from conftest import call, car, config, failed, succeeded
from pims_sdk import DeviceKeys, Pims
from test_relying_party import check_live_proofs, unb64url

PIN = "58203917"
NOT_RETRYABLE = {"retryable": False}
NEED_STRONG = {"code": 2302, "label": "Need Strong Authentication", "details": NOT_RETRYABLE}
DOORS_LOCKED = {"code": 2361, "label": "All vehicle's doors are locked", "details": NOT_RETRYABLE}
WRONG_PIN = {"code": 2308, "label": "inwebo: access refused",
             "details": {"attemptsRemaining": 4, "retryable": False}}
DEVICE_LABEL = b"pims/v1/command\n"
# The order of the P-256 group: a signature's s above half of it is high-S.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class RecordingSigner(DeviceKeys):
    """A host P-256 key store that keeps what it signed for commands (envelope, low-S
    signature): what a relying party would receive from the app beside the command."""

    def __init__(self):
        self.keys = {}
        self.commands = []

    def generate(self, alias):
        self.keys[alias] = ec.generate_private_key(ec.SECP256R1())
        return self.public_key(alias)

    def public_key(self, alias=None):
        key = self.keys[alias] if alias else next(iter(self.keys.values()))
        return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    def generate_attested(self, alias, key_challenge):
        return self.generate(alias)

    def attestation(self, alias, app_challenge):
        return None

    def sign(self, alias, message):
        signature = self.keys[alias].sign(message, ec.ECDSA(hashes.SHA256()))
        if message.startswith(DEVICE_LABEL):
            r, s = decode_dss_signature(signature)
            # The SDK sends low-S only (the verifier refuses the high-S twin): as it does.
            self.commands.append((message[len(DEVICE_LABEL):], encode_dss_signature(r, min(s, P256_N - s))))
        return signature

    def delete(self, alias):
        self.keys.pop(alias, None)


class Relay:
    """Between the command service and the car (where a gateway or the network sits): forwards
    every request unchanged and keeps the command proofs it carried."""

    def __init__(self, listen, car_url):
        relay, host, port = self, *listen.split(":")
        self.proofs = []

        class Forward(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/commands":
                    relay.proofs.append(unb64url(json.loads(body)["proof"]))
                self.forward(body)

            def do_GET(self):
                self.forward(None)

            def forward(self, body):
                request = urllib.request.Request(car_url + self.path, data=body, method=self.command,
                                                 headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        status, data = response.status, response.read()
                except urllib.error.HTTPError as e:
                    status, data = e.code, e.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, int(port)), Forward)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def enrolled(server, directory, number, subject=None, signer=None):
    """A facade with an active device on a new account whose trusted number is `number`."""
    subject = subject or f"py-car-{uuid.uuid4()}"
    status, body = server.post("/v1/dev/tokens", {"subject": subject})
    assert status == 200
    pims = Pims(body["accessToken"], device_keys=signer)
    succeeded(call(lambda cb: pims.initialize(config(server, directory), cb)), None)
    succeeded(call(lambda cb: pims.get("pims.authentication.smscode",
                                       {"type": "phoneNumberCertification", "phoneNumber": number}, cb)), None)
    succeeded(call(lambda cb: pims.set("pims.authentication.smscode",
                                       {"type": "addPhoneNumber", "smsCode": server.last_code(number),
                                        "phoneNumber": number}, cb)), None)
    succeeded(call(lambda cb: pims.get("pims.authentication.smscode", {"type": "enrollment"}, cb)), None)
    succeeded(call(lambda cb: pims.set("pims.authentication.enrollment",
                                       {"action": "enroll", "pinCode": PIN,
                                        "smsCode": server.last_code(number)}, cb)), None)
    return pims


def select_and_pair(pims, the_car):
    succeeded(call(lambda cb: pims.set("pims.vehicle.vin", {"actionType": "remote", "vin": the_car.vin}, cb)), None)
    succeeded(call(lambda cb: pims.set("pims.vehicle.pairing", {"pairingCode": the_car.pairing_code}, cb)), None)


def subscribe_signal(pims):
    """The signal's events, after its one SUCCEEDED acknowledgement (checked)."""
    events = queue.Queue()
    pims.subscribe("pims.vehicle.signal", {}, events.put)
    ack = events.get(timeout=10)
    assert set(ack) == {"transactionId", "status"} and ack["status"] == "SUCCEEDED", ack
    uuid.UUID(ack["transactionId"])
    return events


def doors(pims, state, pin=None):
    params = {"action": "doors", "doorState": state}
    if pin is not None:
        params["pinCode"] = pin
    return call(lambda cb: pims.set("pims.vehicle.command", params, cb))


def executed(event, vin, door_state):
    """A RESULT event for a command the car executed, its receipt verified by the SDK."""
    assert set(event) == {"transactionId", "status", "result"}, event
    assert event["status"] == "RESULT"
    result = event["result"]
    assert set(result) == {"code", "vehicle", "receiptVerified"}, result
    assert result["code"] == 200 and result["receiptVerified"] is True
    status = result["vehicle"]["ressources"]["status"]
    assert status["doorStateInformation"]["state"] == [door_state]
    assert status["vin"] == vin and result["vehicle"]["attributes"] == {"vin": vin}
    return status


def no_more(events):
    try:
        extra = events.get(timeout=0.3)
    except queue.Empty:
        return
    raise AssertionError(f"an extra signal event: {extra}")


def test_the_reference_flow_unlocks_once_after_2302_and_an_otp_with_the_pin(server, tmp_path):
    the_car = car("PY_REFERENCE")
    pims = enrolled(server, tmp_path, "+33612347001")
    events = subscribe_signal(pims)
    select_and_pair(pims, the_car)
    assert the_car.doors() == ["Locked"]

    failed(doors(pims, "unlock"), NEED_STRONG)
    assert the_car.doors() == ["Locked"]
    no_more(events)
    otp = call(lambda cb: pims.get("pims.authentication.otp", {"action": "withPIN", "pinCode": PIN}, cb))
    assert otp["status"] == "SUCCEEDED" and otp["result"]["otp"], otp
    succeeded(doors(pims, "unlock"), None)
    executed(events.get(timeout=10), the_car.vin, "Unlocked")
    no_more(events)
    assert the_car.doors() == ["Unlocked"]

    # Executed once: the kept OTP is spent, so the same command needs the PIN again.
    failed(doors(pims, "unlock"), NEED_STRONG)
    no_more(events)
    # Locking needs no PIN; locking again finds the doors locked, and the car says so.
    succeeded(doors(pims, "lock"), None)
    executed(events.get(timeout=10), the_car.vin, "Locked")
    failed(doors(pims, "lock"), DOORS_LOCKED)
    # The car's refusal is signalled too: a RESULT event carrying its error.
    event = events.get(timeout=10)
    assert set(event) == {"transactionId", "status", "error"}, event
    assert event["status"] == "RESULT" and event["error"] == DOORS_LOCKED, event
    no_more(events)
    assert the_car.doors() == ["Locked"]
    pims.close()


def test_one_call_with_pin_code_unlocks_and_a_python_relying_party_checks_the_proofs(server, tmp_path):
    the_car = car("PY_ONE_CALL")
    subject = f"py-one-call-{uuid.uuid4()}"
    signer = RecordingSigner()
    with Relay(os.environ["PIMS_RELAY_PY_ONE_CALL"], the_car.url) as relay:
        pims = enrolled(server, tmp_path, "+33612347002", subject=subject, signer=signer)
        events = subscribe_signal(pims)
        select_and_pair(pims, the_car)

        failed(doors(pims, "unlock", "11111111"), WRONG_PIN)
        assert the_car.doors() == ["Locked"]
        no_more(events)
        succeeded(doors(pims, "unlock", PIN), None)
        executed(events.get(timeout=10), the_car.vin, "Unlocked")
        no_more(events)
        assert the_car.doors() == ["Unlocked"]
        succeeded(call(lambda cb: pims.set("pims.vehicle.command", {"action": "horn"}, cb)), None)
        assert executed(events.get(timeout=10), the_car.vin, "Unlocked")["hornCount"] == 1
        assert the_car.state()["ressources"]["status"]["hornCount"] == 1

        # What the device signed: the unlock with the wrong PIN (refused by the server, which
        # checks the PIN login bound in it), the unlock with the right one, then the horn.
        assert len(signer.commands) == 3
        devices = call(lambda cb: pims.get("pims.authentication.devices", {}, cb))["result"]["devices"]
        device_id = next(d["deviceId"] for d in devices if d["isThisDevice"])
        check_live_proofs(server, the_car, subject, device_id, signer.public_key(), signer.commands[1:],
                          relay.proofs)
        assert the_car.doors() == ["Unlocked"]
        pims.close()
