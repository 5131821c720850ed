//! The one verifier: the command service, the car and relying parties run this, with their
//! own keychain, clock and counter windows. No I/O: the caller looks keys up and saves the
//! window it is handed back *before* it executes the command.

use std::collections::BTreeMap;

use crate::envelope::{CommandKind, Envelope, Role};
use crate::proof::{device_message, pin_message, signature_ok, Proof};
use crate::Fault;

/// The longest expiry a policy may allow, in seconds.
pub const MAX_TTL: u64 = 300;

/// What a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The PIN, proven to the server and co-signed for this envelope.
    pub needs_pin: bool,
    /// The furthest `expires_at` may be from the verifier's clock.
    pub max_ttl_seconds: u64,
}

/// Which commands need the PIN and how long their proofs may live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    rules: BTreeMap<CommandKind, Rule>,
}

impl Default for Policy {
    /// Unlocking the doors and the keychain's commands need the PIN; locking, horn, lights,
    /// charging and climate do not (what car makers ask today). 30 s for every proof.
    fn default() -> Self {
        let rules = CommandKind::ALL
            .into_iter()
            .map(|k| {
                let needs_pin = k == CommandKind::UnlockDoors || k.manages_keys();
                (
                    k,
                    Rule {
                        needs_pin,
                        max_ttl_seconds: 30,
                    },
                )
            })
            .collect();
        Policy { rules }
    }
}

impl Policy {
    /// Changes one command's rule. The keychain's commands always need the PIN, and no proof
    /// lives longer than [`MAX_TTL`].
    pub fn set(&mut self, kind: CommandKind, rule: Rule) -> Result<(), String> {
        if kind.manages_keys() && !rule.needs_pin {
            return Err(format!("{} always needs the PIN", kind.as_str()));
        }
        if rule.max_ttl_seconds == 0 || rule.max_ttl_seconds > MAX_TTL {
            return Err(format!("expiry cap must be 1 to {MAX_TTL} seconds"));
        }
        self.rules.insert(kind, rule);
        Ok(())
    }

    /// The default policy with `overrides` (command name, needs PIN, expiry cap) applied: what
    /// the server's and the car's configuration files say.
    pub fn with_overrides<'a>(
        overrides: impl IntoIterator<Item = (&'a str, bool, u64)>,
    ) -> Result<Policy, String> {
        let mut policy = Policy::default();
        for (name, needs_pin, max_ttl_seconds) in overrides {
            let kind = CommandKind::parse(name).ok_or_else(|| {
                let known: Vec<_> = CommandKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown command {name:?} (known: {})", known.join(", "))
            })?;
            policy.set(
                kind,
                Rule {
                    needs_pin,
                    max_ttl_seconds,
                },
            )?;
        }
        Ok(policy)
    }

    pub fn rule(&self, kind: CommandKind) -> Rule {
        self.rules[&kind]
    }
}

/// The counters a verifier has seen from one key: the highest, and which of the 64 below it.
/// A counter above the highest is new; one within the window is new once; one older is not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub highest: u64,
    /// Bit `i` set: `highest - 1 - i` was seen.
    pub seen_below: u64,
}

impl Window {
    /// A window where everything up to `counter` counts as seen (a service that keeps one
    /// counter per device).
    pub fn after(counter: u64) -> Window {
        Window {
            highest: counter,
            seen_below: u64::MAX,
        }
    }

    /// The window with `counter` recorded, or `ReplayedCounter`.
    pub fn record(self, counter: u64) -> Result<Window, Fault> {
        if counter == 0 {
            return Err(Fault::ReplayedCounter);
        }
        if counter > self.highest {
            let shift = counter - self.highest;
            // The previous highest is now below it, seen (0 is never valid anyway).
            let seen_below = match shift {
                1..=63 => (self.seen_below << shift) | (1 << (shift - 1)),
                64 => 1 << 63,
                _ => 0,
            };
            return Ok(Window {
                highest: counter,
                seen_below,
            });
        }
        let age = self.highest - counter;
        if age == 0 || age > 64 || self.seen_below & (1 << (age - 1)) != 0 {
            return Err(Fault::ReplayedCounter);
        }
        Ok(Window {
            highest: self.highest,
            seen_below: self.seen_below | (1 << (age - 1)),
        })
    }
}

