//! The envelope a device signs: one command, on one car, for one service, by one key, once.

use sha2::{Digest, Sha256};

use crate::tlv::{exact, Reader, Writer};
use crate::Fault;

/// The envelope's format version.
pub const VERSION: u8 = 1;
/// The largest envelope accepted.
pub const MAX_ENVELOPE: usize = 512;
/// The most preconditioning programs a command carries (the reference's slots 1–4).
pub const MAX_PROGRAMS: usize = 4;

mod tag {
    pub const VERSION: u8 = 0x00;
    pub const VIN: u8 = 0x01;
    pub const AUDIENCE: u8 = 0x02;
    pub const ACTION: u8 = 0x03;
    pub const PARAMETERS: u8 = 0x04;
    pub const KEY_ID: u8 = 0x05;
    pub const COUNTER: u8 = 0x06;
    pub const EXPIRES_AT: u8 = 0x07;
    pub const CHALLENGE: u8 = 0x08;
    pub const PIN_BINDING: u8 = 0x09;
}

/// A vehicle identification number: 17 characters of `A–Z` without `I`, `O`, `Q`, and `0–9`.
pub fn vin_ok(vin: &str) -> bool {
    vin.len() == 17
        && vin
            .bytes()
            .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"IOQ".contains(&b)))
}

/// The key id of a device key: SHA-256 of its SEC1 uncompressed public key.
pub fn key_id(public_key: &[u8]) -> [u8; 32] {
    Sha256::digest(public_key).into()
}

/// A preconditioning program of the reference (`programs[]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    /// 1–4, each at most once (the programs are encoded in slot order).
    pub slot: u8,
    pub hour: u8,
    pub minute: u8,
    pub enabled: bool,
    /// Bit 0 Monday … bit 6 Sunday.
    pub days: u8,
}

/// A role on a car's keychain. Only an owner key manages keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Owner,
    Driver,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Driver => "driver",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "driver" => Some(Role::Driver),
            _ => None,
        }
    }

    fn code(self) -> u8 {
        match self {
            Role::Owner => 1,
            Role::Driver => 2,
        }
    }
}

/// One command with its parameters (the reference's `pims.vehicle.command` actions, and the
/// keychain's own two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    LockDoors,
    UnlockDoors,
    Horn,
    /// Lights (`warning`).
    Warning,
    Charge {
        start_now: bool,
    },
    ChargeDeferredTime {
        start_now: bool,
        hour: u8,
        minute: u8,
        check_start_charge: bool,
    },
    Preconditioning {
        start_now: bool,
        programs: Vec<Program>,
    },
    /// Adds `public_key` (SEC1 uncompressed) to the keychain.
    AddKey {
        public_key: Vec<u8>,
        role: Role,
    },
    RemoveKey {
        key_id: [u8; 32],
    },
}

/// A command without its parameters: what a policy and a role speak of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommandKind {
    LockDoors,
    UnlockDoors,
    Horn,
    Warning,
    Charge,
    ChargeDeferredTime,
    Preconditioning,
    AddKey,
    RemoveKey,
}

impl CommandKind {
    pub const ALL: [CommandKind; 9] = [
        CommandKind::LockDoors,
        CommandKind::UnlockDoors,
        CommandKind::Horn,
        CommandKind::Warning,
        CommandKind::Charge,
        CommandKind::ChargeDeferredTime,
        CommandKind::Preconditioning,
        CommandKind::AddKey,
        CommandKind::RemoveKey,
    ];

    /// The name policies and answers use.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::LockDoors => "doors.lock",
            CommandKind::UnlockDoors => "doors.unlock",
            CommandKind::Horn => "horn",
            CommandKind::Warning => "warning",
            CommandKind::Charge => "charge",
            CommandKind::ChargeDeferredTime => "chargeDeferredTime",
            CommandKind::Preconditioning => "preconditioning",
            CommandKind::AddKey => "keys.add",
            CommandKind::RemoveKey => "keys.remove",
        }
    }

    pub fn parse(s: &str) -> Option<CommandKind> {
        CommandKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The keychain's own commands, which only an owner key may send.
    pub fn manages_keys(self) -> bool {
        matches!(self, CommandKind::AddKey | CommandKind::RemoveKey)
    }

    fn code(self) -> u8 {
        CommandKind::ALL
            .iter()
            .position(|k| *k == self)
            .expect("listed") as u8
            + 1
    }

    fn from_code(code: u8) -> Option<CommandKind> {
        CommandKind::ALL
            .get((code as usize).checked_sub(1)?)
            .copied()
    }
}

