//! The component's calls: each API, verb and selector of SDK-API.md §2 read into one
//! [`Request`] with its checked parameters (2101 / 2102 naming the parameter).

use std::ops::RangeInclusive;

use pims_core::{Call, ErrorCode, Params, PimsError, Secret, Verb};
use pims_proto::SmsPurpose;
use serde_json::Value;

const PIN_DIGITS: RangeInclusive<usize> = 4..=8;
pub(super) const SMS_DIGITS: RangeInclusive<usize> = 4..=10;

/// One call of the component, its parameters checked.
pub(super) enum Request {
    /// GET `account` `type=isDeviceActivated`.
    IsDeviceActivated,
    /// GET `account` `type=isAccountBlocked`.
    IsAccountBlocked,
    /// GET `trustedphonenumber`.
    TrustedPhoneNumber,
    /// SET `trustedphonenumber` `action=restore` (additive): the owner, from any phone with
    /// their login, gives back the number trusted before a hold, with the restore code the
    /// change notice sent to it (`smsCode`).
    RestorePhoneNumber { restore_code: Secret },
    /// GET `smscode`: `phoneNumberCertification` (to `phone_number`), `enrollment`, `resetPIN`.
    SendSmsCode {
        purpose: SmsPurpose,
        phone_number: Option<PhoneNumber>,
    },
    /// SET `smscode` `enrollment`.
    CheckEnrollmentCode { sms_code: Secret },
    /// SET `smscode` `addPhoneNumber`.
    AddPhoneNumber {
        phone_number: PhoneNumber,
        sms_code: Secret,
    },
    /// SET `smscode` `modifyPhoneNumber`; `pin` is additive: with the current PIN the change
    /// is proven by both factors.
    ModifyPhoneNumber {
        phone_number: PhoneNumber,
        sms_code: Secret,
        pin: Option<Secret>,
    },
    /// SET `enrollment` `enroll` (`phone_number` `None`) and `enrollWithPhoneNumber`. Without
    /// `sms_code`, the enrollment decides whether it needs one (see `enrollment::enroll`).
    Enroll {
        pin: Secret,
        sms_code: Option<Secret>,
        phone_number: Option<PhoneNumber>,
    },
    /// SET `enrollment` `remove`.
    RemoveEnrollments,
    /// SET `pincode` `reset`.
    ResetPin { pin: Secret, sms_code: Secret },
    /// SET `pincode` `update`.
    UpdatePin { old: Secret, new: Secret },
    /// GET `devices`.
    ListDevices,
    /// SET `devices` `remove`.
    RevokeDevice { device_id: String },
    /// GET `otp` `withPIN` / `withoutPIN`; `audience` is additive: the relying party the OTP is
    /// for (its id on the server).
    Otp {
        pin: Option<Secret>,
        audience: Option<String>,
    },
    /// SET `pims.vehicle.vin` `actionType=remote`: the car the next commands are for.
    SelectVin { vin: String },
    /// SET `pims.vehicle.command`; `pinCode` is additive: with it, one call proves the PIN.
    VehicleCommand {
        command: pims_command::Command,
        pin: Option<Secret>,
    },
    /// SET `pims.vehicle.pairing` (additive): pairs this device's key with the selected car
    /// using the one-time code the car shows.
    PairVehicle { pairing_code: Secret },
}

/// What a call is, for the error codes and the events that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operation {
    IsDeviceActivated,
    IsAccountBlocked,
    TrustedPhoneNumber,
    RestorePhoneNumber,
    SendSmsCode,
    CheckEnrollmentCode,
    AddPhoneNumber,
    ModifyPhoneNumber,
    Enroll,
    RemoveEnrollments,
    ResetPin,
    UpdatePin,
    ListDevices,
    RevokeDevice,
    Otp,
    SelectVin,
    VehicleCommand,
    PairVehicle,
    /// The `pims.authentication.enrollment` subscription: its start and its polls.
    Subscribe,
}

