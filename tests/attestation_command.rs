//! `pims attestation verify` on real vectors (copied under crates/pims-attest/tests/vectors):
//! what a genuine phone's chain proves, and the rule that refuses a wrong one.

use std::path::PathBuf;
use std::process::{Command, Output};

use base64::Engine;

fn vector(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("crates/pims-attest/tests/vectors")
        .join(relative)
}

fn verify(file: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pims"))
        .args(["attestation", "verify"])
        .arg(file)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json(relative: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(vector(relative)).unwrap()).unwrap()
}

/// The Pixel 9 Pro TEE chain (RKP, locked, verified boot), with the app its key attests.
const CHAIN: &str = "android-key-attestation/caiman/sdk36/TEE_EC_RKP";

fn genuine_args() -> Vec<String> {
    let expected = json(&format!("{CHAIN}.json"));
    let app = &expected["softwareEnforced"]["attestationApplicationId"];
    vec![
        "--challenge-base64".into(),
        expected["attestationChallenge"].as_str().unwrap().into(),
        "--package".into(),
        app["packages"][0]["name"].as_str().unwrap().into(),
        "--cert-digest".into(),
        app["signatures"][0].as_str().unwrap().into(),
    ]
}

#[test]
fn a_genuine_chain_prints_what_it_proves_and_a_wrong_challenge_the_rule() {
    let pem = vector(&format!("{CHAIN}.pem"));
    let args = genuine_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = verify(&pem, &args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("assurance: tee\n"), "{text}");
    assert!(
        text.contains("root: google-rsa-4096 (remote provisioning)\n"),
        "{text}"
    );
    assert!(text.contains("boot: locked, VERIFIED"), "{text}");
    assert!(text.contains("(the key's creation time)"), "{text}");
    assert!(
        text.contains("app: com.google.android.attestation (version 0) signed by 103938ee"),
        "{text}"
    );

    // The same chain as base64 DER lines.
    let dir = tempfile::tempdir().unwrap();
    let certs = pims_attest::pem_certificates(&std::fs::read_to_string(&pem).unwrap()).unwrap();
    let lines: Vec<String> = certs
        .iter()
        .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
        .collect();
    let b64 = dir.path().join("chain.b64");
    std::fs::write(&b64, lines.join("\n")).unwrap();
    let out = verify(&b64, &args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("assurance: tee\n"));

    // Another enrollment's challenge.
    let mut wrong = args.clone();
    wrong[1] = "YW5vdGhlciBlbnJvbGxtZW50";
    let out = verify(&pem, &wrong);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.starts_with("refused: challenge: attested challenge "),
        "{text}"
    );
    assert!(text.contains("\nrule: challenge\n"), "{text}");

    // Today (2026-12) the chain's RKP intermediates have long expired.
    let mut today = args.clone();
    today.extend(["--at", "2026-12-07T00:00:00Z"]);
    let out = verify(&pem, &today);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).contains("\nrule: validity\n"));

    // A revocation list naming the serial of the chain's Droid CA3 intermediate.
    let serial =
        pims_attest::verify_android_chain(&certs, &pims_attest::RevocationList::empty(), None)
            .unwrap()
            .serials[2]
            .clone();
    let list = dir.path().join("status.json");
    std::fs::write(
        &list,
        format!(
            r#"{{"entries": {{"{serial}": {{"status": "REVOKED", "reason": "KEY_COMPROMISE"}}}}}}"#
        ),
    )
    .unwrap();
    let mut revoked = args.clone();
    revoked.extend(["--revocation-list", list.to_str().unwrap()]);
    let out = verify(&pem, &revoked);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout(&out).contains("\nrule: revoked\n"),
        "{}",
        stdout(&out)
    );

    // Another app.
    let mut other_app = args.clone();
    other_app[3] = "com.example.other";
    let out = verify(&pem, &other_app);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("\nrule: application-id\n"));
}

#[test]
fn an_app_attest_object_verifies_with_its_app_and_not_in_the_other_environment() {
    // The first attestation of ios-14.2.yaml (development, team 6MURL8TA57).
    let yaml = std::fs::read_to_string(vector("apple-app-attest/ios-14.2.yaml")).unwrap();
    let object = yaml
        .lines()
        .find_map(|l| l.strip_prefix("attestationBase64: "))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("attestation.b64");
    std::fs::write(&file, object).unwrap();
    let args = [
        "--challenge",
        "wurzelpfropf",
        "--sha256-challenge",
        "--team",
        "6MURL8TA57",
        "--bundle",
        "de.vincent-haupert.apple-appattest-poc",
    ];
    let mut development = args.to_vec();
    development.extend(["--environment", "development"]);
    let out = verify(&file, &development);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("assurance: secure-enclave\n"), "{text}");
    assert!(
        text.contains("key id: 2o0syRGn1HDKDv85d522XBC9nLqrHWHGnt/mJ5hWMQM=\n"),
        "{text}"
    );

    // Production is the default environment: this development build is refused.
    let out = verify(&file, &args);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout(&out).contains("\nrule: environment\n"),
        "{}",
        stdout(&out)
    );

    // Another team.
    let mut other_team = development.clone();
    other_team[4] = "ABCDE12345";
    let out = verify(&file, &other_team);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("\nrule: rp-id-hash\n"));
}
