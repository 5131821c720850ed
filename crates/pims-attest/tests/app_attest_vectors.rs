//! Every App Attest attestation and assertion under `tests/vectors/apple-app-attest` (real
//! iPhones, development environment) and Apple's own guide sample (production): each verifies
//! with its stated team, bundle and environment, and fails with any of them changed.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::{app_attest_docs, rfc3339, unb64, YamlDoc};
use pims_attest::{
    verify_app_attest, verify_app_attest_assertion, AppAttestAssertionExpectations,
    AppAttestEnvironment, AppAttestExpectations, Assurance, Rule,
};

fn expectations(doc: &YamlDoc) -> AppAttestExpectations {
    AppAttestExpectations {
        team_id: doc.get("teamIdentifier").into(),
        bundle_id: doc.get("bundleIdentifier").into(),
        environment: AppAttestEnvironment::parse(doc.get("environment")).unwrap(),
        client_data_hash: unb64(doc.get("clientDataHashSha256Base64")),
        key_id: Some(unb64(doc.get("keyIdBase64"))),
    }
}

fn attestations() -> Vec<YamlDoc> {
    app_attest_docs()
        .into_iter()
        .filter(|d| d.get("type") == "attestation")
        .collect()
}

fn assertions() -> Vec<YamlDoc> {
    app_attest_docs()
        .into_iter()
        .filter(|d| d.get("type") == "assertion")
        .collect()
}

