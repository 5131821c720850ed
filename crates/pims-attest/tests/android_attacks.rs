//! What an attacker sends instead of a fresh chain from a genuine phone, and what each policy
//! answers. The genuine chain is `caiman/sdk36/TEE_EC_RKP` (a Pixel 9 Pro: TEE, locked,
//! verified boot), which the strict policy accepts; each attack changes one thing.

mod common;

use common::{case_json, chain, unb64};
use der::{Decode, Encode, Tagged};
use pims_attest::{
    verify_android, AndroidApp, AndroidExpectations, Assurance, RevocationList, Rule,
    SecurityLevel, KEY_ATTESTATION_OID,
};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue, IsCa,
    Issuer, KeyPair,
};

const GENUINE: &str = "caiman/sdk36/TEE_EC_RKP";

fn genuine() -> Vec<Vec<u8>> {
    chain(&format!("{GENUINE}.pem"))
}

fn app(case: &str) -> AndroidApp {
    let json = case_json(case);
    let id = &json["softwareEnforced"]["attestationApplicationId"];
    AndroidApp {
        package_name: id["packages"][0]["name"].as_str().unwrap().into(),
        signature_digests: id["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| unb64(s.as_str().unwrap()))
            .collect(),
    }
}

fn challenge(case: &str) -> Vec<u8> {
    unb64(case_json(case)["attestationChallenge"].as_str().unwrap())
}

/// The policy the server would use for the genuine phone's enrollment.
fn strict() -> AndroidExpectations {
    AndroidExpectations::strict(challenge(GENUINE), vec![app(GENUINE)])
}

fn verify(chain: &[Vec<u8>], policy: &AndroidExpectations) -> Result<Assurance, Rule> {
    verify_android(chain, policy, &RevocationList::empty(), None)
        .map(|v| v.assurance)
        .map_err(|f| f.rule)
}

fn x509(der: &[u8]) -> x509_cert::Certificate {
    x509_cert::Certificate::from_der(der).unwrap()
}

/// The attestation extension's value in a certificate.
fn extension_of(der: &[u8]) -> Vec<u8> {
    let cert = x509(der);
    let ext = cert.tbs_certificate().extensions().unwrap();
    ext.iter()
        .find(|e| e.extn_id == KEY_ATTESTATION_OID)
        .unwrap()
        .extn_value
        .as_bytes()
        .to_vec()
}

fn attestation_extension(value: Vec<u8>) -> CustomExtension {
    CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 11129, 2, 1, 17], value)
}