impl Command {
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::LockDoors => CommandKind::LockDoors,
            Command::UnlockDoors => CommandKind::UnlockDoors,
            Command::Horn => CommandKind::Horn,
            Command::Warning => CommandKind::Warning,
            Command::Charge { .. } => CommandKind::Charge,
            Command::ChargeDeferredTime { .. } => CommandKind::ChargeDeferredTime,
            Command::Preconditioning { .. } => CommandKind::Preconditioning,
            Command::AddKey { .. } => CommandKind::AddKey,
            Command::RemoveKey { .. } => CommandKind::RemoveKey,
        }
    }

    /// The canonical parameters: a fixed layout per command, so one command has one encoding.
    fn parameters(&self) -> Vec<u8> {
        match self {
            Command::LockDoors | Command::UnlockDoors | Command::Horn | Command::Warning => vec![],
            Command::Charge { start_now } => vec![*start_now as u8],
            Command::ChargeDeferredTime {
                start_now,
                hour,
                minute,
                check_start_charge,
            } => vec![*start_now as u8, *hour, *minute, *check_start_charge as u8],
            Command::Preconditioning {
                start_now,
                programs,
            } => {
                let mut out = vec![*start_now as u8];
                for p in programs {
                    out.extend_from_slice(&[p.slot, p.hour, p.minute, p.enabled as u8, p.days]);
                }
                out
            }
            Command::AddKey { public_key, role } => {
                let mut out = vec![role.code()];
                out.extend_from_slice(public_key);
                out
            }
            Command::RemoveKey { key_id } => key_id.to_vec(),
        }
    }

    fn from_parts(kind: CommandKind, p: &[u8]) -> Result<Command, Fault> {
        let bad = Fault::Malformed("parameters do not fit the command");
        let flag = |b: u8| match b {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Fault::Malformed("a flag is neither 0 nor 1")),
        };
        let time = |h: u8, m: u8| match h < 24 && m < 60 {
            true => Ok((h, m)),
            false => Err(Fault::Malformed("a time of day out of range")),
        };
        Ok(match (kind, p) {
            (CommandKind::LockDoors, []) => Command::LockDoors,
            (CommandKind::UnlockDoors, []) => Command::UnlockDoors,
            (CommandKind::Horn, []) => Command::Horn,
            (CommandKind::Warning, []) => Command::Warning,
            (CommandKind::Charge, [s]) => Command::Charge {
                start_now: flag(*s)?,
            },
            (CommandKind::ChargeDeferredTime, [s, h, m, c]) => {
                let (hour, minute) = time(*h, *m)?;
                Command::ChargeDeferredTime {
                    start_now: flag(*s)?,
                    hour,
                    minute,
                    check_start_charge: flag(*c)?,
                }
            }
            (CommandKind::Preconditioning, [s, rest @ ..]) if rest.len() % 5 == 0 => {
                let mut programs = Vec::new();
                for c in rest.chunks_exact(5) {
                    let (hour, minute) = time(c[1], c[2])?;
                    let after_last = programs.last().is_none_or(|p: &Program| p.slot < c[0]);
                    if !(1..=MAX_PROGRAMS as u8).contains(&c[0]) || !after_last || c[4] > 0x7F {
                        return Err(bad);
                    }
                    programs.push(Program {
                        slot: c[0],
                        hour,
                        minute,
                        enabled: flag(c[3])?,
                        days: c[4],
                    });
                }
                Command::Preconditioning {
                    start_now: flag(*s)?,
                    programs,
                }
            }
            (CommandKind::AddKey, [role, key @ ..]) => {
                let role = match role {
                    1 => Role::Owner,
                    2 => Role::Driver,
                    _ => return Err(bad),
                };
                if !public_key_ok(key) {
                    return Err(Fault::Malformed("not a P-256 public key"));
                }
                Command::AddKey {
                    public_key: key.to_vec(),
                    role,
                }
            }
            (CommandKind::RemoveKey, key) if key.len() == 32 => {
                Command::RemoveKey { key_id: exact(key) }
            }
            _ => return Err(bad),
        })
    }
}

