use pims_proto::{ApiError, EnrollmentStatus, SmsCodeChecked, SmsCodeSent, SmsPurpose};

use super::{crypto, phone, Service};
use crate::error::Result;
use crate::sms::{mask_number, message_text};
use crate::store::{CodeCheck, CodeTarget, SmsSendRequest};

impl Service {
    /// `POST /v1/sms-codes`: sends a new code, or the live one again.
    pub async fn send_sms_code(
        &self,
        account: &str,
        purpose: SmsPurpose,
        phone_number: Option<&str>,
        region: Option<&str>,
        client_address: Option<std::net::IpAddr>,
    ) -> Result<SmsCodeSent> {
        let target = match purpose {
            SmsPurpose::Enrollment | SmsPurpose::ResetPin => CodeTarget::TrustedNumber,
            SmsPurpose::PhoneCertification => {
                let number = phone_number.ok_or(ApiError::InvalidParameter {
                    name: "phoneNumber".into(),
                })?;
                CodeTarget::Number(phone::parse_e164(number, region)?)
            }
        };
        let now = self.now();
        if purpose == SmsPurpose::ResetPin {
            // No code is sent for a reset that would be refused (the step checks again).
            let record = self.store.account(account).await?.unwrap_or_default();
            record.check_recovery_allowed(now)?;
        }
        let to_send = self
            .store
            .prepare_sms_code(SmsSendRequest {
                account: account.to_string(),
                purpose,
                target,
                now,
                ttl: self.limits.sms_code_ttl_seconds,
                max_checks: self.limits.sms_code_max_checks,
                per_account_per_hour: self.limits.sms_sends_per_hour_per_account,
                per_number_per_hour: self.limits.sms_sends_per_hour_per_number,
                client_address: client_address.map(crate::net::client_key),
                per_address_per_hour: self.limits.sms_sends_per_hour_per_address,
                new_nonce: crypto::random_bytes(16),
            })
            .await?;
        let code = crypto::sms_code(
            &self.keys.sms_code,
            account,
            purpose,
            &to_send.phone_number,
            &to_send.nonce,
            self.limits.sms_code_digits,
        );
        let text = message_text(&code, &self.sms_domain, &self.sms_app_hash);
        self.sms.send(&to_send.phone_number, &text, now).await?;
        self.metrics.sms_sent.inc();
        tracing::info!(
            purpose = purpose.as_str(),
            to = %mask_number(&to_send.phone_number),
            resend = to_send.resend,
            "SMS code sent"
        );
        Ok(SmsCodeSent {
            expires_in_seconds: (to_send.expires_at - now).max(0) as u64,
        })
    }

    /// `POST /v1/sms-codes/check`: counts a check; the code stays usable.
    pub async fn check_sms_code(
        &self,
        account: &str,
        purpose: SmsPurpose,
        sms_code: &str,
    ) -> Result<SmsCodeChecked> {
        let target = match purpose {
            SmsPurpose::Enrollment | SmsPurpose::ResetPin => CodeTarget::TrustedNumber,
            SmsPurpose::PhoneCertification => CodeTarget::Latest,
        };
        let has_pin = self
            .store
            .check_sms_code(CodeCheck {
                account: account.to_string(),
                purpose,
                target,
                matcher: self.code_matcher(account, purpose, sms_code),
                now: self.now(),
                max_checks: self.limits.sms_code_max_checks,
            })
            .await?;
        Ok(SmsCodeChecked {
            enrollment_status: if has_pin {
                EnrollmentStatus::AlreadyEnrolled
            } else {
                EnrollmentStatus::NotEnrolled
            },
        })
    }
}
