//! The tamper-evident audit trail. Every audit row carries `prev_id` (the previous row of the
//! same account) and `mac = HMAC(audit key, prev mac ‖ canonical encoding of the row)`, with the
//! key derived from the key file: a database writer without the key file can neither forge,
//! alter, reorder nor delete a row in the middle of a chain without [`verify`] naming the row.
//!
//! Chains are per account (the `account` column; rows of an empty or unknown account form the
//! chain of that name): every store step already serialises an account's writes, so appending
//! costs no lock shared between accounts, and PostgreSQL replicas stay exact. Deleting the
//! newest rows of a chain leaves no broken link; [`Head`] closes that gap: it MACs the last row
//! of every chain up to an id, so a head recorded outside the database detects any later
//! deletion or change of a row up to that id.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::ControlFlow;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::Result;
use crate::store::{AuditEvent, ChainedAuditRow, Store};

/// HMAC key of the audit chain (derived from the key file, never stored).
#[derive(Clone)]
pub struct AuditKey([u8; 32]);

impl AuditKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        AuditKey(bytes)
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length")
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

/// The fields of one audit row that its MAC covers.
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    pub id: i64,
    pub prev_id: Option<i64>,
    pub at: i64,
    pub account: &'a str,
    pub event: &'a str,
    pub device_id: Option<&'a str>,
    pub detail: Option<&'a str>,
}

/// The MAC of a row: the one rule of the chain, used by both stores and by [`verify`].
/// Every field is length-prefixed or fixed-size, and options carry a presence byte, so no two
/// different rows encode alike.
pub fn link_mac(key: &AuditKey, prev_mac: Option<&[u8]>, link: &Link<'_>) -> [u8; 32] {
    let mut m = key.mac();
    m.update(b"pims-audit/v1");
    let bytes = |m: &mut Hmac<Sha256>, b: Option<&[u8]>| match b {
        None => m.update(&[0]),
        Some(b) => {
            m.update(&[1]);
            m.update(&(b.len() as u64).to_be_bytes());
            m.update(b);
        }
    };
    bytes(&mut m, prev_mac);
    m.update(&link.id.to_be_bytes());
    bytes(
        &mut m,
        link.prev_id.map(i64::to_be_bytes).as_ref().map(|b| &b[..]),
    );
    m.update(&link.at.to_be_bytes());
    bytes(&mut m, Some(link.account.as_bytes()));
    bytes(&mut m, Some(link.event.as_bytes()));
    bytes(&mut m, link.device_id.map(str::as_bytes));
    bytes(&mut m, link.detail.map(str::as_bytes));
    m.finalize().into_bytes().into()
}

/// A point of the trail recorded outside the database: the last id, and a MAC over the last
/// row of every chain up to that id. Written and read as `id=N mac=HEX` or `N:HEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub id: i64,
    pub mac: [u8; 32],
}

impl Head {
    pub fn mac_hex(&self) -> String {
        self.mac.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "id={} mac={}", self.id, self.mac_hex())
    }
}

impl FromStr for Head {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Head> {
        let s = s.trim();
        let (id, mac) = match s.split_once(':') {
            Some(parts) => parts,
            None => s
                .strip_prefix("id=")
                .and_then(|rest| rest.split_once(" mac="))
                .ok_or_else(|| anyhow::anyhow!("a head is `id=N mac=HEX` or `N:HEX`"))?,
        };
        let id = id
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("head id is not a number"))?;
        let mac = mac.trim();
        anyhow::ensure!(
            mac.len() == 64 && mac.is_ascii(),
            "head mac must be 64 hex digits"
        );
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&mac[2 * i..2 * i + 2], 16)
                .map_err(|_| anyhow::anyhow!("head mac must be 64 hex digits"))?;
        }
        Ok(Head { id, mac: out })
    }
}

/// The last row of every chain seen so far, in account order.
#[derive(Default)]
pub struct Chains {
    tails: BTreeMap<String, (i64, [u8; 32])>,
}

impl Chains {
    /// The previous row a new row of `account` links to.
    pub fn tail(&self, account: &str) -> Option<(i64, &[u8; 32])> {
        self.tails.get(account).map(|(id, mac)| (*id, mac))
    }