/// A SEC1 uncompressed P-256 point on the curve.
pub fn public_key_ok(key: &[u8]) -> bool {
    key.len() == 65 && key[0] == 4 && p256::PublicKey::from_sec1_bytes(key).is_ok()
}

/// What a device signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub vin: String,
    /// The service the proof is for (the command service's id); a car checks its own.
    pub audience: String,
    pub command: Command,
    /// [`key_id`] of the signing key.
    pub key_id: [u8; 32],
    /// The device's counter: never seen before by the verifier.
    pub counter: u64,
    /// Unix seconds after which the proof is refused.
    pub expires_at: u64,
    /// The command service's nonce (16–32 bytes), so the service takes each proof once.
    pub challenge: Vec<u8>,
    /// For a command with the PIN: SHA-256 of the PIN login's finalization the server checks
    /// before it co-signs. A proof carries the PIN evidence only with this binding.
    pub pin_binding: Option<[u8; 32]>,
}

impl Envelope {
    /// The canonical bytes (unique: fixed field order, fixed parameter layouts).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.field(tag::VERSION, &[VERSION])
            .field(tag::VIN, self.vin.as_bytes())
            .field(tag::AUDIENCE, self.audience.as_bytes())
            .field(tag::ACTION, &[self.command.kind().code()])
            .field(tag::PARAMETERS, &self.command.parameters())
            .field(tag::KEY_ID, &self.key_id)
            .field(tag::COUNTER, &self.counter.to_be_bytes())
            .field(tag::EXPIRES_AT, &self.expires_at.to_be_bytes())
            .field(tag::CHALLENGE, &self.challenge);
        if let Some(binding) = &self.pin_binding {
            w.field(tag::PIN_BINDING, binding);
        }
        w.finish()
    }

    /// Parses the canonical bytes; anything else is refused (the encoding of the result is
    /// `bytes` again).
    pub fn parse(bytes: &[u8]) -> Result<Envelope, Fault> {
        if bytes.len() > MAX_ENVELOPE {
            return Err(Fault::Malformed("envelope too large"));
        }
        let mut r = Reader::new(bytes);
        let version = r.required(tag::VERSION, 1..=1)?;
        if version != [VERSION] {
            return Err(Fault::UnsupportedVersion);
        }
        let vin = std::str::from_utf8(r.required(tag::VIN, 17..=17)?)
            .ok()
            .filter(|v| vin_ok(v))
            .ok_or(Fault::Malformed("not a VIN"))?
            .to_string();
        let audience = std::str::from_utf8(r.required(tag::AUDIENCE, 1..=64)?)
            .ok()
            .filter(|a| a.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or(Fault::Malformed("audience is not printable ASCII"))?
            .to_string();
        let action = r.required(tag::ACTION, 1..=1)?[0];
        let kind = CommandKind::from_code(action).ok_or(Fault::Malformed("unknown command"))?;
        let command = Command::from_parts(kind, r.required(tag::PARAMETERS, 0..=128)?)?;
        let key_id = exact(r.required(tag::KEY_ID, 32..=32)?);
        let counter = u64::from_be_bytes(exact(r.required(tag::COUNTER, 8..=8)?));
        let expires_at = u64::from_be_bytes(exact(r.required(tag::EXPIRES_AT, 8..=8)?));
        let challenge = r.required(tag::CHALLENGE, 16..=32)?.to_vec();
        let pin_binding = r.optional(tag::PIN_BINDING, 32..=32)?.map(exact);
        r.end()?;
        Ok(Envelope {
            vin,
            audience,
            command,
            key_id,
            counter,
            expires_at,
            challenge,
            pin_binding,
        })
    }
}
