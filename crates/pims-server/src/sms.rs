//! Sending SMS: the [`SmsSender`] trait, the development file outbox, and the message text
//! with the Android SMS Retriever and iOS domain-bound code lines.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One line of the development outbox.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxMessage {
    pub to: String,
    pub text: String,
    /// Unix seconds.
    pub sent_at: i64,
}

// The text holds a code: keep it out of Debug output.
impl std::fmt::Debug for OutboxMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxMessage")
            .field("to", &mask_number(&self.to))
            .field("sent_at", &self.sent_at)
            .finish_non_exhaustive()
    }
}

/// Every message of the outbox, oldest first. A missing file is an empty outbox.
pub fn read_outbox(path: &Path) -> std::io::Result<Vec<OutboxMessage>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(std::io::Error::other)?);
    }
    Ok(out)
}

/// The code of the iOS `@domain #123456` line, as a phone's autofill reads it.
pub fn code_from_text(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.trim();
        let rest = line.strip_prefix('@')?;
        let (_domain, code) = rest.split_once(" #")?;
        let code = code.trim();
        (!code.is_empty() && code.chars().all(|c| c.is_ascii_digit())).then(|| code.to_string())
    })
}

/// The SMS body: a human line, then the iOS domain-bound line, then the Android app hash.
pub fn message_text(code: &str, domain: &str, app_hash: &str) -> String {
    format!("Your PIMS code is {code}\n\n@{domain} #{code}\n{app_hash}")
}

/// Security notices sent to the trusted number, so that its owner hears of every change that
/// could let someone else act in their name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    DeviceEnrolled,
    PinReset,
    /// Sent to the number that was trusted before the change (see [`number_changed_text`]
    /// for the one to the number trusted before a hold, which carries the restore code).
    PhoneNumberChanged,
    EnrollmentsRemoved,
    /// Sent to the number a restore gave back, and to the one it replaced.
    PhoneNumberRestored,
}

impl Notice {
    pub fn as_str(self) -> &'static str {
        match self {
            Notice::DeviceEnrolled => "device_enrolled",
            Notice::PinReset => "pin_reset",
            Notice::PhoneNumberChanged => "phone_number_changed",
            Notice::EnrollmentsRemoved => "enrollments_removed",
            Notice::PhoneNumberRestored => "phone_number_restored",
        }
    }

    /// The SMS body: no code, nothing to autofill; says what happened and what to do if it was
    /// not the owner.
    pub fn text(self) -> String {
        let what = match self {
            Notice::DeviceEnrolled => "A new device was enrolled as your second factor",
            Notice::PinReset => "Your PIMS PIN was reset with an SMS code",
            Notice::PhoneNumberChanged => "Your PIMS trusted number was changed to another number",
            Notice::EnrollmentsRemoved => "Every device enrolled as your second factor was removed",
            Notice::PhoneNumberRestored => {
                "Your PIMS trusted number was restored to the one of before a recent change, \
                 and every enrolled device was disabled"
            }
        };
        format!("PIMS security notice: {what}. If this was not you, contact support now.")
    }
}

/// The notice to the number trusted before a hold, at each change while the hold runs: what
/// happened, and the code that lets its owner undo it from the app on any phone, without the
/// helpdesk and without the moved number.
pub fn number_changed_text(new_number: &str, restore_code: &str, held_until: i64) -> String {
    // httpdate writes years up to 9999; the configuration bounds holds far below that.
    let secs = held_until.clamp(0, 253_402_300_799) as u64;
    let until = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    format!(
        "PIMS security notice: your trusted number was changed to {}. If this was not you, \
         restore it in the app on any phone with code {restore_code} before {}.",
        mask_number(new_number),
        httpdate::fmt_http_date(until),
    )
}

/// The restore code of a [`number_changed_text`] (what a test or a phone's reader takes).
pub fn restore_code_from_text(text: &str) -> Option<String> {
    let (_, rest) = text.split_once(" with code ")?;
    rest.split_whitespace().next().map(str::to_string)
}

/// `+33612345678` → `+33******78`: enough to recognise a number in a log, not to dial it.
pub fn mask_number(e164: &str) -> String {
    let chars: Vec<char> = e164.chars().collect();
    if chars.len() <= 5 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 5))
}

/// Delivers an SMS. Implementations must not log the text (it holds a code).
#[async_trait::async_trait]
pub trait SmsSender: Send + Sync + 'static {
    async fn send(&self, to: &str, text: &str, now: i64) -> anyhow::Result<()>;
}

/// Development sender: appends one JSON line per message to a file.
pub struct FileOutbox {
    path: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

impl FileOutbox {
    pub fn new(path: PathBuf) -> Self {
        FileOutbox {
            path,
            lock: tokio::sync::Mutex::new(()),
        }
    }
}

#[async_trait::async_trait]
impl SmsSender for FileOutbox {
    async fn send(&self, to: &str, text: &str, now: i64) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(&OutboxMessage {
            to: to.to_string(),
            text: text.to_string(),
            sent_at: now,
        })?;
        line.push('\n');
        let _guard = self.lock.lock().await;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = crate::files::open_append_private(&path)?;
            f.write_all(line.as_bytes())
        })
        .await??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autofill_reads_the_code_of_the_domain_line() {
        let text = message_text("012345", "pims.example", "PIMSAPPHASH");
        assert_eq!(
            text,
            "Your PIMS code is 012345\n\n@pims.example #012345\nPIMSAPPHASH"
        );
        assert_eq!(code_from_text(&text).as_deref(), Some("012345"));
        assert_eq!(code_from_text("no code here"), None);
    }

    #[test]
    fn numbers_are_masked_in_the_middle() {
        assert_eq!(mask_number("+33612345678"), "+33*******78");
        assert_eq!(mask_number("+336"), "****");
    }

    #[tokio::test]
    async fn outbox_round_trips_and_hides_text_from_debug() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.jsonl");
        assert!(read_outbox(&path).unwrap().is_empty());
        let outbox = FileOutbox::new(path.clone());
        outbox.send("+33612345678", "code 123456", 7).await.unwrap();
        outbox.send("+33612345679", "code 654321", 8).await.unwrap();
        let msgs = read_outbox(&path).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].text, "code 654321");
        assert_eq!(msgs[1].sent_at, 8);
        assert!(!format!("{:?}", msgs[0]).contains("123456"));
    }
}
