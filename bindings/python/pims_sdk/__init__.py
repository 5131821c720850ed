"""The PIMS SDK facade for Python.

    pims = Pims(access_token="…")
    pims.initialize({"components": {"strongAuthentication": {...}}}, print)
    pims.set("pims.authentication.enrollment",
             {"action": "enroll", "pinCode": "1234", "smsCode": "123456"},
             lambda message: print(message["status"]))
    message = await pims.set_async("pims.authentication.otp", {"action": "withPIN", "pinCode": "1234"})

Messages are dicts shaped as the reference shows them: ``transactionId``, ``status``
(``SUCCEEDED`` / ``FAILED`` / ``RESULT``) and ``result`` or ``error`` (``code`` is an int).
Callbacks run on an SDK thread.

Remote commands (``pims.vehicle.vin``, ``pims.vehicle.pairing``, ``pims.vehicle.command``,
``pims.vehicle.signal``) go through the same calls. For a relying party, the module also has
the command verifier the car runs (``pims-command``), as plain functions of bytes:

    keys = [CommandKey(public_key=device_key, role="owner", active=True,
                       window_highest=0, window_seen_below=0)]
    ok = verify_command_proof(proof, vin, "pims-commands", pin_cosign_key, int(time.time()), keys)
    ok.command, ok.with_pin        # "doors.unlock", True; save ok.window_* before acting
    parse_command_proof(proof)     # envelope, signatures and digests, no signature checked

``pin_cosign_key`` is the command service's (``GET /v1/commands/keys``, ``pinCosignKey``). A
refusal raises ``CommandFault`` (``CommandFault.PinRequired``…, ``.fault`` its stable name).
"""

import asyncio
import atexit
import math
import sys
import weakref
from typing import Any, Callable, Dict, Optional

from ._native import pims_ffi as _ffi
from ._native.pims_ffi import (  # noqa: F401  (host capabilities the app implements)
    AccessTokenProvider,
    DeviceKeys,
    HostFailure,
    KeyAttestation,
    LogLevel,
    LogSink,
    VaultKeyStore,
)
from ._native.pims_ffi import (  # noqa: F401  (the command verifier, for relying parties)
    CommandFault,
    CommandKey,
    ParsedProof,
    VerifiedCommand,
    encode_command_proof,
    parse_command_proof,
    verify_command_proof,
)

Message = Dict[str, Any]
Callback = Callable[[Message], None]
# Android's SMS reader: called with the timeout in seconds, returns the code or None.
SmsCodeReader = Callable[[float], Optional[str]]

__all__ = [
    "Pims", "Message", "AccessTokenProvider", "DeviceKeys", "KeyAttestation", "HostFailure", "LogLevel",
    "LogSink", "VaultKeyStore", "SmsCodeReader", "set_log_sink", "round_trip",
    "CommandFault", "CommandKey", "ParsedProof", "VerifiedCommand", "encode_command_proof",
    "parse_command_proof", "verify_command_proof",
]


def round_trip(value: Any) -> Any:
    """``value`` converted to the SDK's typed form, through its JSON form and back: what a
    parameter becomes. For tests of the conversions."""
    back = _ffi.round_trip(_to_value(value))
    return None if back is None else _from_value(back)


_live: "weakref.WeakSet[Pims]" = weakref.WeakSet()
_log_sink_set = False


def set_log_sink(sink: Optional[LogSink], max_level: LogLevel = LogLevel.INFO) -> None:
    """Forwards the SDK's logs (never containing secrets) to ``sink``; ``None`` stops them."""
    global _log_sink_set
    _log_sink_set = sink is not None
    _ffi.set_log_sink(sink, max_level)


@atexit.register
def _stop_sdk_threads() -> None:
    # An SDK thread that calls into Python while the interpreter finalizes kills the process:
    # stop them all first (the wait releases the GIL, so running callbacks can finish).
    for pims in list(_live):
        pims.close()
    if _log_sink_set:
        _ffi.set_log_sink(None, LogLevel.ERROR)


class _StaticToken(AccessTokenProvider):
    def __init__(self, token: Optional[str]):
        self._token = token

    def access_token(self) -> Optional[str]:
        return self._token


class _NotRepresentable(Exception):
    """A value with no PimsValue form (a set, bytes, an object, a non-string key)."""


