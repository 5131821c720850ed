//! The verifier's rules, each attacked: a proof that passes, and every change that must not.

mod common;

use common::*;
use pims_command::*;

#[test]
fn a_proof_of_unlock_with_the_pin_is_accepted_once_and_its_window_saved() {
    let p = proof(Command::UnlockDoors, 7, true);
    let ok = car_verify(&p, NOW, owner()).unwrap();
    assert_eq!(ok.envelope.command, Command::UnlockDoors);
    assert!(ok.with_pin && ok.needs_pin);
    assert_eq!(ok.window.highest, 7);
    // The same proof against the saved window: a replay.
    let again = car_verify(&p, NOW, Some(entry(Role::Owner, ok.window)));
    assert_eq!(again, Err(Fault::ReplayedCounter));
}

#[test]
fn unlock_without_the_pin_evidence_is_refused_and_horn_needs_none() {
    let e = envelope(Command::UnlockDoors, 3, true);
    let no_cosign = proof_of(&e, &device(), None);
    assert_eq!(
        car_verify(&no_cosign, NOW, owner()),
        Err(Fault::PinRequired)
    );
    let plain = proof(Command::UnlockDoors, 3, false);
    assert_eq!(car_verify(&plain, NOW, owner()), Err(Fault::PinRequired));
    let horn = car_verify(&proof(Command::Horn, 3, false), NOW, owner()).unwrap();
    assert!(!horn.with_pin && !horn.needs_pin);
}

#[test]
fn a_cloud_with_the_cosigning_key_but_no_device_key_cannot_forge_an_unlock() {
    let e = envelope(Command::UnlockDoors, 9, true);
    // Signed by a key that is not the device's, co-signed with the real co-signing key.
    let forged = proof_of(&e, &key(0x33), Some(&cosigner()));
    assert_eq!(car_verify(&forged, NOW, owner()), Err(Fault::BadSignature));
    // A PIN co-signature by another key is not evidence.
    let fake_pin = proof_of(&e, &device(), Some(&key(0x44)));
    assert_eq!(
        car_verify(&fake_pin, NOW, owner()),
        Err(Fault::BadPinEvidence)
    );
}

/// Replaces the envelope inside a signed proof, keeping the signatures.
fn with_envelope(p: &[u8], change: impl FnOnce(&mut Envelope)) -> Vec<u8> {
    let mut proof = Proof::parse(p).unwrap();
    change(&mut proof.envelope);
    proof.envelope_bytes = proof.envelope.encode();
    proof.encode()
}

#[test]
fn a_horn_proof_does_not_serve_as_unlock_nor_for_another_car_nor_with_other_parameters() {
    let horn = proof(Command::Horn, 5, true);
    let as_unlock = with_envelope(&horn, |e| e.command = Command::UnlockDoors);
    assert_eq!(
        car_verify(&as_unlock, NOW, owner()),
        Err(Fault::BadSignature)
    );
    let other_car = with_envelope(&horn, |e| e.vin = "WVWZZZ1JZXW000001".into());
    assert_eq!(
        car_verify(&other_car, NOW, owner()),
        Err(Fault::WrongVehicle)
    );
    let charge = proof(Command::Charge { start_now: false }, 5, false);
    let changed = with_envelope(&charge, |e| e.command = Command::Charge { start_now: true });
    assert_eq!(car_verify(&changed, NOW, owner()), Err(Fault::BadSignature));
    let elsewhere = with_envelope(&horn, |e| e.audience = "another-service".into());
    assert_eq!(
        car_verify(&elsewhere, NOW, owner()),
        Err(Fault::WrongAudience)
    );
}

#[test]
fn expiry_is_checked_at_its_boundaries_and_cannot_be_stretched() {
    let p = proof(Command::Horn, 5, false);
    let expires = NOW + 20;
    assert!(car_verify(&p, expires, owner()).is_ok());
    assert_eq!(car_verify(&p, expires + 1, owner()), Err(Fault::Expired));
    let stretched = with_envelope(&p, |e| e.expires_at += 3600);
    assert_eq!(car_verify(&stretched, NOW, owner()), Err(Fault::TtlTooLong));
    // A device that signs a long expiry itself is refused too: cap 30 s + 10 s skew.
    let mut e = envelope(Command::Horn, 6, false);
    e.expires_at = NOW + 40;
    assert!(car_verify(&proof_of(&e, &device(), None), NOW, owner()).is_ok());
    e.expires_at = NOW + 41;
    let long = proof_of(&e, &device(), None);
    assert_eq!(car_verify(&long, NOW, owner()), Err(Fault::TtlTooLong));
}

#[test]
fn unknown_removed_and_driver_keys_are_refused_what_they_may_not_do() {
    let p = proof(Command::Horn, 5, false);
    assert_eq!(car_verify(&p, NOW, None), Err(Fault::UnknownKey));
    let mut removed = entry(Role::Owner, Window::default());
    removed.active = false;
    assert_eq!(car_verify(&p, NOW, Some(removed)), Err(Fault::InactiveKey));
    let add = proof(
        Command::AddKey {
            public_key: public(&key(0x55)),
            role: Role::Driver,
        },
        5,
        true,
    );
    let driver = Some(entry(Role::Driver, Window::default()));
    assert_eq!(
        car_verify(&add, NOW, driver.clone()),
        Err(Fault::InsufficientPrivileges)
    );
    assert!(car_verify(&add, NOW, owner()).is_ok());
    assert!(car_verify(&p, NOW, driver).is_ok());
}