    /// Appends `row` to its account's chain and returns its `prev_id` and MAC (used to chain
    /// rows written before the chain existed, in id order).
    pub fn append(&mut self, key: &AuditKey, row: &AuditEvent) -> (Option<i64>, [u8; 32]) {
        let prev = self.tail(&row.account);
        let link = Link {
            id: row.id,
            prev_id: prev.map(|(id, _)| id),
            at: row.at,
            account: &row.account,
            event: &row.event,
            device_id: row.device_id.as_deref(),
            detail: row.detail.as_deref(),
        };
        let mac = link_mac(key, prev.map(|(_, m)| &m[..]), &link);
        self.tails.insert(row.account.clone(), (row.id, mac));
        (link.prev_id, mac)
    }

    fn head(&self, key: &AuditKey, id: i64) -> Head {
        let mut m = key.mac();
        m.update(b"pims-audit-head/v1");
        for (account, (last, mac)) in &self.tails {
            m.update(&(account.len() as u64).to_be_bytes());
            m.update(account.as_bytes());
            m.update(&last.to_be_bytes());
            m.update(mac);
        }
        m.update(&id.to_be_bytes());
        Head {
            id,
            mac: m.finalize().into_bytes().into(),
        }
    }
}

/// Why a row breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// The row has no MAC: written by someone without the key.
    Unchained,
    /// The fields or the MAC were changed, or the row was forged.
    MacMismatch,
    /// The row links to a row that is not in the trail before it (deleted).
    MissingPrevious { prev_id: Option<i64> },
    /// The row links to a row other than the previous one of its account.
    Reordered {
        prev_id: Option<i64>,
        expected: Option<i64>,
    },
}

fn id_or_none(id: &Option<i64>) -> String {
    id.map_or_else(|| "none".to_string(), |id| id.to_string())
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Break::Unchained => f.write_str("no MAC (written without the audit key)"),
            Break::MacMismatch => f.write_str("MAC mismatch (row altered or forged)"),
            Break::MissingPrevious { prev_id } => write!(
                f,
                "missing previous row id={} (deleted)",
                id_or_none(prev_id)
            ),
            Break::Reordered { prev_id, expected } => write!(
                f,
                "reordered: links to row id={} but the previous row of its account is id={}",
                id_or_none(prev_id),
                id_or_none(expected)
            ),
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every row links; `head` is the trail's current head.
    Verified { rows: u64, head: Head },
    /// The first row, in id order, whose link is broken.
    Broken { id: i64, why: Break },
    /// Every link holds, but rows up to the expected head were deleted or changed since it was
    /// recorded (the newest rows of a chain can be removed without breaking a link).
    HeadMismatch { expected: Head, found: Head },
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verification::Verified { rows, head } => {
                write!(f, "{rows} rows verified, head {head}")
            }
            Verification::Broken { id, why } => {
                write!(f, "audit trail broken at row id={id}: {why}")
            }
            Verification::HeadMismatch { expected, found } => write!(
                f,
                "audit trail does not contain the expected head {expected} (found mac={}): \
                 rows up to id={} were deleted or changed",
                found.mac_hex(),
                expected.id
            ),
        }
    }
}

/// Checks one row against the chains seen so far, then appends it.
fn check_row(key: &AuditKey, chains: &mut Chains, row: &ChainedAuditRow) -> Option<Break> {
    let e = &row.event;
    let expected = chains.tail(&e.account).map(|(id, _)| id);
    let Some(mac) = row.mac.as_deref() else {
        return Some(Break::Unchained);
    };
    if row.prev_id != expected {
        return Some(match (row.prev_id, expected) {
            (Some(p), _) if p >= e.id => Break::Reordered {
                prev_id: row.prev_id,
                expected,
            },
            (Some(p), None) => Break::MissingPrevious { prev_id: Some(p) },
            (Some(p), Some(x)) if p > x => Break::MissingPrevious { prev_id: Some(p) },
            _ => Break::Reordered {
                prev_id: row.prev_id,
                expected,
            },
        });
    }
    let prev_mac = chains.tail(&e.account).map(|(_, m)| *m);
    let link = Link {
        id: e.id,
        prev_id: row.prev_id,
        at: e.at,
        account: &e.account,
        event: &e.event,
        device_id: e.device_id.as_deref(),
        detail: e.detail.as_deref(),
    };
    let computed = link_mac(key, prev_mac.as_ref().map(|m| &m[..]), &link);
    // Constant time is not needed against an offline verifier, but costs nothing.
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&computed[..], mac)) {
        return Some(Break::MacMismatch);
    }
    chains.tails.insert(e.account.clone(), (e.id, computed));
    None
}

