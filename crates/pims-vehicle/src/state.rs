//! What the car is: doors, charging, climate, horn and lights — and what a command does to
//! them, with the reference's vehicle codes when a command finds nothing to do.

use pims_command::Command;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CarState {
    pub locked: bool,
    pub charging: bool,
    /// `PTxxHxxM` of the next deferred charge, empty when none.
    pub deferred_charge: String,
    pub preconditioning: bool,
    pub programs: Vec<ProgramState>,
    pub horn_count: u64,
    pub lights_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgramState {
    pub slot: u8,
    pub hour: u8,
    pub minute: u8,
    pub is_enabled: bool,
    pub occurrence: Vec<String>,
}

impl Default for CarState {
    fn default() -> Self {
        CarState {
            locked: true,
            charging: false,
            deferred_charge: String::new(),
            preconditioning: false,
            programs: Vec::new(),
            horn_count: 0,
            lights_count: 0,
        }
    }
}

/// 2361 "All vehicle's doors are locked", 2360 "… unlocked": the command changed nothing.
pub const ALREADY_LOCKED: u16 = 2361;
pub const ALREADY_UNLOCKED: u16 = 2360;
pub const EXECUTED: u16 = 200;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl CarState {
    /// Applies a verified vehicle command (not the keychain's); the code it answers.
    pub fn apply(&mut self, command: &Command) -> u16 {
        match command {
            Command::LockDoors if self.locked => return ALREADY_LOCKED,
            Command::UnlockDoors if !self.locked => return ALREADY_UNLOCKED,
            Command::LockDoors => self.locked = true,
            Command::UnlockDoors => self.locked = false,
            Command::Horn => self.horn_count += 1,
            Command::Warning => self.lights_count += 1,
            Command::Charge { start_now } => self.charging = *start_now,
            Command::ChargeDeferredTime {
                start_now,
                hour,
                minute,
                ..
            } => {
                self.charging = *start_now;
                self.deferred_charge = format!("PT{hour:02}H{minute:02}M");
            }
            Command::Preconditioning {
                start_now,
                programs,
            } => {
                self.preconditioning = *start_now;
                self.programs = programs
                    .iter()
                    .map(|p| ProgramState {
                        slot: p.slot,
                        hour: p.hour,
                        minute: p.minute,
                        is_enabled: p.enabled,
                        occurrence: (0..7)
                            .filter(|d| p.days & (1 << d) != 0)
                            .map(|d| DAYS[d].to_string())
                            .collect(),
                    })
                    .collect();
            }
            Command::AddKey { .. } | Command::RemoveKey { .. } => {}
        }
        EXECUTED
    }

    /// The reference's vehicle object (`pims.vehicle.signal`'s `vehicle`) for `vin`.
    pub fn vehicle_object(&self, vin: &str) -> serde_json::Value {
        serde_json::json!({
            "ressources": { "status": {
                "doorStateInformation": {
                    "state": [if self.locked { "Locked" } else { "Unlocked" }],
                },
                "electricInformation": { "ChargingInfo": {
                    "chargingState": if self.charging { "INPROGRESS" } else { "STOPPED" },
                    "nextDeferredChargingDate": self.deferred_charge,
                }},
                "precondInformation": {
                    "status": if self.preconditioning { "Enabled" } else { "Disabled" },
                    "PrecondScheduling": self.programs,
                },
                "hornCount": self.horn_count,
                "lightsCount": self.lights_count,
                "vin": vin,
            }},
            "attributes": { "vin": vin },
        })
    }
}
