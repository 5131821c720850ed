//! Google's attestation certificate status list, read offline from bytes the caller gives.
//!
//! The format is the one Google publishes for Key Attestation:
//!
//! ```json
//! { "entries": { "2c8cdddfd5e03bfc": { "status": "REVOKED", "reason": "KEY_COMPROMISE" },
//!                "c8966fcb2fbb0d7a": { "status": "SUSPENDED", "reason": "SOFTWARE_FLAW" } } }
//! ```
//!
//! Keys are certificate serial numbers in lowercase hexadecimal without leading zeros.
//! `REVOKED` and `SUSPENDED` both refuse a chain (Google's own verifier refuses `REVOKED` only;
//! a suspended key is not to be trusted while it is suspended, and an enrollment happens once).

use std::collections::HashMap;

use serde::Deserialize;

/// The status of one listed serial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationEntry {
    /// `REVOKED` or `SUSPENDED` (other statuses are kept but do not refuse).
    pub status: String,
    /// Google's reason, e.g. `KEY_COMPROMISE`, when given.
    pub reason: Option<String>,
}

impl RevocationEntry {
    /// Whether this entry makes a certificate untrusted.
    pub fn refuses(&self) -> bool {
        self.status.eq_ignore_ascii_case("REVOKED") || self.status.eq_ignore_ascii_case("SUSPENDED")
    }
}

/// A parsed status list. [`RevocationList::empty`] stands for "no list": the caller decides
/// whether a missing list is acceptable (this crate does no I/O).
#[derive(Clone, Debug, Default)]
pub struct RevocationList {
    entries: HashMap<String, RevocationEntry>,
}

#[derive(Deserialize)]
struct StatusFile {
    entries: HashMap<String, StatusEntry>,
}

#[derive(Deserialize)]
struct StatusEntry {
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

impl RevocationList {
    /// A list naming nothing.
    pub fn empty() -> RevocationList {
        RevocationList::default()
    }

    /// Parses Google's JSON status list. Anything that is not that format is an error, never an
    /// empty list (fail closed).
    pub fn from_json(bytes: &[u8]) -> Result<RevocationList, String> {
        let file: StatusFile =
            serde_json::from_slice(bytes).map_err(|e| format!("revocation list: {e}"))?;
        let entries = file
            .entries
            .into_iter()
            .map(|(serial, entry)| {
                (
                    normalise_serial(&serial),
                    RevocationEntry {
                        status: entry.status,
                        reason: entry.reason,
                    },
                )
            })
            .collect();
        Ok(RevocationList { entries })
    }

    /// How many serials the list names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for a serial (hexadecimal, any case, leading zeros ignored).
    pub fn lookup(&self, serial_hex: &str) -> Option<&RevocationEntry> {
        self.entries.get(&normalise_serial(serial_hex))
    }
}

fn normalise_serial(serial: &str) -> String {
    let lower = serial.trim().to_ascii_lowercase();
    let trimmed = lower.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}