/// Walks the whole trail in id order, in one snapshot of the database (see
/// [`Store::audit_walk`]), and reports the first broken link, or the head; with `expected`,
/// also checks that the trail still holds that head.
pub async fn verify(
    store: &dyn Store,
    key: &AuditKey,
    expected: Option<&Head>,
) -> Result<Verification> {
    const PAGE: u32 = 1000;
    let mut verifier = Verifier::new(key, expected);
    store
        .audit_walk(PAGE, &mut |row| verifier.check(row))
        .await?;
    Ok(verifier.finish())
}

/// [`verify`] a row at a time: every row of the trail goes to [`Verifier::check`] in id order,
/// then [`Verifier::finish`] tells what was found.
pub struct Verifier<'a> {
    key: &'a AuditKey,
    expected: Option<&'a Head>,
    chains: Chains,
    rows: u64,
    last_id: i64,
    /// The head at `expected`'s id, taken when the first row after it comes.
    at_expected: Option<Head>,
    broken: Option<(i64, Break)>,
}

impl<'a> Verifier<'a> {
    pub fn new(key: &'a AuditKey, expected: Option<&'a Head>) -> Self {
        Verifier {
            key,
            expected,
            chains: Chains::default(),
            rows: 0,
            last_id: 0,
            at_expected: None,
            broken: None,
        }
    }

    /// Checks the next row; breaks at the first broken link, as later rows change nothing.
    pub fn check(&mut self, row: &ChainedAuditRow) -> ControlFlow<()> {
        if self.broken.is_some() {
            return ControlFlow::Break(());
        }
        if let Some(x) = self.expected {
            if self.at_expected.is_none() && row.event.id > x.id {
                self.at_expected = Some(self.chains.head(self.key, x.id));
            }
        }
        if let Some(why) = check_row(self.key, &mut self.chains, row) {
            self.broken = Some((row.event.id, why));
            return ControlFlow::Break(());
        }
        self.rows += 1;
        self.last_id = row.event.id;
        ControlFlow::Continue(())
    }

    /// What the rows checked so far show.
    pub fn finish(self) -> Verification {
        if let Some((id, why)) = self.broken {
            return Verification::Broken { id, why };
        }
        if let Some(x) = self.expected {
            let found = self
                .at_expected
                .unwrap_or_else(|| self.chains.head(self.key, x.id));
            if found != *x {
                return Verification::HeadMismatch {
                    expected: x.clone(),
                    found,
                };
            }
        }
        Verification::Verified {
            rows: self.rows,
            head: self.chains.head(self.key, self.last_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_mac() {
        let key = AuditKey::new([7; 32]);
        let base = Link {
            id: 3,
            prev_id: Some(1),
            at: 10,
            account: "a",
            event: "e",
            device_id: None,
            detail: Some("x"),
        };
        let mac = link_mac(&key, Some(&[1; 32]), &base);
        let variants = [
            Link { id: 4, ..base },
            Link {
                prev_id: None,
                ..base
            },
            Link { at: 11, ..base },
            Link {
                account: "b",
                ..base
            },
            Link { event: "f", ..base },
            Link {
                device_id: Some(""),
                ..base
            },
            Link {
                detail: None,
                ..base
            },
            // Moving bytes between fields must not collide.
            Link {
                account: "ae",
                event: "",
                ..base
            },
        ];
        for v in &variants {
            assert_ne!(link_mac(&key, Some(&[1; 32]), v), mac, "{v:?}");
        }
        assert_ne!(link_mac(&key, None, &base), mac);
        assert_ne!(
            link_mac(&AuditKey::new([8; 32]), Some(&[1; 32]), &base),
            mac
        );
    }

    #[test]
    fn a_head_reads_back_from_both_forms() {
        let head = Head {
            id: 42,
            mac: [0xab; 32],
        };
        let text = head.to_string();
        assert_eq!(text, format!("id=42 mac={}", "ab".repeat(32)));
        assert_eq!(text.parse::<Head>().unwrap(), head);
        assert_eq!(
            format!("42:{}", "ab".repeat(32)).parse::<Head>().unwrap(),
            head
        );
        assert!("42:abc".parse::<Head>().is_err());
    }
}