def _to_value(value: Any) -> "_ffi.PimsValue":
    V = _ffi.PimsValue
    if value is None:
        return V.NULL()
    if isinstance(value, bool):
        return V.BOOL(value)
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise _NotRepresentable()
        return V.INTEGER(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotRepresentable()
        return V.REAL(value)
    if isinstance(value, str):
        return V.TEXT(value)
    if isinstance(value, (list, tuple)):
        return V.ITEMS([_to_value(v) for v in value])
    if isinstance(value, dict):
        return V.ENTRIES(_to_entries(value))
    raise _NotRepresentable()


def _to_entries(mapping: Dict[Any, Any]) -> Dict[str, "_ffi.PimsValue"]:
    if not all(isinstance(k, str) for k in mapping):
        raise _NotRepresentable()
    return {k: _to_value(v) for k, v in mapping.items()}


def _from_value(value: "_ffi.PimsValue") -> Any:
    V = _ffi.PimsValue
    if value.is_NULL():
        return None
    if value.is_ITEMS():
        return [_from_value(v) for v in value.items]
    if value.is_ENTRIES():
        return {k: _from_value(v) for k, v in value.entries.items()}
    return value.value


class _Handler(_ffi.MessageHandler):
    def __init__(self, callback: Callback):
        self._callback = callback

    def on_message(self, message) -> None:
        try:
            self._callback({k: _from_value(v) for k, v in message.items()})
        except Exception as e:  # an app bug must not reach the SDK thread
            print(f"pims: the app's callback raised {type(e).__name__}", file=sys.stderr)


class _SmsCodes(_ffi.SmsCodeProvider):
    def __init__(self, reader: SmsCodeReader):
        self._reader = reader

    def sms_code(self, timeout_millis: int) -> Optional[str]:
        return self._reader(timeout_millis / 1000)


class Pims:
    """The ``pims`` facade with the StrongAuthentication component.

    Give either ``access_token`` (a fixed token) or ``token_provider`` (an
    ``AccessTokenProvider``). ``device_keys`` (a P-256 signer) and ``vault_key_store`` are
    optional: without them the SDK keeps its keys in software, in the data directory.
    ``sms_code_reader`` (Android) is called with a timeout in seconds when ``enroll`` has no
    ``smsCode`` and returns the code from the SMS, or ``None``. A parameter with no SDK form (a
    set, bytes, an object) is answered FAILED 2102 naming it, like any wrong value.
    """

    def __init__(self, access_token: Optional[str] = None, *,
                 token_provider: Optional[AccessTokenProvider] = None,
                 device_keys: Optional[DeviceKeys] = None,
                 vault_key_store: Optional[VaultKeyStore] = None,
                 sms_code_reader: Optional[SmsCodeReader] = None):
        tokens = token_provider if token_provider is not None else _StaticToken(access_token)
        sms_codes = _SmsCodes(sms_code_reader) if sms_code_reader is not None else None
        self._sdk = _ffi.PimsSdk(tokens, device_keys, vault_key_store, sms_codes)
        _live.add(self)

    def close(self) -> None:
        """Stops the SDK's threads, waiting briefly for running callbacks; later calls fail
        with 2001. Also done for every live facade when the interpreter exits."""
        self._sdk.shutdown()

    def __enter__(self) -> "Pims":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- callback form ------------------------------------------------------------------

    def _call(self, parameters: Optional[Dict[str, Any]], callback: Callback, start) -> None:
        converted = {}
        for name, value in (parameters or {}).items():
            try:
                converted[name] = _to_value(value)
            except _NotRepresentable:
                # Still exactly one answer, from the SDK's own catalogue.
                self._sdk.refuse_parameter(str(name), _Handler(callback))
                return
        start(converted, _Handler(callback))

    def initialize(self, configuration: Dict[str, Any], callback: Callback) -> None:
        self._call(configuration, callback, self._sdk.initialize)

    def release(self, callback: Callback) -> None:
        self._sdk.release(_Handler(callback))

    def get(self, api: str, parameters: Optional[Dict[str, Any]], callback: Callback) -> None:
        self._call(parameters, callback, lambda p, h: self._sdk.get(api, p, h))

    def set(self, api: str, parameters: Optional[Dict[str, Any]], callback: Callback) -> None:
        self._call(parameters, callback, lambda p, h: self._sdk.set(api, p, h))

    def subscribe(self, api: str, parameters: Optional[Dict[str, Any]], callback: Callback) -> None:
        """One SUCCEEDED or FAILED acknowledgement, then one RESULT message per event."""
        self._call(parameters, callback, lambda p, h: self._sdk.subscribe(api, p, h))

    def unsubscribe(self, api: str, callback: Callback) -> None:
        self._sdk.unsubscribe(api, _Handler(callback))

    # ---- awaitable form -----------------------------------------------------------------

    async def initialize_async(self, configuration: Dict[str, Any]) -> Message:
        return await _awaiting(lambda cb: self.initialize(configuration, cb))

    async def release_async(self) -> Message:
        return await _awaiting(self.release)

    async def get_async(self, api: str, parameters: Optional[Dict[str, Any]] = None) -> Message:
        return await _awaiting(lambda cb: self.get(api, parameters, cb))

    async def set_async(self, api: str, parameters: Optional[Dict[str, Any]] = None) -> Message:
        return await _awaiting(lambda cb: self.set(api, parameters, cb))

    async def unsubscribe_async(self, api: str) -> Message:
        return await _awaiting(lambda cb: self.unsubscribe(api, cb))


async def _awaiting(start: Callable[[Callback], None]) -> Message:
    # The message arrives on an SDK thread; hand it to the caller's event loop.
    loop = asyncio.get_running_loop()
    future: "asyncio.Future[Message]" = loop.create_future()

    def resolve(message: Message) -> None:
        if not future.done():
            future.set_result(message)

    start(lambda message: loop.call_soon_threadsafe(resolve, message))
    return await future
