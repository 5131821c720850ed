"""Full enrollment from Python against a live server, with the device key in a Python signer."""

import asyncio
import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pims_sdk import DeviceKeys, HostFailure, KeyAttestation, LogLevel, LogSink, Pims, VaultKeyStore, set_log_sink
from conftest import call, config, failed, succeeded

# Long enough that no random transaction id in the logs contains it by chance.
PIN = "73920561"
IS_ACTIVATED = {"actionType": "strong", "type": "isDeviceActivated"}
NO_TOKEN_HINT = "no access token: the app's AccessTokenProvider gave none (it returned null or blank, or failed)"
INTERNAL_STATE = {"code": 2311, "label": "inwebo: internal state not correct", "details": {"retryable": False}}


class PythonSigner(DeviceKeys):
    """A host P-256 signer, as a phone's keystore would be: SEC1 public keys, DER signatures."""

    def __init__(self):
        self.keys = {}
        self.signatures = 0

    def generate(self, alias):
        key = ec.generate_private_key(ec.SECP256R1())
        self.keys[alias] = key
        return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    def sign(self, alias, message):
        self.signatures += 1
        return self.keys[alias].sign(message, ec.ECDSA(hashes.SHA256()))

    def delete(self, alias):
        self.keys.pop(alias, None)

    def generate_attested(self, alias, key_challenge):
        return self.generate(alias)

    def attestation(self, alias, app_challenge):
        return None


class AttestingSigner(PythonSigner):
    """A key store that attests as an Android phone would: it is given the session's key
    challenge at creation and returns a certificate chain. Here a real phone's chain from
    pims-attest's vectors, replayed: the server records it as `unattested`, its challenge
    not being this enrollment's."""

    def __init__(self, chain):
        super().__init__()
        self.chain = chain
        self.challenges = []

    def generate_attested(self, alias, key_challenge):
        self.challenges.append(("key", bytes(key_challenge)))
        return self.generate(alias)

    def attestation(self, alias, app_challenge):
        self.challenges.append(("app", bytes(app_challenge)))
        return KeyAttestation.ANDROID(chain=self.chain)


def pem_chain(path):
    """The DER certificates of a PEM file, in order."""
    text = path.read_text()
    blocks = text.split("-----BEGIN CERTIFICATE-----")[1:]
    return [base64.b64decode("".join(b.split("-----END CERTIFICATE-----")[0].split())) for b in blocks]


class FixedVaultKey(VaultKeyStore):
    def __init__(self, key):
        self.key = key
        self.calls = 0

    def load_or_create(self):
        self.calls += 1
        return self.key


class BrokenSigner(PythonSigner):
    def __init__(self, error):
        super().__init__()
        self.error = error

    def generate(self, alias):
        raise self.error


class Lines(LogSink):
    def __init__(self):
        self.lines = []

    def log(self, level, target, message):
        self.lines.append(f"{level} {target} {message}")


def add_phone_number(pims, server, number):
    params = {"type": "phoneNumberCertification", "phoneNumber": number}
    succeeded(call(lambda cb: pims.get("pims.authentication.smscode", params, cb)), None)
    params = {"type": "addPhoneNumber", "smsCode": server.last_code(number), "phoneNumber": number}
    succeeded(call(lambda cb: pims.set("pims.authentication.smscode", params, cb)), None)


def request_enrollment_code(pims, server, number):
    params = {"type": "enrollment"}
    succeeded(call(lambda cb: pims.get("pims.authentication.smscode", params, cb)), None)
    return server.last_code(number)


def test_full_enrollment_with_a_python_signer_and_vault_key(server, tmp_path):
    logs = Lines()
    set_log_sink(logs, LogLevel.TRACE)
    token = server.token("python")
    signer, vault_key = PythonSigner(), FixedVaultKey(bytes(range(32)))
    pims = Pims(token, device_keys=signer, vault_key_store=vault_key)
    number = "+33612340002"

    failed(call(lambda cb: pims.get("pims.authentication.account", IS_ACTIVATED, cb)),
           {"code": 2001, "label": "Facade not initialized", "details": {"retryable": False}})
    succeeded(call(lambda cb: pims.initialize(config(server, tmp_path), cb)), None)
    succeeded(call(lambda cb: pims.get("pims.authentication.account", IS_ACTIVATED, cb)),
              {"isDeviceActivated": False})
    succeeded(call(lambda cb: pims.get("pims.authentication.account",
                                       {"actionType": "strong", "type": "isAccountBlocked"}, cb)),
              {"isAccountBlocked": "NotBlocked"})
    failed(call(lambda cb: pims.get("pims.authentication.trustedphonenumber", {}, cb)),
           {"code": 2307, "label": "User dont have a phone number", "details": {"retryable": False}})
    add_phone_number(pims, server, number)
    succeeded(call(lambda cb: pims.get("pims.authentication.trustedphonenumber", {}, cb)),
              {"phoneNumber": number})
    code = request_enrollment_code(pims, server, number)
    succeeded(call(lambda cb: pims.set("pims.authentication.smscode",
                                       {"action": "enrollment", "smsCode": code}, cb)),
              {"status": "NotEnrolled"})
    failed(call(lambda cb: pims.set("pims.authentication.enrollment",
                                    {"action": "enroll", "smsCode": code}, cb)),
           {"code": 2101, "label": "Missing pinCode parameter", "details": {"retryable": False}})

    succeeded(call(lambda cb: pims.set("pims.authentication.enrollment",
                                       {"action": "enroll", "pinCode": PIN, "smsCode": code}, cb)), None)

    assert len(signer.keys) == 1 and signer.signatures >= 2  # enrollment, then activation
    assert vault_key.calls == 1
    succeeded(call(lambda cb: pims.get("pims.authentication.account", IS_ACTIVATED, cb)),
              {"isDeviceActivated": True})
    message = call(lambda cb: pims.get("pims.authentication.otp", {"action": "withPIN", "pinCode": PIN}, cb))
    assert message["status"] == "SUCCEEDED" and set(message["result"]) == {"otp", "expiresInSeconds"}
    assert 0 < message["result"]["expiresInSeconds"] <= 120
    status, body = server.verify_otp(message["result"]["otp"])
    assert status == 200 and body["withPin"] is True
    assert server.verify_otp(message["result"]["otp"])[0] == 404
    failed(call(lambda cb: pims.get("pims.authentication.otp", {"action": "withPIN", "pinCode": "9999"}, cb)),
           {"code": 2308, "label": "inwebo: access refused", "details": {"attemptsRemaining": 4, "retryable": False}})

    assert logs.lines
    everything = "\n".join(logs.lines)
    for secret in (token, code, PIN):
        assert secret not in everything
    set_log_sink(None)


