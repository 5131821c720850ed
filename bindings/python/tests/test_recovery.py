"""The owner's own way back, from Python: a phone thief moved the trusted number; the change
notice on the owner's number carries a restore code, which the owner types on a new phone."""

import json
import re
import uuid

from pims_sdk import Pims
from conftest import call, config, failed, succeeded
from test_enrollment import add_phone_number, request_enrollment_code

PIN = "48215937"
OWNER_NUMBER = "+33612340051"
THIEF_NUMBER = "+33612340052"
RESTORE = "pims.authentication.trustedphonenumber"
FORBIDDEN = "inwebo: forbidden operation (due to activated state/blocked state/upgradable state)"


def token_for(server, subject):
    status, body = server.post("/v1/dev/tokens", {"subject": subject})
    assert status == 200
    return body["accessToken"]


def restore_code(server, number):
    """The code of the newest change notice to `number`."""
    lines = [json.loads(line) for line in server.outbox.read_text().splitlines() if line.strip()]
    codes = [m.group(1) for m in (re.search(r" with code ([0-9A-Z-]+) ", x["text"])
                                  for x in lines if x["to"] == number) if m]
    return codes[-1]


def test_the_owner_restores_a_number_a_thief_moved_from_a_new_phone(server, tmp_path):
    subject = f"owner-{uuid.uuid4()}"
    stolen = Pims(token_for(server, subject))
    succeeded(call(lambda cb: stolen.initialize(config(server, tmp_path / "stolen"), cb)), None)
    add_phone_number(stolen, server, OWNER_NUMBER)
    code = request_enrollment_code(stolen, server, OWNER_NUMBER)
    succeeded(call(lambda cb: stolen.set("pims.authentication.enrollment",
                                         {"action": "enroll", "pinCode": PIN, "smsCode": code}, cb)), None)

    # The thief, with the phone but not the PIN, moves the number to its own.
    params = {"type": "phoneNumberCertification", "phoneNumber": THIEF_NUMBER}
    succeeded(call(lambda cb: stolen.get("pims.authentication.smscode", params, cb)), None)
    params = {"type": "modifyPhoneNumber", "phoneNumber": THIEF_NUMBER,
              "smsCode": server.last_code(THIEF_NUMBER)}
    succeeded(call(lambda cb: stolen.set("pims.authentication.smscode", params, cb)), None)

    new_phone = Pims(token_for(server, subject))
    succeeded(call(lambda cb: new_phone.initialize(config(server, tmp_path / "new"), cb)), None)
    failed(call(lambda cb: new_phone.set(RESTORE, {"action": "restore", "smsCode": "AAAA-BBBB-CCCC"}, cb)),
           {"code": 2305, "label": "The sms code is invalid", "details": {"retryable": False}})
    code = restore_code(server, OWNER_NUMBER)
    message = call(lambda cb: new_phone.set(RESTORE, {"action": "restore", "smsCode": code.lower()}, cb))
    succeeded(message, {"phoneNumber": OWNER_NUMBER})
    failed(call(lambda cb: new_phone.set(RESTORE, {"action": "restore", "smsCode": code}, cb)),
           {"code": 2317, "label": FORBIDDEN,
            "details": {"reason": "nothingToRestore", "retryable": False}})

    # The stolen phone is out; the new one enrolls with the PIN.
    succeeded(call(lambda cb: stolen.get("pims.authentication.account",
                                         {"actionType": "strong", "type": "isDeviceActivated"}, cb)),
              {"isDeviceActivated": False})
    code = request_enrollment_code(new_phone, server, OWNER_NUMBER)
    succeeded(call(lambda cb: new_phone.set("pims.authentication.enrollment",
                                            {"action": "enroll", "pinCode": PIN, "smsCode": code}, cb)), None)
    message = call(lambda cb: new_phone.get("pims.authentication.otp", {"action": "withPIN", "pinCode": PIN}, cb))
    assert message["status"] == "SUCCEEDED", message
