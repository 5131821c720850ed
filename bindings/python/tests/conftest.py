"""A live PIMS server (started by bindings/run-tests.sh) and helpers to drive the facade."""

import base64
import json
import os
import queue
import re
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Server:
    url: str
    outbox: Path
    sms_domain: str
    rp_credentials: str

    def post(self, path, body, basic=None):
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        if basic:
            request.add_header("Authorization", "Basic " + base64.b64encode(basic.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def token(self, subject_prefix):
        status, body = self.post("/v1/dev/tokens", {"subject": f"{subject_prefix}-{uuid.uuid4()}"})
        assert status == 200
        return body["accessToken"]

    def last_code(self, number):
        """The code of the newest SMS to `number` that has one (security notices carry none):
        the digits after `@domain #`."""
        lines = [json.loads(line) for line in self.outbox.read_text().splitlines() if line.strip()]
        pattern = re.compile(rf"@{re.escape(self.sms_domain)} #(\d+)")
        codes = [m.group(1) for m in (pattern.search(x["text"]) for x in lines if x["to"] == number) if m]
        return codes[-1]

    def verify_otp(self, otp):
        return self.post("/v1/otp/verify", {"otp": otp}, self.rp_credentials)


@pytest.fixture(scope="session")
def server():
    missing = [n for n in ("PIMS_SERVER_URL", "PIMS_OUTBOX", "PIMS_SMS_DOMAIN", "PIMS_RP_CREDENTIALS")
               if n not in os.environ]
    if missing:
        pytest.fail(f"run through bindings/run-tests.sh (missing {', '.join(missing)})")
    return Server(os.environ["PIMS_SERVER_URL"], Path(os.environ["PIMS_OUTBOX"]),
                  os.environ["PIMS_SMS_DOMAIN"], os.environ["PIMS_RP_CREDENTIALS"])


@dataclass
class Car:
    """A simulated car (`pims vehicle`) started by bindings/run-tests.sh for one test: its VIN,
    address and the one-time pairing code it showed."""
    vin: str
    url: str
    pairing_code: str

    def state(self):
        """The car's own vehicle object (GET /v1/state), as it would show it."""
        with urllib.request.urlopen(self.url + "/v1/state", timeout=10) as response:
            return json.loads(response.read())

    def doors(self):
        return self.state()["ressources"]["status"]["doorStateInformation"]["state"]


def car(name):
    """The car run-tests.sh started for `name` (PIMS_CAR_<name> = "VIN URL CODE")."""
    value = os.environ.get(f"PIMS_CAR_{name}")
    if value is None:
        pytest.fail(f"run through bindings/run-tests.sh (missing PIMS_CAR_{name})")
    return Car(*value.split(" "))


def golden_vectors():
    """crates/pims-command/tests/vectors/golden.json, which the Rust and Kotlin tests replay too."""
    path = os.environ.get("PIMS_GOLDEN_VECTORS") or \
        Path(__file__).resolve().parents[3] / "crates/pims-command/tests/vectors/golden.json"
    return json.loads(Path(path).read_text())


def call(start, timeout=60):
    """Runs one facade call and returns its single message (a second one fails the test)."""
    messages = queue.Queue()
    start(messages.put)
    message = messages.get(timeout=timeout)
    with pytest.raises(queue.Empty):
        messages.get(timeout=0.3)
    return message


def config(server, directory):
    return {"components": {"strongAuthentication": {
        "serverUrl": server.url, "dataDirectory": str(directory), "platform": "desktop"}}}


def succeeded(message, result):
    assert set(message) == {"transactionId", "status", "result"}, message
    assert message["status"] == "SUCCEEDED"
    assert message["result"] == result
    uuid.UUID(message["transactionId"])


def failed(message, error):
    assert set(message) == {"transactionId", "status", "error"}, message
    assert message["status"] == "FAILED"
    assert message["error"] == error
    uuid.UUID(message["transactionId"])
