//! Signed remote commands end to end over real sockets: a device, the command service and a
//! simulated car (`pims-vehicle`) that verifies every proof itself. Each attack of the issue
//! is sent as raw protocol and must fail — at the service, at the car, or both.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use p256::ecdsa::SigningKey;
use pims_command::{pairing_mac, Command, Envelope, Proof, Receipt, Role};
use pims_proto::endpoint::{self as ep, Endpoint};
use pims_proto::{ApiError, CommandSent, PairVehicle, SendCommand, VehiclePaired};
use pims_server::config::VehicleEndpoint;
use pims_server::keys::Keys;
use pims_vehicle::{Vehicle, VehicleConfig};
use rand::rngs::OsRng;

use crate::common::*;
use crate::management::challenge;

pub const VIN: &str = "VR3UPHNKSKT101603";
pub const AUDIENCE: &str = "pims-commands";

pub struct Garage {
    pub s: TestServer,
    pub car: Arc<Vehicle>,
    /// The address each request to the car came from, in order.
    pub car_peers: Arc<Mutex<Vec<SocketAddr>>>,
    _car_dir: tempfile::TempDir,
}

/// A server whose command service relays to one simulated car, on the server's clock.
pub async fn garage() -> Garage {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let s = TestServer::start_with(|c| {
        c.commands.vehicles = vec![VehicleEndpoint {
            vin: VIN.into(),
            url,
        }]
    })
    .await;
    let car_dir = tempfile::tempdir().unwrap();
    let clock = s.clock.clone();
    let car = Vehicle::open(VehicleConfig {
        vin: VIN.into(),
        audience: AUDIENCE.into(),
        data: car_dir.path().join("car.sqlite3"),
        pin_cosign_key: None,
        server: Some(s.url.clone()),
        policy: Default::default(),
        clock: Some(Arc::new(move || clock.now() as u64)),
    })
    .await
    .unwrap();
    let car_peers = Arc::new(Mutex::new(Vec::new()));
    let peers = car_peers.clone();
    let router = car.router().layer(axum::middleware::from_fn(
        move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
              req: axum::extract::Request,
              next: axum::middleware::Next| {
            peers.lock().unwrap().push(peer);
            next.run(req)
        },
    ));
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    Garage {
        s,
        car,
        car_peers,
        _car_dir: car_dir,
    }
}

impl Garage {
    /// Pairs `device` with the code the car shows; the car's answer is checked as the SDK does.
    pub async fn pair(&self, token: &str, device: &Device) -> VehiclePaired {
        let code = self.car.new_pairing_code().unwrap();
        let mac = pairing_mac(&code, VIN, &device.public_key());
        let paired = self
            .s
            .call::<ep::VehiclePair>(
                &[VIN],
                token,
                &PairVehicle {
                    device_id: device.id.clone(),
                    mac: mac.to_vec().into(),
                },
            )
            .await
            .unwrap();
        let answer = |car_key: &[u8]| {
            pims_command::pairing_answer_ok(
                &code,
                VIN,
                &device.public_key(),
                car_key,
                paired.mac.as_slice(),
            )
        };
        assert!(answer(paired.vehicle_key.as_slice()));
        // A relay that swaps the car's key for its own cannot make the answer check.
        assert!(!answer(&Device::new().public_key()));
        paired
    }

    /// The request the SDK sends for `command` (with `pin` proven in the same exchange).
    pub async fn command_request(
        &self,
        token: &str,
        device: &mut Device,
        command: Command,
        pin: Option<&str>,
    ) -> Result<SendCommand, ApiError> {
        let login = pin.map(|p| pims_device::pin::start(p.as_bytes(), false));
        let c = challenge(
            &self.s,
            token,
            device,
            login.as_ref().map(|(_, m)| m.clone()),
        )
        .await?;
        let finish = login.map(|(exchange, _)| {
            pims_device::CommandPin::Login(
                pims_device::pin::finish(
                    exchange,
                    pin.unwrap().as_bytes(),
                    c.login.as_ref().unwrap().as_slice(),
                    pims_device::Stretching::Cheap,
                )
                .unwrap(),
            )
        });
        self.signed(c, device, command, finish)
    }