/// A key on a verifier's keychain, as the caller found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// SEC1 uncompressed.
    pub public_key: Vec<u8>,
    pub role: Role,
    /// A removed key stays known but inactive.
    pub active: bool,
    pub window: Window,
}

/// How the PIN evidence of a proof is checked.
#[derive(Debug, Clone, Copy)]
pub enum PinCheck<'a> {
    /// Against the server's PIN co-signing key (SEC1), pinned by the verifier: a car and a
    /// relying party.
    Cosignature(&'a [u8]),
    /// By the caller itself: the command service, which runs the PIN check, refuses a
    /// command that [`Accepted::needs_pin`] without it, and co-signs.
    Issuer,
}

/// A verifier's identity and rules.
#[derive(Debug, Clone, Copy)]
pub struct Verifier<'a> {
    pub vin: &'a str,
    pub audience: &'a str,
    pub policy: &'a Policy,
    pub pin: PinCheck<'a>,
    /// How far the device's clock may be ahead of the verifier's, in seconds.
    pub clock_skew: u64,
}

/// A proof that passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub envelope: Envelope,
    pub role: Role,
    /// Whether the PIN evidence was present and valid (with [`PinCheck::Issuer`]: whether the
    /// envelope asks for the PIN, which the caller must then check).
    pub with_pin: bool,
    /// Whether the policy requires the PIN for this command.
    pub needs_pin: bool,
    /// The key's window with this counter recorded: save it before executing.
    pub window: Window,
    /// [`Proof::digest`].
    pub digest: [u8; 32],
}

impl Verifier<'_> {
    /// Every rule, in order: strict parsing, car and audience, key and role, expiry, counter,
    /// device signature, PIN evidence. `keychain` looks a key id up.
    pub fn verify(
        &self,
        proof_bytes: &[u8],
        now: u64,
        keychain: impl FnOnce(&[u8; 32]) -> Option<KeyEntry>,
    ) -> Result<Accepted, Fault> {
        let proof = Proof::parse(proof_bytes)?;
        let e = &proof.envelope;
        if e.vin != self.vin {
            return Err(Fault::WrongVehicle);
        }
        if e.audience != self.audience {
            return Err(Fault::WrongAudience);
        }
        let key = keychain(&e.key_id).ok_or(Fault::UnknownKey)?;
        if !key.active {
            return Err(Fault::InactiveKey);
        }
        let kind = e.command.kind();
        if kind.manages_keys() && key.role != Role::Owner {
            return Err(Fault::InsufficientPrivileges);
        }
        let rule = self.policy.rule(kind);
        if now > e.expires_at {
            return Err(Fault::Expired);
        }
        if e.expires_at - now > rule.max_ttl_seconds.saturating_add(self.clock_skew) {
            return Err(Fault::TtlTooLong);
        }
        let window = key.window.record(e.counter)?;
        if !signature_ok(
            &key.public_key,
            &device_message(&proof.envelope_bytes),
            &proof.device_signature,
        ) {
            return Err(Fault::BadSignature);
        }
        let with_pin = match (self.pin, &proof.pin_cosignature) {
            (PinCheck::Issuer, _) => e.pin_binding.is_some(),
            (PinCheck::Cosignature(_), None) => false,
            (PinCheck::Cosignature(server), Some(cosignature)) => {
                if !signature_ok(server, &pin_message(&proof.envelope_bytes), cosignature) {
                    return Err(Fault::BadPinEvidence);
                }
                true
            }
        };
        // The command service decides with the PIN check it runs itself.
        if rule.needs_pin && !with_pin && !matches!(self.pin, PinCheck::Issuer) {
            return Err(Fault::PinRequired);
        }
        Ok(Accepted {
            envelope: proof.envelope.clone(),
            role: key.role,
            with_pin,
            needs_pin: rule.needs_pin,
            window,
            digest: proof.digest(),
        })
    }
}
