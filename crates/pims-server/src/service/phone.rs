//! Phone numbers: only valid international mobile numbers, kept in E.164.

use phonenumber::{Mode, Type};
use pims_proto::ApiError;

/// The E.164 form of `input`, which must be written internationally (leading `+`) and be a
/// mobile number of a country.
///
/// Codes go only to numbers that can receive an SMS and cost nothing to send to: an attacker
/// who registers premium-rate, shared-cost or satellite numbers (+870 Inmarsat, +881 and
/// +882/+883 international networks) would otherwise be paid for every code the server sends
/// them (SMS pumping). So the type must be Mobile or FixedLineOrMobile (countries, like the
/// US, whose mobile and fixed ranges are not told apart), and the number must belong to a
/// country: non-geographic codes (+8xx, +979) have no region.
pub fn parse_e164(input: &str) -> Result<String, ApiError> {
    let invalid = || ApiError::InvalidParameter {
        name: "phoneNumber".into(),
    };
    let input = input.trim();
    if !input.starts_with('+') || input.len() > 32 {
        return Err(invalid());
    }
    let number = phonenumber::parse(None, input).map_err(|_| invalid())?;
    if !number.is_valid() || number.country().id().is_none() {
        return Err(invalid());
    }
    match number.number_type(&phonenumber::metadata::DATABASE) {
        Type::Mobile | Type::FixedLineOrMobile => {}
        _ => return Err(invalid()),
    }
    Ok(number.format().mode(Mode::E164).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_international_numbers_and_normalises_them() {
        assert_eq!(parse_e164("+33 6 12 34 56 78").unwrap(), "+33612345678");
        assert_eq!(parse_e164("+14155552671").unwrap(), "+14155552671");
        assert_eq!(parse_e164("+447400123456").unwrap(), "+447400123456");
        assert_eq!(parse_e164("+4915123456789").unwrap(), "+4915123456789");
    }

    #[test]
    fn rejects_national_and_invalid_numbers() {
        for bad in [
            "0612345678",
            "+33",
            "+999123",
            "hello",
            "",
            "+33891123456",  // French premium rate
            "+33884012345",  // French shared cost
            "+33123456789",  // French fixed line: no SMS
            "+33800123456",  // French toll free
            "+870301234567", // Inmarsat, typed "mobile" by libphonenumber
            "+881612345678", // Global Mobile Satellite System, "mobile" too
            "+8823421234",   // International Networks
            "+883510012345", // International Networks (VoIP)
            "+979123456789", // International premium rate
            "+80012345678",  // International freephone
        ] {
            assert_eq!(
                parse_e164(bad),
                Err(ApiError::InvalidParameter {
                    name: "phoneNumber".into()
                }),
                "{bad}"
            );
        }
    }
}