    /// The signed request over challenge `c` with the PIN evidence `pin`.
    pub fn signed(
        &self,
        c: pims_proto::DeviceChallenge,
        device: &mut Device,
        command: Command,
        pin: Option<pims_device::CommandPin>,
    ) -> Result<SendCommand, ApiError> {
        device.counter += 1;
        let order = pims_device::CommandOrder {
            vin: VIN.into(),
            audience: AUDIENCE.into(),
            command,
            expires_at: self.s.clock.now() as u64 + 20,
        };
        let public_key = device.public_key();
        Ok(
            pims_device::command(&c, &device.id, &public_key, device.counter, order, pin)
                .sign_with(|t| device.sign(t)),
        )
    }

    pub async fn send(&self, token: &str, req: &SendCommand) -> Result<CommandSent, ApiError> {
        self.s.call::<ep::Commands>(&[], token, req).await
    }

    pub async fn command(
        &self,
        token: &str,
        device: &mut Device,
        command: Command,
        pin: Option<&str>,
    ) -> Result<CommandSent, ApiError> {
        let req = self.command_request(token, device, command, pin).await?;
        self.send(token, &req).await
    }

    /// A proof handed to the car directly (bypassing the service, as a compromised cloud
    /// or a relay can): the car's code and fault.
    pub fn at_car(&self, proof: &[u8]) -> (u16, Option<String>) {
        let receipt = self.car.command(proof).unwrap();
        (receipt.code, receipt.fault)
    }

    pub fn locked(&self) -> bool {
        self.car.state().unwrap().locked
    }
}

/// The receipt is the car's: signed by the key the pairing returned, over this proof.
fn check_receipt(sent: &CommandSent, car_key: &[u8]) {
    let r = &sent.receipt;
    let receipt = Receipt {
        request: r.request.as_slice().try_into().unwrap(),
        code: r.code,
        state: r.state.clone().into_bytes(),
        counter: r.counter,
    };
    assert!(receipt.verify(car_key, r.signature.as_slice()));
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(sent.proof.as_slice()).into();
    assert_eq!(receipt.request, digest);
}

#[tokio::test]
async fn the_owner_unlocks_with_the_pin_and_the_car_verifies_it_and_signs_its_receipt() {
    let g = garage().await;
    let (token, mut device) = enrolled_account(&g.s, "alice", PHONE, "1234").await;
    let paired = g.pair(&token, &device).await;
    assert!(g.locked());
    let sent = g
        .command(&token, &mut device, Command::UnlockDoors, Some("1234"))
        .await
        .unwrap();
    assert_eq!(
        (sent.receipt.code, sent.receipt.fault.as_deref()),
        (200, None)
    );
    check_receipt(&sent, paired.vehicle_key.as_slice());
    assert!(!g.locked());
    let state: serde_json::Value = serde_json::from_str(&sent.receipt.state).unwrap();
    assert_eq!(
        state["ressources"]["status"]["doorStateInformation"]["state"],
        serde_json::json!(["Unlocked"])
    );
    // The proof the car got carries the PIN co-signature; unlocking again finds nothing to do.
    assert!(Proof::parse(sent.proof.as_slice())
        .unwrap()
        .pin_cosignature
        .is_some());
    let again = g
        .command(&token, &mut device, Command::UnlockDoors, Some("1234"))
        .await
        .unwrap();
    assert_eq!(again.receipt.code, pims_vehicle::ALREADY_UNLOCKED);
    // Locking needs no PIN.
    let lock = g
        .command(&token, &mut device, Command::LockDoors, None)
        .await
        .unwrap();
    assert_eq!(lock.receipt.code, 200);
    assert!(g.locked());
    let audit: String =
        g.s.db()
            .query_row(
                "SELECT group_concat(detail, '|') FROM audit WHERE event = 'command_authorized'",
                [],
                |r| r.get(0),
            )
            .unwrap();
    assert_eq!(
        audit,
        format!(
            "doors.unlock {VIN} with pin|doors.unlock {VIN} with pin|doors.lock {VIN} without pin"
        )
    );
}

#[tokio::test]
async fn the_service_relays_to_a_car_over_one_kept_connection() {
    // A new connection per command would cost the service a TCP (and in production a TLS)
    // handshake each time: the relay keeps its connection to the car and the car keeps it open.
    let g = garage().await;
    let (token, mut device) = enrolled_account(&g.s, "alice", PHONE, "1234").await;
    g.pair(&token, &device).await;
    for (command, pin) in [
        (Command::UnlockDoors, Some("1234")),
        (Command::Horn, None),
        (Command::LockDoors, None),
    ] {
        let sent = g.command(&token, &mut device, command, pin).await.unwrap();
        assert_eq!(sent.receipt.code, 200);
    }
    let peers = g.car_peers.lock().unwrap().clone();
    assert_eq!(peers.len(), 4, "the pairing and three commands");
    assert!(peers.iter().all(|p| *p == peers[0]), "{peers:?}");
}

