//! Damaged input never panics and is never accepted: every single-byte change to a signed
//! certificate of a genuine chain is refused, and damaged App Attest objects and assertions are
//! refused or, where the byte is not covered by anything Apple signs (the receipt), accepted
//! unchanged in meaning.

mod common;

use common::{app_attest_docs, chain, rfc3339, unb64};
use pims_attest::{
    verify_android, verify_app_attest, AndroidExpectations, AppAttestEnvironment,
    AppAttestExpectations, RevocationList,
};

#[test]
fn every_byte_flip_in_a_signed_certificate_is_refused() {
    for case in ["caiman/sdk36/TEE_EC_RKP", "blueline/sdk28/TEE_RSA_NONE"] {
        let genuine = chain(&format!("{case}.pem"));
        let json = common::case_json(case);
        let policy =
            AndroidExpectations::lenient(unb64(json["attestationChallenge"].as_str().unwrap()));
        let none = RevocationList::empty();
        assert!(verify_android(&genuine, &policy, &none, None).is_ok());
        // Every certificate but the root (the anchor is its key, not its bytes).
        for i in 0..genuine.len() - 1 {
            for pos in 0..genuine[i].len() {
                let mut damaged = genuine.clone();
                damaged[i][pos] ^= 0x01;
                assert!(
                    verify_android(&damaged, &policy, &none, None).is_err(),
                    "{case}: certificate {i} byte {pos} flipped was accepted"
                );
            }
        }
        // The root: any change to its key is refused; nothing panics.
        let last = genuine.len() - 1;
        for pos in 0..genuine[last].len() {
            let mut damaged = genuine.clone();
            damaged[last][pos] ^= 0x01;
            let _ = verify_android(&damaged, &policy, &none, None);
        }
        // Truncations of any certificate.
        for i in 0..genuine.len() {
            for len in (0..genuine[i].len()).step_by(7) {
                let mut damaged = genuine.clone();
                damaged[i].truncate(len);
                assert!(verify_android(&damaged, &policy, &none, None).is_err());
            }
        }
    }
}

#[test]
fn damaged_app_attest_objects_never_panic_and_signed_bytes_are_refused() {
    let doc = app_attest_docs()
        .into_iter()
        .find(|d| d.get("type") == "attestation")
        .unwrap();
    let object = unb64(doc.get("attestationBase64"));
    let expected = AppAttestExpectations {
        team_id: doc.get("teamIdentifier").into(),
        bundle_id: doc.get("bundleIdentifier").into(),
        environment: AppAttestEnvironment::Development,
        client_data_hash: unb64(doc.get("clientDataHashSha256Base64")),
        key_id: Some(unb64(doc.get("keyIdBase64"))),
    };
    let at = Some(rfc3339(doc.get("timestamp")));
    let genuine = verify_app_attest(&object, &expected, at).unwrap();
    // Where the receipt lies: Apple signs it separately (for its fraud service), the
    // attestation does not cover it.
    let receipt_start = object
        .windows(genuine.receipt.len())
        .position(|w| w == genuine.receipt.as_slice())
        .unwrap();
    let receipt = receipt_start..receipt_start + genuine.receipt.len();
    let mut accepted = 0;
    for pos in 0..object.len() {
        let mut damaged = object.clone();
        damaged[pos] ^= 0x01;
        if let Ok(v) = verify_app_attest(&damaged, &expected, at) {
            accepted += 1;
            assert!(receipt.contains(&pos), "byte {pos} flipped was accepted");
            assert_eq!(v.key_id, genuine.key_id);
            assert_eq!(v.public_key, genuine.public_key);
        }
    }
    assert!(accepted <= genuine.receipt.len());
    for len in (0..object.len()).step_by(13) {
        assert!(verify_app_attest(&object[..len], &expected, at).is_err());
    }
}