/// An rcgen name equal to a certificate's subject (same attributes, order and string types).
fn same_name(der: &[u8]) -> DistinguishedName {
    let cert = x509(der);
    let mut dn = DistinguishedName::new();
    for atv in cert.tbs_certificate().subject().iter() {
        let oid: Vec<u64> = atv.oid.arcs().map(u64::from).collect();
        let text = String::from_utf8(atv.value.value().to_vec()).unwrap();
        let value = match atv.value.tag() {
            der::Tag::PrintableString => DnValue::PrintableString(text.try_into().unwrap()),
            _ => DnValue::Utf8String(text),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    dn
}

fn params(dn: DistinguishedName, ca: bool) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = dn;
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    p
}

fn name(pairs: &[(&[u64], &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (oid, value) in pairs {
        dn.push(
            DnType::from_oid(oid),
            DnValue::Utf8String(value.to_string()),
        );
    }
    dn
}

const SERIAL_NUMBER: &[u64] = &[2, 5, 4, 5];
const COMMON_NAME: &[u64] = &[2, 5, 4, 3];

#[test]
fn the_genuine_chain_passes_the_strict_policy() {
    assert_eq!(verify(&genuine(), &strict()), Ok(Assurance::Tee));
}

#[test]
fn a_genuine_chain_replayed_for_another_enrollment_or_key_is_refused() {
    // Another enrollment: the server's challenge for it differs.
    let mut other_session = strict();
    other_session.challenge = b"another enrollment session".to_vec();
    assert_eq!(verify(&genuine(), &other_session), Err(Rule::Challenge));
    // Another key: the chain certifies the phone's key, not the one being enrolled.
    let mut other_key = strict();
    other_key.public_key = Some(
        x509(&chain("tegu/sdk36/TEE_EC_2026_ROOT.pem")[0])
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap(),
    );
    assert_eq!(verify(&genuine(), &other_key), Err(Rule::PublicKey));
    let mut same_key = strict();
    same_key.public_key = Some(
        x509(&genuine()[0])
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap(),
    );
    assert_eq!(verify(&genuine(), &same_key), Ok(Assurance::Tee));
    // The same key as the uncompressed point a PIMS device sends.
    let point = x509(&genuine()[0])
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes()
        .to_vec();
    assert_eq!(point.len(), 65);
    same_key.public_key = Some(point);
    assert_eq!(verify(&genuine(), &same_key), Ok(Assurance::Tee));
}

#[test]
fn a_certificate_appended_after_the_attested_leaf_is_refused() {
    // The attacker's software key, "issued" by the genuine attested key (a Keystore signing key
    // can sign anything the app asks), with or without a fake attestation extension.
    let genuine = genuine();
    let attacker_key = KeyPair::generate().unwrap();
    let leaf_key = KeyPair::generate().unwrap(); // stands for the phone's key (not available)
    let issuer_params = params(same_name(&genuine[0]), false);
    let issuer = Issuer::from_params(&issuer_params, &leaf_key);
    for with_extension in [true, false] {
        let mut fake = params(name(&[(COMMON_NAME, "Android Keystore Key")]), false);
        if with_extension {
            fake.custom_extensions
                .push(attestation_extension(extension_of(&genuine[0])));
        }
        let fake = fake.signed_by(&attacker_key, &issuer).unwrap();
        let mut extended = vec![fake.der().to_vec()];
        extended.extend(genuine.iter().cloned());
        let fault =
            verify_android(&extended, &strict(), &RevocationList::empty(), None).unwrap_err();
        assert_eq!(fault.rule, Rule::ChainExtended, "{fault}");
        let lenient = AndroidExpectations::lenient(challenge(GENUINE));
        assert_eq!(verify(&extended, &lenient), Err(Rule::ChainExtended));
    }
    // The same on a factory chain (4 certificates).
    let factory = chain("blueline/sdk28/TEE_EC_NONE.pem");
    let issuer_params = params(same_name(&factory[0]), false);
    let issuer = Issuer::from_params(&issuer_params, &leaf_key);
    let mut fake = params(name(&[(COMMON_NAME, "Android Keystore Key")]), false);
    fake.custom_extensions
        .push(attestation_extension(extension_of(&factory[0])));
    let mut extended = vec![fake
        .signed_by(&attacker_key, &issuer)
        .unwrap()
        .der()
        .to_vec()];
    extended.extend(factory.iter().cloned());
    let lenient = AndroidExpectations::lenient(challenge("blueline/sdk28/TEE_EC_NONE"));
    assert_eq!(verify(&extended, &lenient), Err(Rule::ChainExtended));
}

#[test]
fn self_signed_chains_are_refused() {
    let extension = extension_of(&genuine()[0]);
    let lenient = AndroidExpectations::lenient(challenge(GENUINE));

    // One self-signed certificate carrying a copied (genuine) extension.
    let key = KeyPair::generate().unwrap();
    let mut alone = params(name(&[(COMMON_NAME, "Android Keystore Key")]), false);
    alone
        .custom_extensions
        .push(attestation_extension(extension.clone()));
    let alone = alone.self_signed(&key).unwrap().der().to_vec();
    assert_eq!(verify(&[alone], &lenient), Err(Rule::MalformedChain));

    // A whole factory-shaped chain under the attacker's own root, named as Google's root.
    let root_key = KeyPair::generate().unwrap();
    let root_params = params(name(&[(SERIAL_NUMBER, "f92009e853b6b045")]), true);
    let root = root_params.self_signed(&root_key).unwrap();
    let inter_key = KeyPair::generate().unwrap();
    let inter_params = params(name(&[(SERIAL_NUMBER, "e18c4f2ca699739a")]), true);
    let inter = inter_params
        .signed_by(&inter_key, &Issuer::from_params(&root_params, &root_key))
        .unwrap();
    let att_key = KeyPair::generate().unwrap();
    let att_params = params(name(&[(SERIAL_NUMBER, "a0b63a35743673b7")]), true);
    let att = att_params
        .signed_by(&att_key, &Issuer::from_params(&inter_params, &inter_key))
        .unwrap();
    let mut leaf = params(name(&[(COMMON_NAME, "Android Keystore Key")]), false);
    leaf.custom_extensions
        .push(attestation_extension(extension.clone()));
    let leaf = leaf
        .signed_by(
            &KeyPair::generate().unwrap(),
            &Issuer::from_params(&att_params, &att_key),
        )
        .unwrap();
    let forged: Vec<Vec<u8>> = [leaf.der(), att.der(), inter.der(), root.der()]
        .iter()
        .map(|c| c.to_vec())
        .collect();
    let fault = verify_android(&forged, &lenient, &RevocationList::empty(), None).unwrap_err();
    assert_eq!(fault.rule, Rule::UntrustedRoot, "{fault}");

    // The genuine chain with its root swapped for a self-signed one of the same name.
    let mut swapped = genuine();
    let last = swapped.len() - 1;
    swapped[last] = params(same_name(&swapped[last]), true)
        .self_signed(&KeyPair::generate().unwrap())
        .unwrap()
        .der()
        .to_vec();
    assert_eq!(verify(&swapped, &lenient), Err(Rule::UntrustedRoot));

    // The genuine chain with its leaf re-signed by the attacker (same names, its own key).
    let mut resigned = genuine();
    let mut leaf = params(same_name(&resigned[0]), false);
    leaf.custom_extensions
        .push(attestation_extension(extension));
    let att_params = params(same_name(&resigned[1]), false);
    resigned[0] = leaf
        .signed_by(
            &KeyPair::generate().unwrap(),
            &Issuer::from_params(&att_params, &KeyPair::generate().unwrap()),
        )
        .unwrap()
        .der()
        .to_vec();
    assert_eq!(verify(&resigned, &lenient), Err(Rule::Signature));
}

#[test]
fn a_tampered_signature_is_refused() {
    let mut tampered = genuine();
    let cert = &mut tampered[2];
    let last = cert.len() - 1;
    cert[last] ^= 0x01;
    assert_eq!(verify(&tampered, &strict()), Err(Rule::Signature));
}

#[test]
fn software_root_chains_are_refused_by_the_strict_policy_and_recorded_as_software() {
    let case = "marlin/sdk29/TEE_EC_NONE";
    let der = chain(&format!("{case}.pem"));
    let strict = AndroidExpectations::strict(challenge(case), vec![app(case)]);
    assert_eq!(verify(&der, &strict), Err(Rule::SoftwareRoot));
    let lenient = AndroidExpectations::lenient(challenge(case));
    assert_eq!(verify(&der, &lenient), Ok(Assurance::Software));
    // A policy that accepts the software root but requires a TEE still refuses it.
    let mut tee = lenient.clone();
    tee.min_security_level = SecurityLevel::TrustedEnvironment;
    assert_eq!(verify(&der, &tee), Err(Rule::SecurityLevel));
}

fn serial_hex(der: &[u8]) -> String {
    let hex: String = x509(der)
        .tbs_certificate()
        .serial_number()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    hex.trim_start_matches('0').to_string()
}

#[test]
fn a_chain_with_a_revoked_serial_is_refused() {
    let genuine = genuine();
    let attestation_serial = serial_hex(&genuine[1]);
    let list = |entries: &str| RevocationList::from_json(entries.as_bytes()).unwrap();
    let refused = |revoked: &RevocationList| {
        verify_android(&genuine, &strict(), revoked, None)
            .map(|v| v.assurance)
            .map_err(|f| f.rule)
    };
    let revoked = list(&format!(
        r#"{{"entries": {{"{attestation_serial}": {{"status": "REVOKED", "reason": "KEY_COMPROMISE"}},
            "2c8cdddfd5e03bfc": {{"status": "REVOKED", "reason": "KEY_COMPROMISE"}}}}}}"#
    ));
    assert_eq!(revoked.len(), 2);
    assert_eq!(refused(&revoked), Err(Rule::Revoked));
    let fault = verify_android(&genuine, &strict(), &revoked, None).unwrap_err();
    assert!(fault.detail.contains("KEY_COMPROMISE"), "{fault}");
    // Any certificate of the chain: the Droid CA3 intermediate, written in capitals with a
    // leading zero.
    let intermediate = format!("0{}", serial_hex(&genuine[2]).to_uppercase());
    assert_eq!(
        refused(&list(&format!(
            r#"{{"entries": {{"{intermediate}": {{"status": "REVOKED"}}}}}}"#
        ))),
        Err(Rule::Revoked)
    );
    // Suspended is refused too.
    assert_eq!(
        refused(&list(&format!(
            r#"{{"entries": {{"{attestation_serial}": {{"status": "SUSPENDED", "reason": "SOFTWARE_FLAW"}}}}}}"#
        ))),
        Err(Rule::Revoked)
    );
    // A list naming other serials only.
    assert_eq!(
        refused(&list(
            r#"{"entries": {"2c8cdddfd5e03bfc": {"status": "REVOKED"}}}"#
        )),
        Ok(Assurance::Tee)
    );
    // Not Google's format: an error, never an empty list.
    assert!(RevocationList::from_json(b"{\"revoked\": []}").is_err());
    assert!(RevocationList::from_json(b"").is_err());
}