impl Request {
    /// Reads `call`; an API or verb the component does not have is 2002.
    pub(super) fn parse(call: &Call, default_region: &str) -> Result<Self, PimsError> {
        let p = &call.params;
        let request = match (call.verb, call.api.as_str()) {
            (Verb::Get, "pims.authentication.account") => {
                p.required_choice("actionType", &["strong"])?;
                match p.required_choice("type", &["isDeviceActivated", "isAccountBlocked"])? {
                    "isDeviceActivated" => Request::IsDeviceActivated,
                    _ => Request::IsAccountBlocked,
                }
            }
            (Verb::Get, "pims.authentication.trustedphonenumber") => Request::TrustedPhoneNumber,
            (Verb::Set, "pims.authentication.trustedphonenumber") => {
                p.required_choice("action", &["restore"])?;
                Request::RestorePhoneNumber {
                    restore_code: restore_code(p)?,
                }
            }
            (Verb::Get, "pims.authentication.smscode") => {
                match p.required_choice(
                    "type",
                    &["phoneNumberCertification", "enrollment", "resetPIN"],
                )? {
                    "phoneNumberCertification" => Request::SendSmsCode {
                        purpose: SmsPurpose::PhoneCertification,
                        phone_number: Some(phone_number(p, default_region)?),
                    },
                    "resetPIN" => Request::SendSmsCode {
                        purpose: SmsPurpose::ResetPin,
                        phone_number: None,
                    },
                    _ => Request::SendSmsCode {
                        purpose: SmsPurpose::Enrollment,
                        phone_number: None,
                    },
                }
            }
            (Verb::Set, "pims.authentication.smscode") => match selector(p)? {
                "enrollment" => Request::CheckEnrollmentCode {
                    sms_code: p.required_digits("smsCode", SMS_DIGITS)?,
                },
                "addPhoneNumber" => {
                    let sms_code = p.required_digits("smsCode", SMS_DIGITS)?;
                    Request::AddPhoneNumber {
                        phone_number: phone_number(p, default_region)?,
                        sms_code,
                    }
                }
                _ => {
                    // modifyPhoneNumber, the last one selector() accepts.
                    let sms_code = p.required_digits("smsCode", SMS_DIGITS)?;
                    let phone_number = phone_number(p, default_region)?;
                    Request::ModifyPhoneNumber {
                        phone_number,
                        sms_code,
                        pin: p.optional_digits("pinCode", PIN_DIGITS)?,
                    }
                }
            },
            (Verb::Set, "pims.authentication.enrollment") => {
                let action = p.required_choice(
                    "action",
                    &[
                        "enroll",
                        "enrollWithPhoneNumber",
                        "enrollmentWithPhoneNumber",
                        "remove",
                    ],
                )?;
                if action == "remove" {
                    return Ok(Request::RemoveEnrollments);
                }
                let pin = p.required_digits("pinCode", PIN_DIGITS)?;
                let sms_code = p.optional_digits("smsCode", SMS_DIGITS)?;
                let phone_number = match action {
                    "enroll" => None,
                    _ => Some(phone_number(p, default_region)?),
                };
                Request::Enroll {
                    pin,
                    sms_code,
                    phone_number,
                }
            }
            (Verb::Set, "pims.authentication.pincode") => {
                match p.required_choice("action", &["reset", "update"])? {
                    "reset" => {
                        let pin = p.required_digits("pinCode", PIN_DIGITS)?;
                        let sms_code = p.required_digits("smsCode", SMS_DIGITS)?;
                        Request::ResetPin { pin, sms_code }
                    }
                    _ => {
                        let old = p.required_digits("oldPIN", PIN_DIGITS)?;
                        let new = p.required_digits("newPIN", PIN_DIGITS)?;
                        Request::UpdatePin { old, new }
                    }
                }
            }
            (Verb::Get, "pims.authentication.devices") => Request::ListDevices,
            (Verb::Set, "pims.authentication.devices") => {
                p.required_choice("action", &["remove"])?;
                let device_id = p.required_str("deviceId")?.trim();
                if device_id.is_empty() || device_id.len() > 128 {
                    return Err(PimsError::invalid("deviceId"));
                }
                Request::RevokeDevice {
                    device_id: device_id.to_owned(),
                }
            }
            (Verb::Get, "pims.authentication.otp") => {
                let pin = match p.required_choice("action", &["withPIN", "withoutPIN"])? {
                    "withPIN" => Some(p.required_digits("pinCode", PIN_DIGITS)?),
                    _ => None,
                };
                let audience = match p.optional_str("audience")?.map(str::trim) {
                    Some("") | None => None,
                    Some(a) if a.len() > 128 => return Err(PimsError::invalid("audience")),
                    Some(a) => Some(a.to_owned()),
                };
                Request::Otp { pin, audience }
            }
            (Verb::Set, "pims.vehicle.vin") => {
                p.required_choice("actionType", &["remote"])?;
                let vin = p.required_str("vin")?.trim();
                if !pims_command::vin_ok(vin) {
                    return Err(PimsError::invalid("vin"));
                }
                Request::SelectVin {
                    vin: vin.to_owned(),
                }
            }
            (Verb::Set, "pims.vehicle.command") => Request::VehicleCommand {
                command: vehicle_command(p)?,
                pin: p.optional_digits("pinCode", PIN_DIGITS)?,
            },
            (Verb::Set, "pims.vehicle.pairing") => {
                let code = p.required_str("pairingCode")?;
                let clean: String = code.chars().filter(char::is_ascii_alphanumeric).collect();
                if clean.len() != 12 {
                    return Err(PimsError::invalid("pairingCode"));
                }
                Request::PairVehicle {
                    pairing_code: Secret::new(clean),
                }
            }
            _ => return Err(ErrorCode::ApiNotSupported.into()),
        };
        Ok(request)
    }