#[tokio::test]
async fn a_stolen_phone_without_the_pin_cannot_unlock_and_each_pin_guess_is_counted() {
    let g = garage().await;
    let (token, mut device) = enrolled_account(&g.s, "alice", PHONE, "1234").await;
    g.pair(&token, &device).await;
    // Without the PIN: 2302, nothing counted, nothing relayed.
    let r = g
        .command(&token, &mut device, Command::UnlockDoors, None)
        .await;
    assert_eq!(
        r.unwrap_err(),
        ApiError::PinRequired {
            command: "doors.unlock".into()
        }
    );
    // Each wrong PIN is an attempt of the account's lockout.
    for remaining in [4, 3, 2, 1] {
        let r = g
            .command(&token, &mut device, Command::UnlockDoors, Some("0000"))
            .await;
        assert_eq!(
            r.unwrap_err(),
            ApiError::WrongPin {
                attempts_remaining: remaining
            }
        );
    }
    let r = g
        .command(&token, &mut device, Command::UnlockDoors, Some("9999"))
        .await;
    assert_eq!(r.unwrap_err(), ApiError::PinBlocked);
    let r = g
        .command(&token, &mut device, Command::UnlockDoors, Some("1234"))
        .await;
    assert_eq!(r.unwrap_err(), ApiError::AccountBlocked);
    assert!(g.locked());
    // A proof the thief signs with the phone's key but no co-signature: the car refuses it.
    let req = g
        .command_request(&token, &mut device, Command::UnlockDoors, None)
        .await
        .unwrap();
    assert_eq!(
        g.at_car(req.proof.as_slice()),
        (2302, Some("pinRequired".into()))
    );
    assert!(g.locked());
}

#[tokio::test]
async fn the_reference_flow_2302_then_an_otp_with_pin_then_the_same_command_runs_once() {
    let g = garage().await;
    let (token, mut device) = enrolled_account(&g.s, "alice", PHONE, "1234").await;
    g.pair(&token, &device).await;
    let first = g
        .command(&token, &mut device, Command::UnlockDoors, None)
        .await;
    assert!(matches!(first, Err(ApiError::PinRequired { .. })));
    let otp =
        g.s.otp_for(&token, &mut device, Some("1234"), Some(AUDIENCE))
            .await
            .unwrap()
            .otp;
    let c = challenge(&g.s, &token, &mut device, None).await.unwrap();
    let req = g
        .signed(
            c,
            &mut device,
            Command::UnlockDoors,
            Some(pims_device::CommandPin::Otp(otp.clone())),
        )
        .unwrap();
    let sent = g.send(&token, &req).await.unwrap();
    assert_eq!(sent.receipt.code, 200);
    assert!(!g.locked());
    // The OTP is spent: it serves no second command.
    let c = challenge(&g.s, &token, &mut device, None).await.unwrap();
    let again = g
        .signed(
            c,
            &mut device,
            Command::LockDoors,
            Some(pims_device::CommandPin::Otp(otp)),
        )
        .unwrap();
    assert_eq!(
        g.send(&token, &again).await.unwrap_err(),
        ApiError::OtpInvalid
    );
    // An OTP without the PIN is no PIN evidence.
    let plain =
        g.s.otp_for(&token, &mut device, None, Some(AUDIENCE))
            .await
            .unwrap()
            .otp;
    let c = challenge(&g.s, &token, &mut device, None).await.unwrap();
    let req = g
        .signed(
            c,
            &mut device,
            Command::UnlockDoors,
            Some(pims_device::CommandPin::Otp(plain)),
        )
        .unwrap();
    assert_eq!(
        g.send(&token, &req).await.unwrap_err(),
        ApiError::OtpInvalid
    );
    // An OTP the envelope does not bind is refused before it is spent.
    let other =
        g.s.otp_for(&token, &mut device, Some("1234"), Some(AUDIENCE))
            .await
            .unwrap()
            .otp;
    let c = challenge(&g.s, &token, &mut device, None).await.unwrap();
    let mut req = g
        .signed(
            c,
            &mut device,
            Command::UnlockDoors,
            Some(pims_device::CommandPin::Otp("x".repeat(22))),
        )
        .unwrap();
    req.pin_otp = Some(other);
    assert_eq!(
        g.send(&token, &req).await.unwrap_err(),
        ApiError::InvalidParameter { name: "pin".into() }
    );
    assert!(!g.locked());
}