def test_an_attesting_key_store_is_given_the_sessions_challenges_and_its_chain_is_recorded(server, tmp_path):
    chain = pem_chain(Path(__file__).resolve().parents[3] /
                      "crates/pims-attest/tests/vectors/android-key-attestation/caiman/sdk36/TEE_EC_RKP.pem")
    assert len(chain) >= 3
    signer = AttestingSigner(chain)
    pims = Pims(server.token("python-attested"), device_keys=signer)
    number = "+33612340009"
    succeeded(call(lambda cb: pims.initialize(config(server, tmp_path), cb)), None)
    add_phone_number(pims, server, number)
    code = request_enrollment_code(pims, server, number)
    succeeded(call(lambda cb: pims.set("pims.authentication.enrollment",
                                       {"action": "enroll", "pinCode": PIN, "smsCode": code}, cb)), None)
    # The key was created with the session's 32-byte key challenge; the attestation asked with
    # the 32-byte app challenge, which binds the key too: two different values.
    assert [kind for kind, _ in signer.challenges] == ["key", "app"]
    assert all(len(c) == 32 for _, c in signer.challenges)
    assert signer.challenges[0][1] != signer.challenges[1][1]
    devices = call(lambda cb: pims.get("pims.authentication.devices", {}, cb))
    assert devices["status"] == "SUCCEEDED", devices
    (device,) = devices["result"]["devices"]
    # A genuine chain, but attested for another key and session: recorded, not trusted.
    assert device["assurance"] == "unattested", device


def test_awaitable_form(server, tmp_path):
    async def scenario():
        pims = Pims(server.token("python-async"))
        succeeded(await pims.initialize_async(config(server, tmp_path)), None)
        succeeded(await pims.get_async("pims.authentication.account", IS_ACTIVATED),
                  {"isDeviceActivated": False})
        version = await pims.get_async("pims.sdk.version")
        assert version["status"] == "SUCCEEDED" and version["result"]["version"]
        failed(await pims.set_async("pims.authentication.enrollment", {"action": "enroll"}),
               {"code": 2101, "label": "Missing pinCode parameter", "details": {"retryable": False}})
        succeeded(await pims.release_async(), None)

    asyncio.run(scenario())


@pytest.mark.parametrize("error", [HostFailure.Failed("keystore unavailable"), RuntimeError("bug")],
                         ids=["declared", "undeclared"])
def test_a_signer_that_raises_fails_the_enrollment_without_crashing(server, tmp_path, error):
    signer = BrokenSigner(error)
    pims = Pims(server.token("python-broken"), device_keys=signer)
    number = "+33612340003" if isinstance(error, HostFailure) else "+33612340004"
    succeeded(call(lambda cb: pims.initialize(config(server, tmp_path), cb)), None)
    add_phone_number(pims, server, number)
    code = request_enrollment_code(pims, server, number)
    failed(call(lambda cb: pims.set("pims.authentication.enrollment",
                                    {"action": "enroll", "pinCode": PIN, "smsCode": code}, cb)),
           INTERNAL_STATE)
    succeeded(call(lambda cb: pims.get("pims.authentication.account", IS_ACTIVATED, cb)),
              {"isDeviceActivated": False})


def test_a_vault_key_of_the_wrong_length_is_2311(server, tmp_path):
    pims = Pims(server.token("python-vault"), vault_key_store=FixedVaultKey(b"short"))
    succeeded(call(lambda cb: pims.initialize(config(server, tmp_path), cb)), None)
    failed(call(lambda cb: pims.get("pims.authentication.account", IS_ACTIVATED, cb)), INTERNAL_STATE)


def test_no_token_is_2301(server, tmp_path):
    pims = Pims(None)
    succeeded(call(lambda cb: pims.initialize(config(server, tmp_path), cb)), None)
    failed(call(lambda cb: pims.get("pims.authentication.account", IS_ACTIVATED, cb)),
           {"code": 2301, "label": "Need Basic Authentication",
            "details": {"hint": NO_TOKEN_HINT, "retryable": False}})


def test_a_raising_callback_does_not_disturb_the_sdk(server, tmp_path):
    pims = Pims(server.token("python-callback"))
    succeeded(call(lambda cb: pims.initialize(config(server, tmp_path), cb)), None)

    def bad(message):
        raise ValueError("app bug")

    pims.get("pims.sdk.version", {}, bad)
    assert call(lambda cb: pims.get("pims.sdk.version", {}, cb))["status"] == "SUCCEEDED"
    failed(call(lambda cb: pims.initialize(config(server, tmp_path), cb)),
           {"code": 2007, "label": "Facade already initialized", "details": {"retryable": False}})