    pub(super) fn operation(&self) -> Operation {
        match self {
            Request::IsDeviceActivated => Operation::IsDeviceActivated,
            Request::IsAccountBlocked => Operation::IsAccountBlocked,
            Request::TrustedPhoneNumber => Operation::TrustedPhoneNumber,
            Request::RestorePhoneNumber { .. } => Operation::RestorePhoneNumber,
            Request::SendSmsCode { .. } => Operation::SendSmsCode,
            Request::CheckEnrollmentCode { .. } => Operation::CheckEnrollmentCode,
            Request::AddPhoneNumber { .. } => Operation::AddPhoneNumber,
            Request::ModifyPhoneNumber { .. } => Operation::ModifyPhoneNumber,
            Request::Enroll { .. } => Operation::Enroll,
            Request::RemoveEnrollments => Operation::RemoveEnrollments,
            Request::ResetPin { .. } => Operation::ResetPin,
            Request::UpdatePin { .. } => Operation::UpdatePin,
            Request::ListDevices => Operation::ListDevices,
            Request::RevokeDevice { .. } => Operation::RevokeDevice,
            Request::Otp { .. } => Operation::Otp,
            Request::SelectVin { .. } => Operation::SelectVin,
            Request::VehicleCommand { .. } => Operation::VehicleCommand,
            Request::PairVehicle { .. } => Operation::PairVehicle,
        }
    }
}

/// The reference's `pims.vehicle.command` actions and their parameters, as the one command
/// the device signs.
fn vehicle_command(p: &Params) -> Result<pims_command::Command, PimsError> {
    use pims_command::Command;
    let flag = |name: &str| match p.get(name) {
        None => Err(PimsError::missing(name)),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(PimsError::invalid(name)),
    };
    let action = p.required_choice(
        "action",
        &[
            "charge",
            "chargeDeferredTime",
            "doors",
            "horn",
            "preconditioning",
            "warning",
        ],
    )?;
    Ok(match action {
        "charge" => Command::Charge {
            start_now: flag("startNow")?,
        },
        "chargeDeferredTime" => {
            let start_now = flag("startNow")?;
            let (hour, minute) = deferred_time(p.required_str("deferredTime")?)
                .ok_or_else(|| PimsError::invalid("deferredTime"))?;
            Command::ChargeDeferredTime {
                start_now,
                hour,
                minute,
                check_start_charge: flag("checkStartCharge")?,
            }
        }
        "doors" => match p.required_choice("doorState", &["lock", "unlock"])? {
            "lock" => Command::LockDoors,
            _ => Command::UnlockDoors,
        },
        "horn" => Command::Horn,
        "warning" => Command::Warning,
        _ => Command::Preconditioning {
            start_now: flag("startNow")?,
            programs: programs(p.get("programs"))?,
        },
    })
}

