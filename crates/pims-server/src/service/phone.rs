//! Phone numbers: only valid international numbers, kept in E.164.

use phonenumber::Mode;
use pims_proto::ApiError;

/// The E.164 form of `input`, which must be written internationally (leading `+`).
pub fn parse_e164(input: &str) -> Result<String, ApiError> {
    let invalid = || ApiError::InvalidParameter {
        name: "phoneNumber".into(),
    };
    let input = input.trim();
    if !input.starts_with('+') || input.len() > 32 {
        return Err(invalid());
    }
    let number = phonenumber::parse(None, input).map_err(|_| invalid())?;
    if !number.is_valid() {
        return Err(invalid());
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
    }

    #[test]
    fn rejects_national_and_invalid_numbers() {
        for bad in ["0612345678", "+33", "+999123", "hello", ""] {
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