#[test]
fn an_attestation_for_another_app_is_refused() {
    let genuine_app = app(GENUINE);
    let mut other_package = genuine_app.clone();
    other_package.package_name = "com.example.other".into();
    let mut other_signer = genuine_app.clone();
    other_signer.signature_digests = vec![vec![0x42; 32]];
    for apps in [vec![other_package], vec![other_signer]] {
        let policy = AndroidExpectations::strict(challenge(GENUINE), apps);
        assert_eq!(verify(&genuine(), &policy), Err(Rule::ApplicationId));
    }
    // Either of two allowed apps.
    let policy = AndroidExpectations::strict(
        challenge(GENUINE),
        vec![
            AndroidApp {
                package_name: "com.example.other".into(),
                signature_digests: vec![vec![1; 32]],
            },
            genuine_app,
        ],
    );
    assert_eq!(verify(&genuine(), &policy), Ok(Assurance::Tee));
}

#[test]
fn user_authentication_boot_keys_and_patch_level_are_checked_when_asked() {
    // userAuthType = 1 (device credential) on this key, none on the other.
    let userauth = "akita/sdk34/TEE_RSA_NONE_USERAUTH";
    let mut policy = AndroidExpectations::lenient(challenge(userauth));
    policy.user_auth_types = Some(1 | 2);
    assert_eq!(
        verify(&chain(&format!("{userauth}.pem")), &policy),
        Ok(Assurance::Tee)
    );
    policy.user_auth_types = Some(2);
    assert_eq!(
        verify(&chain(&format!("{userauth}.pem")), &policy),
        Err(Rule::UserAuth)
    );
    let mut policy = AndroidExpectations::lenient(challenge(GENUINE));
    policy.user_auth_types = Some(1);
    assert_eq!(verify(&genuine(), &policy), Err(Rule::UserAuth));

    // Allowed boot keys (tegu: VERIFIED with its OEM key).
    let tegu = "tegu/sdk36/TEE_EC_2026_ROOT";
    let boot_key = unb64(
        case_json(tegu)["hardwareEnforced"]["rootOfTrust"]["verifiedBootKey"]
            .as_str()
            .unwrap(),
    );
    let mut policy = AndroidExpectations::strict(challenge(tegu), vec![app(tegu)]);
    policy.boot.allowed_boot_keys = Some(vec![boot_key]);
    assert_eq!(
        verify(&chain(&format!("{tegu}.pem")), &policy),
        Ok(Assurance::Tee)
    );
    policy.boot.allowed_boot_keys = Some(vec![vec![9; 32]]);
    assert_eq!(
        verify(&chain(&format!("{tegu}.pem")), &policy),
        Err(Rule::RootOfTrust)
    );

    // OS patch level floor (caiman: 202511).
    let mut policy = strict();
    policy.min_os_patch_level = Some(202511);
    assert_eq!(verify(&genuine(), &policy), Ok(Assurance::Tee));
    policy.min_os_patch_level = Some(202512);
    assert_eq!(verify(&genuine(), &policy), Err(Rule::PatchLevel));
}