#[tokio::test]
async fn the_cloud_with_the_database_and_every_server_key_but_no_device_key_cannot_forge_an_unlock()
{
    let g = garage().await;
    let (token, device) = enrolled_account(&g.s, "alice", PHONE, "1234").await;
    g.pair(&token, &device).await;
    // Everything the server holds: its key file (with the co-signing key).
    let keys = Keys::load(&g.s.config.key_file).unwrap();
    let cloud_key = SigningKey::random(&mut OsRng);
    let cosign = |bytes: &[u8]| {
        keys.command_cosign
            .sign(&pims_command::pin_message(bytes))
            .unwrap()
    };
    let sign = |key: &SigningKey, m: &[u8]| {
        let s: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(key, m);
        s.normalize_s().unwrap_or(s).to_der().as_bytes().to_vec()
    };
    let envelope = |key_id: [u8; 32]| {
        Envelope {
            vin: VIN.into(),
            audience: AUDIENCE.into(),
            command: Command::UnlockDoors,
            key_id,
            counter: 1_000,
            expires_at: g.s.clock.now() as u64 + 20,
            challenge: vec![7; 16],
            pin_binding: Some([1; 32]),
        }
        .encode()
    };
    // Claiming the owner's key id, signed with the cloud's own key.
    let e = envelope(pims_command::key_id(&device.public_key()));
    let forged = pims_command::encode_proof(
        &e,
        &sign(&cloud_key, &pims_command::device_message(&e)),
        Some(&cosign(&e)),
    );
    assert_eq!(g.at_car(&forged), (2355, Some("badSignature".into())));
    // Under its own key id: not on the keychain.
    let e = envelope(pims_command::key_id(
        cloud_key.verifying_key().to_encoded_point(false).as_bytes(),
    ));
    let own = pims_command::encode_proof(
        &e,
        &sign(&cloud_key, &pims_command::device_message(&e)),
        Some(&cosign(&e)),
    );
    assert_eq!(g.at_car(&own), (2342, Some("unknownKey".into())));
    // A refused proof learns nothing of the car's state.
    assert_eq!(g.car.command(&own).unwrap().state, "{}");
    // Nor can it put its key on the keychain: a keys.add it signs itself is unknown, and a
    // pairing it relays without the car's code is refused — five times, then the code is void.
    let add = Envelope {
        vin: VIN.into(),
        audience: AUDIENCE.into(),
        command: Command::AddKey {
            public_key: cloud_key
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
            role: Role::Owner,
        },
        key_id: pims_command::key_id(cloud_key.verifying_key().to_encoded_point(false).as_bytes()),
        counter: 1_001,
        expires_at: g.s.clock.now() as u64 + 20,
        challenge: vec![7; 16],
        pin_binding: Some([1; 32]),
    }
    .encode();
    let add = pims_command::encode_proof(
        &add,
        &sign(&cloud_key, &pims_command::device_message(&add)),
        Some(&cosign(&add)),
    );
    assert_eq!(g.at_car(&add).0, 2342);
    let code = g.car.new_pairing_code().unwrap();
    let mut pair = pims_proto::car::Pair {
        public_key: cloud_key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
            .into(),
        mac: vec![0; 32].into(),
        account: "alice".into(),
        device_id: "cloud".into(),
    };
    for _ in 0..5 {
        assert!(g.car.pair(&pair).unwrap().is_none());
    }
    pair.mac = pairing_mac(&code, VIN, pair.public_key.as_slice())
        .to_vec()
        .into();
    assert!(
        g.car.pair(&pair).unwrap().is_none(),
        "the code is void after 5 wrong tries"
    );
    assert!(g.locked());
}