/// `PTxxHxxM` (ISO 8601 duration as the reference writes it), hours 0–23, minutes 0–59.
fn deferred_time(text: &str) -> Option<(u8, u8)> {
    let rest = text.trim().strip_prefix("PT")?;
    let (hours, rest) = rest.split_once('H').unwrap_or(("0", rest));
    let minutes = rest
        .strip_suffix('M')
        .unwrap_or(if rest.is_empty() { "0" } else { "x" });
    let (h, m) = (hours.parse::<u8>().ok()?, minutes.parse::<u8>().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

/// `programs`: up to 4 of `{hour, minute, isEnabled, occurrence, slot}`, slots 1–4 each once.
fn programs(value: Option<&Value>) -> Result<Vec<pims_command::Program>, PimsError> {
    let invalid = || PimsError::invalid("programs");
    let list = match value {
        None => return Err(PimsError::missing("programs")),
        Some(Value::Array(list)) if list.len() <= pims_command::MAX_PROGRAMS => list,
        Some(_) => return Err(invalid()),
    };
    let int = |v: &Value, name: &str, max: u64| {
        v.get(name)
            .and_then(Value::as_u64)
            .filter(|n| *n <= max)
            .map(|n| n as u8)
            .ok_or_else(invalid)
    };
    let mut programs = Vec::new();
    for v in list {
        let mut days = 0u8;
        for day in v
            .get("occurrence")
            .and_then(Value::as_array)
            .ok_or_else(invalid)?
        {
            let day = day
                .as_str()
                .map(str::to_ascii_lowercase)
                .ok_or_else(invalid)?;
            let i = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                .iter()
                .position(|d| *d == day)
                .ok_or_else(invalid)?;
            days |= 1 << i;
        }
        programs.push(pims_command::Program {
            slot: int(v, "slot", 4).and_then(|s| if s == 0 { Err(invalid()) } else { Ok(s) })?,
            hour: int(v, "hour", 23)?,
            minute: int(v, "minute", 59)?,
            enabled: v
                .get("isEnabled")
                .and_then(Value::as_bool)
                .ok_or_else(invalid)?,
            days,
        });
    }
    // One encoding per command: in slot order, each slot once.
    programs.sort_by_key(|p| p.slot);
    if programs.windows(2).any(|w| w[0].slot == w[1].slot) {
        return Err(invalid());
    }
    Ok(programs)
}

/// A phone number as the app typed it: international (`+…`), or national, which the server
/// reads in the configured `defaultRegion` with its numbering plan (the SDK library stays small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PhoneNumber {
    pub number: String,
    pub region: Option<String>,
}

/// `phoneNumber` as digits with an optional leading `+` (spaces, dots, dashes and brackets
/// ignored), or an integer (international digits: leading zeros cannot survive an integer).
/// The server validates it fully and answers E.164.
fn phone_number(params: &Params, default_region: &str) -> Result<PhoneNumber, PimsError> {
    const NAME: &str = "phoneNumber";
    let raw = match params.get(NAME) {
        None => return Err(PimsError::missing(NAME)),
        Some(Value::Number(n)) if n.is_u64() => format!("+{n}"),
        Some(Value::String(s)) if s.trim().is_empty() => return Err(PimsError::missing(NAME)),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(PimsError::invalid(NAME)),
    };
    let compact: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')'))
        .collect();
    let (digits, region) = match compact.strip_prefix('+') {
        Some(digits) => (digits, None),
        None => (compact.as_str(), Some(default_region.to_owned())),
    };
    // E.164 has at most 15 digits; a national form may add an international prefix (`00`).
    if !(4..=18).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PimsError::invalid(NAME));
    }
    let number = match region {
        None => format!("+{digits}"),
        Some(_) => digits.to_owned(),
    };
    Ok(PhoneNumber { number, region })
}