/// The SubjectPublicKeyInfo of the `publicKey` PEM block in a document's file.
fn stated_public_key(doc: &YamlDoc) -> Vec<u8> {
    let text = std::fs::read_to_string(common::vectors().join("apple-app-attest").join(&doc.file))
        .unwrap();
    // The first PUBLIC KEY block after this document's key id.
    let key_id = doc.get("keyIdBase64");
    let at = text.find(key_id).unwrap();
    let block = &text[at..];
    let begin = block.find("-----BEGIN PUBLIC KEY-----").unwrap() + 26;
    let end = block.find("-----END PUBLIC KEY-----").unwrap();
    let body: String = block[begin..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    unb64(&body)
}

#[test]
fn every_attestation_verifies_with_its_team_bundle_and_environment() {
    let docs = attestations();
    assert_eq!(docs.len(), 5);
    for doc in &docs {
        let object = unb64(doc.get("attestationBase64"));
        let at = Some(rfc3339(doc.get("timestamp")));
        let verdict = verify_app_attest(&object, &expectations(doc), at)
            .unwrap_or_else(|e| panic!("{}: {e}", doc.file));
        assert_eq!(verdict.assurance, Assurance::SecureEnclave);
        assert_eq!(verdict.assurance.as_str(), "secure-enclave");
        assert_eq!(verdict.environment, AppAttestEnvironment::Development);
        assert_eq!(
            verdict.key_id,
            unb64(doc.get("keyIdBase64")),
            "{}",
            doc.file
        );
        assert_eq!(
            verdict.public_key_spki,
            stated_public_key(doc),
            "{}",
            doc.file
        );
        assert_eq!(verdict.counter, 0);
        assert!(!verdict.receipt.is_empty());
        // Without a time: the credential certificate's start.
        verify_app_attest(&object, &expectations(doc), None).unwrap();
    }
}

#[test]
fn every_attestation_fails_with_team_bundle_environment_challenge_or_key_changed() {
    for doc in &attestations() {
        let object = unb64(doc.get("attestationBase64"));
        let at = Some(rfc3339(doc.get("timestamp")));
        let fails = |change: &dyn Fn(&mut AppAttestExpectations)| {
            let mut e = expectations(doc);
            change(&mut e);
            verify_app_attest(&object, &e, at).unwrap_err().rule
        };
        assert_eq!(
            fails(&|e| e.team_id = "ABCDE12345".into()),
            Rule::RpIdHash,
            "{}",
            doc.file
        );
        assert_eq!(
            fails(&|e| e.bundle_id = "com.example.other".into()),
            Rule::RpIdHash
        );
        assert_eq!(
            fails(&|e| e.environment = AppAttestEnvironment::Production),
            Rule::Environment
        );
        assert_eq!(fails(&|e| e.client_data_hash = vec![0; 32]), Rule::Nonce);
        assert_eq!(fails(&|e| e.key_id = Some(vec![7; 32])), Rule::KeyId);
        // Years later the credential certificate (valid three days) has expired.
        let late = Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        assert_eq!(
            verify_app_attest(&object, &expectations(doc), late)
                .unwrap_err()
                .rule,
            Rule::AppleChain
        );
    }
}

#[test]
fn every_assertion_verifies_with_the_attested_key_and_fails_with_team_bundle_or_environment_changed(
) {
    let attestations = attestations();
    let docs = assertions();
    assert_eq!(docs.len(), 5);
    for doc in &docs {
        // The key comes from the attestation of the same key id (and environment).
        let attestation = attestations
            .iter()
            .find(|a| a.get("keyIdBase64") == doc.get("keyIdBase64"))
            .unwrap();
        let attested = verify_app_attest(
            &unb64(attestation.get("attestationBase64")),
            &expectations(attestation),
            Some(rfc3339(attestation.get("timestamp"))),
        )
        .unwrap();
        let assertion = unb64(doc.get("assertionBase64"));
        let client_data = unb64(doc.get("clientDataBase64"));
        let expected = AppAttestAssertionExpectations {
            team_id: doc.get("teamIdentifier").into(),
            bundle_id: doc.get("bundleIdentifier").into(),
            public_key: attested.public_key.clone(),
            previous_counter: attested.counter,
        };
        let verdict = verify_app_attest_assertion(&assertion, &client_data, &expected)
            .unwrap_or_else(|e| panic!("{}: {e}", doc.file));
        assert_eq!(verdict.counter.to_string(), doc.get("counter"));

        let fails = |change: &dyn Fn(&mut AppAttestAssertionExpectations), data: &[u8]| {
            let mut e = expected.clone();
            change(&mut e);
            verify_app_attest_assertion(&assertion, data, &e)
                .unwrap_err()
                .rule
        };
        assert_eq!(
            fails(&|e| e.team_id = "ABCDE12345".into(), &client_data),
            Rule::RpIdHash
        );
        assert_eq!(
            fails(&|e| e.bundle_id = "com.example.other".into(), &client_data),
            Rule::RpIdHash
        );
        // Replayed: the counter must grow past the stored one.
        assert_eq!(
            fails(&|e| e.previous_counter = verdict.counter, &client_data),
            Rule::Counter
        );
        // Another request, or another key.
        assert_eq!(fails(&|_| {}, b"another request"), Rule::AssertionSignature);
        let other = attestations
            .iter()
            .find(|a| a.get("keyIdBase64") != doc.get("keyIdBase64"))
            .unwrap();
        let other_key = verify_app_attest(
            &unb64(other.get("attestationBase64")),
            &expectations(other),
            Some(rfc3339(other.get("timestamp"))),
        )
        .unwrap()
        .public_key;
        assert_eq!(
            fails(&|e| e.public_key = other_key.clone(), &client_data),
            Rule::AssertionSignature
        );
        // An assertion carries no environment: it is bound at attestation, where the other
        // environment is refused, so no key exists to check the assertion with.
        let mut production = expectations(attestation);
        production.environment = AppAttestEnvironment::Production;
        assert_eq!(
            verify_app_attest(
                &unb64(attestation.get("attestationBase64")),
                &production,
                Some(rfc3339(attestation.get("timestamp")))
            )
            .unwrap_err()
            .rule,
            Rule::Environment
        );
    }
}

fn apple_guide() -> Vec<u8> {
    let text =
        std::fs::read_to_string(common::vectors().join("apple-guide/attestation-object.b64"))
            .unwrap();
    unb64(text.trim())
}

fn apple_guide_expectations() -> AppAttestExpectations {
    AppAttestExpectations {
        team_id: "1234567890".into(),
        bundle_id: "com.example.myapp".into(),
        environment: AppAttestEnvironment::Production,
        // Apple's sample passes the raw challenge as clientDataHash.
        client_data_hash: b"example_server_challenge".to_vec(),
        key_id: Some(unb64("zgSY9YSD+7TaDXssY6WlOPVS1K3Lmk+pFhlcSWE+ZV0=")),
    }
}

#[test]
fn apples_sample_verifies_although_its_authenticator_data_has_extensions_without_the_flag() {
    let at = Some(rfc3339("2026-04-21T18:13:12Z"));
    let verdict = verify_app_attest(&apple_guide(), &apple_guide_expectations(), at).unwrap();
    assert_eq!(verdict.environment, AppAttestEnvironment::Production);
    assert_eq!(verdict.assurance, Assurance::SecureEnclave);
    assert_eq!(verdict.counter, 0);

    let fails = |change: &dyn Fn(&mut AppAttestExpectations)| {
        let mut e = apple_guide_expectations();
        change(&mut e);
        verify_app_attest(&apple_guide(), &e, at).unwrap_err().rule
    };
    assert_eq!(fails(&|e| e.team_id = "0987654321".into()), Rule::RpIdHash);
    assert_eq!(
        fails(&|e| e.bundle_id = "com.example.other".into()),
        Rule::RpIdHash
    );
    assert_eq!(
        fails(&|e| e.environment = AppAttestEnvironment::Development),
        Rule::Environment
    );
    // Hashing the challenge (what most apps do) is not what this sample did.
    use sha2::Digest;
    assert_eq!(
        fails(&|e| e.client_data_hash = sha2::Sha256::digest(b"example_server_challenge").to_vec()),
        Rule::Nonce
    );
}

#[test]
fn a_non_attestation_object_is_malformed() {
    let e = apple_guide_expectations();
    assert_eq!(
        verify_app_attest(b"not cbor", &e, None).unwrap_err().rule,
        Rule::MalformedObject
    );
    // A CBOR map of another format.
    let mut other = Vec::new();
    ciborium::ser::into_writer(
        &ciborium::value::Value::Map(vec![("fmt".into(), "packed".into())]),
        &mut other,
    )
    .unwrap();
    assert_eq!(
        verify_app_attest(&other, &e, None).unwrap_err().rule,
        Rule::MalformedObject
    );
}