#[tokio::test]
async fn captured_proofs_replayed_to_the_service_and_to_the_car_are_refused() {
    let g = garage().await;
    let (token, mut device) = enrolled_account(&g.s, "alice", PHONE, "1234").await;
    g.pair(&token, &device).await;
    let req = g
        .command_request(&token, &mut device, Command::UnlockDoors, Some("1234"))
        .await
        .unwrap();
    let sent = g.send(&token, &req).await.unwrap();
    assert_eq!(sent.receipt.code, 200);
    g.command(&token, &mut device, Command::LockDoors, None)
        .await
        .unwrap();
    // The same request to the service: its challenge is spent.
    assert_eq!(
        g.send(&token, &req).await.unwrap_err(),
        ApiError::SessionExpired
    );
    // The co-signed proof straight to the car: its counter was seen.
    assert_eq!(
        g.at_car(sent.proof.as_slice()),
        (2356, Some("replayedCounter".into()))
    );
    assert!(g.locked());
}

#[tokio::test]
async fn a_horn_proof_is_no_unlock_another_cars_proof_is_refused_and_expiry_cannot_be_stretched() {
    let g = garage().await;
    let (token, mut device) = enrolled_account(&g.s, "alice", PHONE, "1234").await;
    g.pair(&token, &device).await;
    let horn = g
        .command_request(&token, &mut device, Command::Horn, Some("1234"))
        .await
        .unwrap();
    let rewrite = |req: &SendCommand, change: &dyn Fn(&mut Envelope)| {
        let mut p = Proof::parse(req.proof.as_slice()).unwrap();
        change(&mut p.envelope);
        p.envelope_bytes = p.envelope.encode();
        let mut r = req.clone();
        r.proof = p.encode().into();
        r
    };
    let as_unlock = rewrite(&horn, &|e| e.command = Command::UnlockDoors);
    assert_eq!(
        g.send(&token, &as_unlock).await.unwrap_err(),
        ApiError::BadSignature
    );
    assert_eq!(g.at_car(as_unlock.proof.as_slice()).0, 2355);
    let horn = g
        .command_request(&token, &mut device, Command::Horn, None)
        .await
        .unwrap();
    let stretched = rewrite(&horn, &|e| e.expires_at += 3_600);
    assert_eq!(
        g.send(&token, &stretched).await.unwrap_err(),
        ApiError::CommandRefused {
            fault: "ttlTooLong".into()
        }
    );
    let other_car = rewrite(&horn, &|e| e.vin = "WVWZZZ1JZXW000001".into());
    assert_eq!(
        g.send(&token, &other_car).await.unwrap_err(),
        ApiError::VehicleUnknown
    );
    assert_eq!(
        g.at_car(other_car.proof.as_slice()),
        (2366, Some("wrongVehicle".into()))
    );
    let charge = g
        .command_request(
            &token,
            &mut device,
            Command::Charge { start_now: false },
            None,
        )
        .await
        .unwrap();
    let changed = rewrite(&charge, &|e| {
        e.command = Command::Charge { start_now: true }
    });
    assert_eq!(g.at_car(changed.proof.as_slice()).0, 2355);
    assert!(g.locked());
    assert!(!g.car.state().unwrap().charging);
}

#[tokio::test]
async fn a_revoked_devices_unexpired_proof_stops_at_the_service_at_once_and_at_the_car_after_its_sync(
) {
    let g = garage().await;
    let (token, mut device) = enrolled_account(&g.s, "alice", PHONE, "1234").await;
    g.pair(&token, &device).await;
    let pending = g
        .command_request(&token, &mut device, Command::Horn, None)
        .await
        .unwrap();
    g.s.call::<ep::DeviceRevoke>(&[&device.id], &token, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        g.send(&token, &pending).await.unwrap_err(),
        ApiError::DeviceUnknown
    );
    // The car learns at its next keychain sync (answer signed for its nonce and its question)...
    assert_eq!(g.car.sync_keychain().await.unwrap(), 1);
    assert_eq!(
        g.at_car(pending.proof.as_slice()),
        (2342, Some("inactiveKey".into()))
    );
    assert_eq!(g.car.state().unwrap().horn_count, 0);
}