/// The restore code of a change notice (`smsCode`): 12 letters and digits, as people type them
/// (any case, with the notice's dashes or spaces); the server reads it.
fn restore_code(params: &Params) -> Result<Secret, PimsError> {
    const NAME: &str = "smsCode";
    let typed = params.required_str(NAME)?.trim();
    let significant = typed.chars().filter(|c| !matches!(c, '-' | ' ')).count();
    if significant != 12
        || !typed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ' ')
    {
        return Err(PimsError::invalid(NAME));
    }
    Ok(Secret::new(typed.to_owned()))
}

/// The selector of SET `smscode`: `type` (SDK-API.md), or the reference's `action` as its
/// alias. With neither, the reference's own selector for the API is missing: `action`;
/// invalid, the errors name the parameter the app gave.
fn selector(params: &Params) -> Result<&str, PimsError> {
    const SELECTORS: [&str; 3] = ["enrollment", "addPhoneNumber", "modifyPhoneNumber"];
    let (name, chosen) = match params.optional_str("type")? {
        Some(kind) => ("type", kind),
        None => match params.optional_str("action")? {
            Some(action) => ("action", action),
            None => return Err(PimsError::missing("action")),
        },
    };
    if SELECTORS.contains(&chosen) {
        Ok(chosen)
    } else {
        Err(PimsError::invalid(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_restore_code_is_read_as_people_type_it() {
        let parse = |v: Value| {
            let call = Call {
                verb: Verb::Set,
                api: "pims.authentication.trustedphonenumber".into(),
                params: Params::from_value(json!({ "action": "restore", "smsCode": v })).unwrap(),
                transaction_id: "t".into(),
            };
            match Request::parse(&call, "FR") {
                Ok(Request::RestorePhoneNumber { restore_code }) => {
                    Ok(restore_code.expose().to_owned())
                }
                Ok(_) => panic!("another request"),
                Err(e) => Err(e.label),
            }
        };
        assert_eq!(parse(json!("7k4q-9xmd-2pwa")), Ok("7k4q-9xmd-2pwa".into()));
        assert_eq!(
            parse(json!(" 7K4Q 9XMD 2PWA ")),
            Ok("7K4Q 9XMD 2PWA".into())
        );
        for bad in [json!("7K4Q-9XMD"), json!("7K4Q-9XMD-2PW!"), json!(123456)] {
            assert_eq!(parse(bad), Err("Invalid smsCode parameter".into()));
        }
        assert_eq!(parse(json!("")), Err("Missing smsCode parameter".into()));
    }

    #[test]
    fn a_set_smscode_without_a_selector_misses_its_action() {
        let p = Params::from_value(json!({ "smsCode": "123456" })).unwrap();
        assert_eq!(selector(&p).unwrap_err().label, "Missing action parameter");
    }

    #[test]
    fn phone_numbers_are_normalised_or_rejected() {
        let p = |v: Value| Params::from_value(json!({ "phoneNumber": v })).unwrap();
        let parse = |v: Value| phone_number(&p(v), "FR");
        let international = |n: &str| PhoneNumber {
            number: n.into(),
            region: None,
        };
        assert_eq!(
            parse(json!("+33 6 12-34.56 78")).unwrap(),
            international("+33612345678")
        );
        assert_eq!(
            parse(json!(33612345678u64)).unwrap(),
            international("+33612345678")
        );
        for national in ["0612345678", "06 12 34 56 78", "06.12.34.56.78"] {
            assert_eq!(
                parse(json!(national)).unwrap(),
                PhoneNumber {
                    number: "0612345678".into(),
                    region: Some("FR".into())
                }
            );
        }
        assert_eq!(
            parse(json!("+33 abc")).unwrap_err().label,
            "Invalid phoneNumber parameter"
        );
        assert_eq!(
            parse(json!(" ")).unwrap_err().label,
            "Missing phoneNumber parameter"
        );
    }
}