#[test]
fn the_window_takes_each_counter_once_in_any_order_within_64() {
    let mut w = Window::default();
    assert_eq!(w.record(0), Err(Fault::ReplayedCounter));
    for c in [5, 3, 4, 70, 7, 6] {
        w = w.record(c).unwrap();
    }
    for c in [5, 3, 4, 70, 7, 6] {
        assert_eq!(w.record(c), Err(Fault::ReplayedCounter), "counter {c}");
    }
    // 70 - 64 = 6 is the oldest the window remembers; 5 is older and refused unseen.
    assert!(w.record(8).is_ok());
    assert_eq!(w.record(5), Err(Fault::ReplayedCounter));
    let jump = w.record(1000).unwrap();
    assert_eq!(jump.record(70), Err(Fault::ReplayedCounter));
    assert!(jump.record(999).is_ok());
    let service = Window::after(41);
    assert_eq!(service.record(41), Err(Fault::ReplayedCounter));
    assert_eq!(service.record(12), Err(Fault::ReplayedCounter));
    assert!(service.record(42).is_ok());
}

#[test]
fn the_policy_keeps_the_keychain_behind_the_pin_and_expiry_caps_bounded() {
    let mut policy = Policy::default();
    let no_pin = Rule {
        needs_pin: false,
        max_ttl_seconds: 30,
    };
    assert!(policy.set(CommandKind::AddKey, no_pin).is_err());
    assert!(policy.set(CommandKind::RemoveKey, no_pin).is_err());
    let long = Rule {
        needs_pin: true,
        max_ttl_seconds: MAX_TTL + 1,
    };
    assert!(policy.set(CommandKind::Horn, long).is_err());
    assert!(policy.set(CommandKind::UnlockDoors, no_pin).is_ok());
    assert!(!policy.rule(CommandKind::UnlockDoors).needs_pin);
    assert!(Policy::default().rule(CommandKind::UnlockDoors).needs_pin);
    for kind in [
        CommandKind::LockDoors,
        CommandKind::Horn,
        CommandKind::Warning,
        CommandKind::Charge,
        CommandKind::ChargeDeferredTime,
        CommandKind::Preconditioning,
    ] {
        assert!(!Policy::default().rule(kind).needs_pin, "{}", kind.as_str());
    }
}

#[test]
fn strict_parsing_refuses_repeats_unknown_fields_trailing_bytes_and_oversize() {
    let p = proof(Command::Horn, 5, false);
    let mut trailing = p.clone();
    trailing.push(0);
    assert!(matches!(Proof::parse(&trailing), Err(Fault::Malformed(_))));
    let e = envelope(Command::Horn, 5, false).encode();
    // The counter field repeated: insert a copy before the end marker.
    let counter_at = e.windows(3).position(|w| w == [0x06, 0, 8]).unwrap();
    let mut repeated = e[..e.len() - 1].to_vec();
    repeated.extend_from_slice(&e[counter_at..counter_at + 11]);
    repeated.push(0xFF);
    assert!(matches!(
        Envelope::parse(&repeated),
        Err(Fault::Malformed(_))
    ));
    let mut unknown = e[..e.len() - 1].to_vec();
    unknown.extend_from_slice(&[0x0A, 0, 1, 0, 0xFF]);
    assert!(matches!(
        Envelope::parse(&unknown),
        Err(Fault::Malformed(_))
    ));
    let mut versioned = e.clone();
    versioned[3] = 2;
    assert_eq!(Envelope::parse(&versioned), Err(Fault::UnsupportedVersion));
    assert!(matches!(
        Proof::parse(&vec![0x01; MAX_PROOF + 1]),
        Err(Fault::Malformed(_))
    ));
    // Every parameter layout is canonical: what parses encodes to the same bytes.
    let programs = vec![
        Program {
            slot: 1,
            hour: 7,
            minute: 30,
            enabled: true,
            days: 0b0011111,
        },
        Program {
            slot: 3,
            hour: 18,
            minute: 0,
            enabled: false,
            days: 0b1100000,
        },
    ];
    let pre = envelope(
        Command::Preconditioning {
            start_now: true,
            programs,
        },
        5,
        false,
    );
    assert_eq!(Envelope::parse(&pre.encode()).unwrap(), pre);
    let mut bad_hour = pre.encode();
    let at = bad_hour.windows(2).position(|w| w == [7, 30]).unwrap();
    bad_hour[at] = 24;
    assert!(matches!(
        Envelope::parse(&bad_hour),
        Err(Fault::Malformed(_))
    ));
}

#[test]
fn a_high_s_twin_of_a_valid_signature_is_refused() {
    use p256::elliptic_curve::ops::Neg;
    let e = envelope(Command::Horn, 5, false);
    let bytes = e.encode();
    let good = sign(&device(), &device_message(&bytes));
    let parsed = p256::ecdsa::Signature::from_der(&good).unwrap();
    let (r, s) = parsed.split_scalars();
    let high = p256::ecdsa::Signature::from_scalars(r, s.neg()).unwrap();
    let twin = Proof {
        envelope: e,
        envelope_bytes: bytes,
        device_signature: high.to_der().as_bytes().to_vec(),
        pin_cosignature: None,
    }
    .encode();
    assert_eq!(car_verify(&twin, NOW, owner()), Err(Fault::BadSignature));
}

#[test]
fn a_receipt_verifies_with_the_cars_key_only_and_binds_what_it_answers() {
    let car = key(0x66);
    let receipt = Receipt {
        request: [9; 32],
        code: 200,
        state: br#"{"doors":"unlocked"}"#.to_vec(),
        counter: 12,
    };
    let signature = sign(&car, &receipt.message());
    assert!(receipt.verify(&public(&car), &signature));
    assert!(!receipt.verify(&public(&key(0x67)), &signature));
    let mut changed = receipt.clone();
    changed.code = 2362;
    assert!(!changed.verify(&public(&car), &signature));
}
