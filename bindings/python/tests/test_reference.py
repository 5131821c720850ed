"""The reference's Android case with a Python SMS reader, national numbers, and typed values."""

import threading
import time

from conftest import call, failed, succeeded
from pims_sdk import Pims, round_trip

RETRYABLE = {"retryable": False}


def android(server, directory, timeout=10):
    return {"components": {"strongAuthentication": {
        "serverUrl": server.url, "dataDirectory": str(directory), "platform": "android",
        "smsCodeTimeoutSeconds": timeout, "defaultRegion": "FR"}}}


def trusted_number(pims, server, typed, e164):
    succeeded(call(lambda cb: pims.get("pims.authentication.smscode",
                                       {"type": "phoneNumberCertification", "phoneNumber": typed}, cb)), None)
    succeeded(call(lambda cb: pims.set("pims.authentication.smscode",
                                       {"type": "addPhoneNumber", "smsCode": server.last_code(e164),
                                        "phoneNumber": typed}, cb)), None)
    succeeded(call(lambda cb: pims.get("pims.authentication.trustedphonenumber", {}, cb)),
              {"phoneNumber": e164})


def test_android_enroll_reads_the_sms_through_a_python_reader(server, tmp_path):
    number = "+33612341001"
    asked = []

    def reader(timeout_seconds):
        asked.append(timeout_seconds)
        time.sleep(0.2)  # the SMS arrives a moment later
        return server.last_code(number)

    with Pims(server.token("py-android"), sms_code_reader=reader) as pims:
        succeeded(call(lambda cb: pims.initialize(android(server, tmp_path), cb)), None)
        trusted_number(pims, server, "06 12 34 10 01", number)
        succeeded(call(lambda cb: pims.get("pims.authentication.smscode", {"type": "enrollment"}, cb)), None)
        m = call(lambda cb: pims.set("pims.authentication.enrollment",
                                     {"action": "enroll", "pinCode": "1234", "smsCode": " "}, cb))
        succeeded(m, None)
        assert asked == [10.0]
        otp = call(lambda cb: pims.get("pims.authentication.otp", {"action": "withPIN", "pinCode": "1234"}, cb))
        assert server.verify_otp(otp["result"]["otp"])[0] == 200
        # Step 8 of the tutorial: the same call again validates the PIN without asking the reader.
        succeeded(call(lambda cb: pims.set("pims.authentication.enrollment",
                                           {"action": "enroll", "pinCode": "1234", "smsCode": " "}, cb)), None)
        assert len(asked) == 1


def test_android_without_an_sms_in_time_is_2101(server, tmp_path):
    with Pims(server.token("py-android"), sms_code_reader=lambda timeout: None) as pims:
        succeeded(call(lambda cb: pims.initialize(android(server, tmp_path, 1), cb)), None)
        trusted_number(pims, server, "0612341002", "+33612341002")
        m = call(lambda cb: pims.set("pims.authentication.enrollment", {"action": "enroll", "pinCode": "1234"}, cb))
        failed(m, {"code": 2101, "label": "Missing smsCode parameter", "details": RETRYABLE})


def test_national_numbers(server, tmp_path):
    with Pims(server.token("py-national")) as pims:
        succeeded(call(lambda cb: pims.initialize(android(server, tmp_path), cb)), None)
        for typed in ["0612341003", "06.12.34.10.03", "0033612341003"]:
            succeeded(call(lambda cb: pims.get("pims.authentication.smscode",
                                               {"type": "phoneNumberCertification", "phoneNumber": typed}, cb)), None)
        # The tutorial's fixed line is a valid number that cannot receive SMS: the app is told why.
        for bad, details in [("0123456789", {"reason": "notMobile", **RETRYABLE}), ("06123", RETRYABLE)]:
            m = call(lambda cb: pims.get("pims.authentication.smscode",
                                         {"type": "phoneNumberCertification", "phoneNumber": bad}, cb))
            failed(m, {"code": 2102, "label": "Invalid phoneNumber parameter", "details": details})
        trusted_number(pims, server, "0612341003", "+33612341003")


def test_typed_values_round_trip():
    value = {"nested": {"list": [1, 2.5, None, True, "é — 日本 😀"], "empty": {}},
             "big": 2**40, "negative": -(2**33), "unicode": "Ünïcødé"}
    assert round_trip(value) == value


def test_a_value_with_no_sdk_form_is_one_failed_message(server, tmp_path):
    with Pims(server.token("py-values")) as pims:
        succeeded(call(lambda cb: pims.initialize(android(server, tmp_path), cb)), None)
        for bad in [{1, 2}, b"1234", object(), float("nan"), 2**70, {1: "x"}]:
            m = call(lambda cb: pims.get("pims.authentication.otp", {"action": "withPIN", "pinCode": bad}, cb))
            failed(m, {"code": 2102, "label": "Invalid pinCode parameter", "details": RETRYABLE})