#[tokio::test]
async fn further_keys_come_only_by_an_owner_command_with_the_pin() {
    let g = garage().await;
    let (token, mut owner) = enrolled_account(&g.s, "alice", PHONE, "1234").await;
    g.pair(&token, &owner).await;
    let mut second = g.s.enroll(&token, "1234").await.unwrap();
    let add = Command::AddKey {
        public_key: second.public_key(),
        role: Role::Driver,
    };
    // Its own proof before it is added: unknown to the car.
    let sent = g
        .command(&token, &mut second, Command::Horn, None)
        .await
        .unwrap();
    assert_eq!(
        (sent.receipt.code, sent.receipt.fault.as_deref()),
        (2342, Some("unknownKey"))
    );
    let r = g.command(&token, &mut owner, add.clone(), None).await;
    assert_eq!(
        r.unwrap_err(),
        ApiError::PinRequired {
            command: "keys.add".into()
        }
    );
    let added = g
        .command(&token, &mut owner, add, Some("1234"))
        .await
        .unwrap();
    assert_eq!(added.receipt.code, 200);
    let horn = g
        .command(&token, &mut second, Command::Horn, None)
        .await
        .unwrap();
    assert_eq!(horn.receipt.code, 200);
    // A driver key cannot add keys, even with the PIN.
    let third = Device::new();
    let r = g
        .command(
            &token,
            &mut second,
            Command::AddKey {
                public_key: third.public_key(),
                role: Role::Owner,
            },
            Some("1234"),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.receipt.code, r.receipt.fault.as_deref()),
        (2323, Some("insufficientPrivileges"))
    );
}

#[tokio::test]
async fn a_car_the_service_does_not_relay_to_and_a_pairing_while_no_code_is_shown_are_refused() {
    let g = garage().await;
    let (token, device) = enrolled_account(&g.s, "alice", PHONE, "1234").await;
    let r =
        g.s.call::<ep::VehiclePair>(
            &["WVWZZZ1JZXW000001"],
            &token,
            &PairVehicle {
                device_id: device.id.clone(),
                mac: vec![0; 32].into(),
            },
        )
        .await;
    assert_eq!(r.unwrap_err(), ApiError::VehicleUnknown);
    let r =
        g.s.call::<ep::VehiclePair>(
            &[VIN],
            &token,
            &PairVehicle {
                device_id: device.id.clone(),
                mac: vec![0; 32].into(),
            },
        )
        .await;
    assert_eq!(r.unwrap_err(), ApiError::PairingRefused, "no code shown");
}

async fn rp_verify(
    g: &Garage,
    secret: &str,
    proof: &[u8],
    device_id: &str,
) -> Result<pims_proto::CommandVerified, ApiError> {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("demo-rp:{secret}"));
    let r =
        g.s.http
            .post(format!("{}{}", g.s.url, ep::CommandVerify::ROUTE.path))
            .header("authorization", format!("Basic {auth}"))
            .json(&pims_proto::VerifyCommand {
                proof: proof.to_vec().into(),
                subject: "alice".into(),
                device_id: device_id.into(),
            })
            .send()
            .await
            .unwrap();
    decode(r).await
}

#[tokio::test]
async fn a_relying_party_is_told_which_command_which_car_which_device_and_the_pin_facts() {
    let g = garage().await;
    let (token, mut device) = enrolled_account(&g.s, "alice", PHONE, "1234").await;
    g.pair(&token, &device).await;
    let unlock = g
        .command(&token, &mut device, Command::UnlockDoors, Some("1234"))
        .await
        .unwrap();
    let v = rp_verify(&g, "demo-rp-secret", unlock.proof.as_slice(), &device.id)
        .await
        .unwrap();
    assert_eq!(
        (
            v.vin.as_str(),
            v.command.as_str(),
            v.with_pin,
            v.pin_required
        ),
        (VIN, "doors.unlock", true, true)
    );
    assert_eq!(v.device_id, device.id);
    // Enrolled without a key attestation.
    assert_eq!(v.assurance, "unattested");
    assert_eq!(v.pin_set_by, Some(pims_proto::PinOrigin::Enrollment));
    assert_eq!(v.pin_set_at, Some(START));
    let horn = g
        .command(&token, &mut device, Command::Horn, None)
        .await
        .unwrap();
    let v = rp_verify(&g, "demo-rp-secret", horn.proof.as_slice(), &device.id)
        .await
        .unwrap();
    assert_eq!(
        (v.command.as_str(), v.with_pin, v.pin_required),
        ("horn", false, false)
    );
    // An unlock proof without the co-signature, wrong credentials, another device.
    let bare = g
        .command_request(&token, &mut device, Command::UnlockDoors, None)
        .await
        .unwrap();
    assert_eq!(
        rp_verify(&g, "demo-rp-secret", bare.proof.as_slice(), &device.id)
            .await
            .unwrap_err(),
        ApiError::CommandRefused {
            fault: "pinRequired".into()
        }
    );
    assert_eq!(
        rp_verify(&g, "wrong", horn.proof.as_slice(), &device.id)
            .await
            .unwrap_err(),
        ApiError::RelyingPartyUnauthorized
    );
    let other = g.s.enroll(&token, "1234").await.unwrap();
    assert_eq!(
        rp_verify(&g, "demo-rp-secret", horn.proof.as_slice(), &other.id)
            .await
            .unwrap_err(),
        ApiError::CommandRefused {
            fault: "unknownKey".into()
        }
    );
    // Revoked: refused at once.
    g.s.call::<ep::DeviceRevoke>(&[&device.id], &token, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        rp_verify(&g, "demo-rp-secret", horn.proof.as_slice(), &device.id)
            .await
            .unwrap_err(),
        ApiError::DeviceUnknown
    );
}

