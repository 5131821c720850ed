//! Phone numbers: only valid international mobile numbers, kept in E.164.

use phonenumber::{Mode, Type};
use pims_proto::{ApiError, NumberRefusal};

/// The E.164 form of `input`, which must be a mobile number of a country, written
/// internationally (leading `+`) or, given the ISO 3166-1 alpha-2 `region` it is dialled from,
/// as people type it there (`0612345678`, `0033612345678` in `FR`).
///
/// Codes go only to numbers that can receive an SMS and cost nothing to send to: an attacker
/// who registers premium-rate, shared-cost or satellite numbers (+870 Inmarsat, +881 and
/// +882/+883 international networks) would otherwise be paid for every code the server sends
/// them (SMS pumping). So the type must be Mobile or FixedLineOrMobile (countries, like the
/// US, whose mobile and fixed ranges are not told apart), and the number must belong to a
/// country: non-geographic codes (+8xx, +979) have no region.
pub fn parse_e164(input: &str, region: Option<&str>) -> Result<String, ApiError> {
    let invalid = || ApiError::InvalidParameter {
        name: "phoneNumber".into(),
    };
    let input = input.trim();
    if input.len() > 32 {
        return Err(invalid());
    }
    let region = match region {
        _ if input.starts_with('+') => None,
        Some(r) => Some(
            r.parse::<phonenumber::country::Id>()
                .map_err(|_| invalid())?,
        ),
        None => return Err(invalid()),
    };
    let number = phonenumber::parse(region, input).map_err(|_| invalid())?;
    if !number.is_valid() {
        return Err(invalid());
    }
    // A valid number that cannot receive our SMS: the app is told why (`notMobile`).
    let not_mobile = || ApiError::PhoneNumberRefused {
        reason: NumberRefusal::NotMobile,
    };
    if number.country().id().is_none() {
        return Err(not_mobile());
    }
    match number.number_type(&phonenumber::metadata::DATABASE) {
        Type::Mobile | Type::FixedLineOrMobile => {}
        _ => return Err(not_mobile()),
    }
    Ok(number.format().mode(Mode::E164).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_international_numbers_and_normalises_them() {
        assert_eq!(
            parse_e164("+33 6 12 34 56 78", None).unwrap(),
            "+33612345678"
        );
        assert_eq!(parse_e164("+14155552671", None).unwrap(), "+14155552671");
        assert_eq!(parse_e164("+447400123456", None).unwrap(), "+447400123456");
        assert_eq!(
            parse_e164("+4915123456789", None).unwrap(),
            "+4915123456789"
        );
    }

    #[test]
    fn national_forms_are_read_in_the_given_region() {
        for typed in [
            "0612345678",
            "06 12 34 56 78",
            "06.12.34.56.78",
            "0033612345678",
            "+33612345678",
        ] {
            assert_eq!(
                parse_e164(typed, Some("FR")).unwrap(),
                "+33612345678",
                "{typed}"
            );
        }
        assert_eq!(
            parse_e164("07400 123456", Some("GB")).unwrap(),
            "+447400123456"
        );
        for bad in ["061234567", "0612345678", "12"] {
            let region = if bad == "0612345678" { "ZZ" } else { "FR" };
            assert!(parse_e164(bad, Some(region)).is_err(), "{bad} in {region}");
        }
    }

    #[test]
    fn rejects_national_and_invalid_numbers() {
        for bad in ["0612345678", "+33", "+999123", "hello", ""] {
            assert_eq!(
                parse_e164(bad, None),
                Err(ApiError::InvalidParameter {
                    name: "phoneNumber".into()
                }),
                "{bad}"
            );
        }
        // The tutorial's fixed line, read in France.
        assert_eq!(
            parse_e164("0123456789", Some("FR")),
            Err(ApiError::PhoneNumberRefused {
                reason: NumberRefusal::NotMobile
            })
        );
    }

    #[test]
    fn valid_numbers_that_cannot_receive_sms_are_not_mobile() {
        for bad in [
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
                parse_e164(bad, None),
                Err(ApiError::PhoneNumberRefused {
                    reason: NumberRefusal::NotMobile
                }),
                "{bad}"
            );
        }
    }
}