#[tokio::test]
async fn a_keychain_sync_answer_serves_only_the_question_it_was_signed_for() {
    let g = garage().await;
    let (token, device) = enrolled_account(&g.s, "alice", PHONE, "1234").await;
    g.pair(&token, &device).await;
    let keys = Keys::load(&g.s.config.key_file).unwrap();
    let cosign_key = keys.command_cosign.public_key().to_vec();
    let key_id = pims_command::key_id(&device.public_key());
    let ask = |account: &str| pims_proto::KeychainSync {
        nonce: vec![5; 32].into(),
        keys: vec![pims_proto::KeychainKey {
            account: account.into(),
            device_id: device.id.clone(),
            key_id: key_id.to_vec().into(),
        }],
    };
    // A relay that renames the owner's key gets "remove" for it — signed over the renamed
    // question, which is not the one the car asked.
    let renamed =
        g.s.call::<ep::VehicleKeychainSync>(&[VIN], "", &ask("x"))
            .await
            .unwrap();
    assert_eq!(renamed.remove.len(), 1);
    let question = |account: &str| {
        vec![pims_command::SyncedKey {
            account,
            device_id: &device.id,
            key_id: &key_id,
        }]
        .into_iter()
        .map(|k| {
            (
                k.account.to_string(),
                k.device_id.to_string(),
                k.key_id.to_vec(),
            )
        })
        .collect::<Vec<_>>()
    };
    let message = |account: &str, remove: &[[u8; 32]]| {
        let q = question(account);
        let asked: Vec<pims_command::SyncedKey<'_>> = q
            .iter()
            .map(|(a, d, k)| pims_command::SyncedKey {
                account: a,
                device_id: d,
                key_id: k,
            })
            .collect();
        pims_command::keychain_sync_message(VIN, &[5; 32], &asked, remove)
    };
    let sig = renamed.signature.as_slice();
    assert!(pims_command::signature_ok(
        &cosign_key,
        &message("x", &[key_id]),
        sig
    ));
    assert!(!pims_command::signature_ok(
        &cosign_key,
        &message("alice", &[key_id]),
        sig
    ));
    // The true question: nothing to remove, and that answer does not serve a shorter question.
    let honest =
        g.s.call::<ep::VehicleKeychainSync>(&[VIN], "", &ask("alice"))
            .await
            .unwrap();
    assert!(honest.remove.is_empty());
    let empty = pims_command::keychain_sync_message(VIN, &[5; 32], &[], &[]);
    assert!(!pims_command::signature_ok(
        &cosign_key,
        &empty,
        honest.signature.as_slice()
    ));
}

#[tokio::test]
async fn a_pairing_code_is_good_for_ten_minutes() {
    let g = garage().await;
    let (token, device) = enrolled_account(&g.s, "alice", PHONE, "1234").await;
    let code = g.car.new_pairing_code().unwrap();
    g.s.clock.advance(601);
    let mac = pairing_mac(&code, VIN, &device.public_key());
    let r =
        g.s.call::<ep::VehiclePair>(
            &[VIN],
            &token,
            &PairVehicle {
                device_id: device.id.clone(),
                mac: mac.to_vec().into(),
            },
        )
        .await;
    assert_eq!(r.unwrap_err(), ApiError::PairingRefused);
    assert!(!g.car.has_keys().unwrap());
}
