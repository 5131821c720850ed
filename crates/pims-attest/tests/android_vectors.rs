//! Every real chain under `tests/vectors/android-key-attestation`, verified at its key's
//! creation time through the same function the server uses: the parsed extension equals the
//! `.json` Google's verifier wrote beside it, and each chain gets the expected verdict from a
//! lenient and from a strict policy.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::{b64, case_json, chain, unb64};
use pims_attest::{
    verify_android, verify_android_chain, AndroidApp, AndroidExpectations, AndroidRoot, Assurance,
    AuthorizationList, KeyDescription, Provisioning, RevocationList, Rule, SecurityLevel,
};
use serde_json::{json, Map, Value};

/// The extension in the JSON form of Google's verifier's test data.
fn google_json(kd: &KeyDescription) -> Value {
    json!({
        "attestationVersion": kd.attestation_version.to_string(),
        "attestationSecurityLevel": kd.attestation_security_level.as_str(),
        "keyMintVersion": kd.keymint_version.to_string(),
        "keyMintSecurityLevel": kd.keymint_security_level.as_str(),
        "attestationChallenge": b64(&kd.attestation_challenge),
        "uniqueId": b64(&kd.unique_id),
        "softwareEnforced": list_json(&kd.software_enforced),
        "hardwareEnforced": list_json(&kd.hardware_enforced),
    })
}

fn list_json(list: &AuthorizationList) -> Value {
    let mut m = Map::new();
    let int = |m: &mut Map<String, Value>, k: &str, v: Option<u64>| {
        if let Some(v) = v {
            m.insert(k.into(), json!(v.to_string()));
        }
    };
    let set = |m: &mut Map<String, Value>, k: &str, v: &Option<Vec<u64>>| {
        if let Some(v) = v {
            let mut v: Vec<String> = v.iter().map(u64::to_string).collect();
            v.sort();
            m.insert(k.into(), json!(v));
        }
    };
    let flag = |m: &mut Map<String, Value>, k: &str, v: bool| {
        if v {
            m.insert(k.into(), json!(true));
        }
    };
    let text = |m: &mut Map<String, Value>, k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    };
    set(&mut m, "purposes", &list.purposes);
    int(&mut m, "algorithms", list.algorithm);
    int(&mut m, "keySize", list.key_size);
    set(&mut m, "blockModes", &list.block_modes);
    set(&mut m, "digests", &list.digests);
    set(&mut m, "paddings", &list.paddings);
    int(&mut m, "ecCurve", list.ec_curve);
    int(&mut m, "mlDsaVariant", list.ml_dsa_variant);
    int(&mut m, "rsaPublicExponent", list.rsa_public_exponent);
    set(&mut m, "rsaOaepMgfDigests", &list.rsa_oaep_mgf_digests);
    int(&mut m, "activeDateTime", list.active_date_time);
    int(
        &mut m,
        "originationExpireDateTime",
        list.origination_expire_date_time,
    );
    int(&mut m, "usageExpireDateTime", list.usage_expire_date_time);
    int(&mut m, "usageCountLimit", list.usage_count_limit);
    flag(&mut m, "noAuthRequired", list.no_auth_required);
    int(&mut m, "userAuthType", list.user_auth_type);
    int(&mut m, "authTimeout", list.auth_timeout);
    flag(&mut m, "allowWhileOnBody", list.allow_while_on_body);
    flag(
        &mut m,
        "trustedUserPresenceRequired",
        list.trusted_user_presence_required,
    );
    flag(
        &mut m,
        "trustedConfirmationRequired",
        list.trusted_confirmation_required,
    );
    flag(
        &mut m,
        "unlockedDeviceRequired",
        list.unlocked_device_required,
    );
    int(&mut m, "creationDateTime", list.creation_date_time);
    if let Some(origin) = list.origin {
        m.insert("origin".into(), json!(origin.as_str()));
    }
    flag(&mut m, "rollbackResistant", list.rollback_resistant);
    if let Some(rot) = &list.root_of_trust {
        let mut r = json!({
            "verifiedBootKey": b64(&rot.verified_boot_key),
            "deviceLocked": rot.device_locked,
            "verifiedBootState": rot.verified_boot_state.as_str(),
        });
        if let Some(hash) = &rot.verified_boot_hash {
            r["verifiedBootHash"] = json!(b64(hash));
        }
        m.insert("rootOfTrust".into(), r);
    }
    int(&mut m, "osVersion", list.os_version);
    int(&mut m, "osPatchLevel", list.os_patch_level);
    if let Some(app) = &list.attestation_application_id {
        let mut packages: Vec<Value> = app
            .packages
            .iter()
            .map(|p| json!({"name": p.name, "version": p.version.to_string()}))
            .collect();
        packages.sort_by_key(|p| p.to_string());
        let mut signatures: Vec<String> = app.signature_digests.iter().map(|d| b64(d)).collect();
        signatures.sort();
        m.insert(
            "attestationApplicationId".into(),
            json!({"packages": packages, "signatures": signatures}),
        );
    }
    text(&mut m, "attestationIdBrand", &list.attestation_id_brand);
    text(&mut m, "attestationIdDevice", &list.attestation_id_device);
    text(&mut m, "attestationIdProduct", &list.attestation_id_product);
    text(&mut m, "attestationIdSerial", &list.attestation_id_serial);
    text(&mut m, "attestationIdImei", &list.attestation_id_imei);
    text(&mut m, "attestationIdMeid", &list.attestation_id_meid);
    text(
        &mut m,
        "attestationIdManufacturer",
        &list.attestation_id_manufacturer,
    );
    text(&mut m, "attestationIdModel", &list.attestation_id_model);
    int(&mut m, "vendorPatchLevel", list.vendor_patch_level);
    int(&mut m, "bootPatchLevel", list.boot_patch_level);
    text(
        &mut m,
        "attestationIdSecondImei",
        &list.attestation_id_second_imei,
    );
    if let Some(hash) = &list.module_hash {
        m.insert("moduleHash".into(), json!(b64(hash)));
    }
    // Google's JSON states tag order only sometimes, and only as `true`.
    if !list.tags_in_order {
        m.insert("areTagsOrdered".into(), json!(false));
    }
    assert!(
        list.unknown_tags.is_empty(),
        "unknown tags {:?}",
        list.unknown_tags
    );
    Value::Object(m)
}

/// The expected JSON with sets sorted and `areTagsOrdered: true` (the default) dropped.
fn normalise(mut v: Value) -> Value {
    for list in ["softwareEnforced", "hardwareEnforced"] {
        let m = v[list].as_object_mut().unwrap();
        if m.get("areTagsOrdered") == Some(&json!(true)) {
            m.remove("areTagsOrdered");
        }
        for key in [
            "purposes",
            "blockModes",
            "digests",
            "paddings",
            "rsaOaepMgfDigests",
        ] {
            if let Some(Value::Array(a)) = m.get_mut(key) {
                a.sort_by_key(|x| x.as_str().unwrap().to_string());
            }
        }
        if let Some(app) = m.get_mut("attestationApplicationId") {
            if let Some(Value::Array(p)) = app.get_mut("packages") {
                p.sort_by_key(|x| json!({"name": x["name"], "version": x["version"]}).to_string());
            }
            if let Some(Value::Array(s)) = app.get_mut("signatures") {
                s.sort_by_key(|x| x.as_str().unwrap().to_string());
            }
        }
    }
    v
}

/// The app a case's own attestation names (so that a strict policy checks everything else).
fn own_app(case: &str) -> Vec<AndroidApp> {
    let json = case_json(case);
    let app = &json["softwareEnforced"]["attestationApplicationId"];
    vec![AndroidApp {
        package_name: app["packages"][0]["name"].as_str().unwrap().into(),
        signature_digests: app["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| unb64(s.as_str().unwrap()))
            .collect(),
    }]
}

fn challenge(case: &str) -> Vec<u8> {
    unb64(case_json(case)["attestationChallenge"].as_str().unwrap())
}

#[test]
fn every_chain_verifies_at_its_creation_time_and_parses_as_googles_json() {
    let cases = common::android_cases();
    assert_eq!(cases.len(), 19, "{cases:?}");
    for case in &cases {
        let attested = verify_android_chain(
            &chain(&format!("{case}.pem")),
            &RevocationList::empty(),
            None,
        )
        .unwrap_or_else(|e| panic!("{case}: {e}"));
        let created = attested.key_description.creation_time_millis().unwrap();
        assert_eq!(
            attested.verified_at,
            UNIX_EPOCH + Duration::from_millis(created),
            "{case}"
        );
        assert_eq!(
            google_json(&attested.key_description),
            normalise(case_json(case)),
            "{case}"
        );
    }
}

/// (case, lenient assurance, root, provisioning, factory certificates expired at creation,
/// strict verdict: Ok(assurance) or the rule that refuses).
type Row = (
    &'static str,
    Assurance,
    AndroidRoot,
    Provisioning,
    usize,
    Result<Assurance, Rule>,
);

const TABLE: &[Row] = {
    use AndroidRoot::{AospSoftware as Sw, GoogleKeyAttestationCa1 as Ca1, GoogleRsa4096 as Rsa};
    use Assurance::{Software, StrongBox, Tee};
    use Provisioning::{Factory, Remote, Unknown};
    &[
        (
            "akita/sdk34/SB_RSA_NONE",
            StrongBox,
            Rsa,
            Remote,
            0,
            Err(Rule::KeyProperties),
        ),
        (
            "akita/sdk34/TEE_EC_NONE",
            Tee,
            Rsa,
            Remote,
            0,
            Err(Rule::RootOfTrust),
        ),
        (
            "akita/sdk34/TEE_RSA_BASE+IMEI",
            Tee,
            Rsa,
            Remote,
            0,
            Err(Rule::KeyProperties),
        ),
        (
            "akita/sdk34/TEE_RSA_NONE",
            Tee,
            Rsa,
            Remote,
            0,
            Err(Rule::KeyProperties),
        ),
        (
            "akita/sdk34/TEE_RSA_NONE_USERAUTH",
            Tee,
            Rsa,
            Remote,
            0,
            Err(Rule::KeyProperties),
        ),
        (
            "blueline/sdk28/SB_RSA_NONE",
            StrongBox,
            Rsa,
            Factory,
            0,
            Err(Rule::KeyProperties),
        ),
        (
            "blueline/sdk28/SB_RSA_NONE_USERAUTH",
            StrongBox,
            Rsa,
            Factory,
            0,
            Err(Rule::KeyProperties),
        ),
        (
            "blueline/sdk28/TEE_EC_NONE",
            Tee,
            Rsa,
            Factory,
            0,
            Err(Rule::RootOfTrust),
        ),
        (
            "blueline/sdk28/TEE_RSA_BASE+IMEI",
            Tee,
            Rsa,
            Factory,
            0,
            Err(Rule::KeyProperties),
        ),
        (
            "blueline/sdk28/TEE_RSA_NONE",
            Tee,
            Rsa,
            Factory,
            0,
            Err(Rule::KeyProperties),
        ),
        (
            "caiman/sdk36/SB_EC_RKP",
            StrongBox,
            Rsa,
            Remote,
            0,
            Ok(StrongBox),
        ),
        ("caiman/sdk36/TEE_EC_RKP", Tee, Rsa, Remote, 0, Ok(Tee)),
        (
            "marlin/sdk29/TEE_EC_NONE",
            Software,
            Sw,
            Unknown,
            0,
            Err(Rule::SoftwareRoot),
        ),
        (
            "marlin/sdk29/TEE_RSA_NONE",
            Software,
            Sw,
            Unknown,
            0,
            Err(Rule::SoftwareRoot),
        ),
        // Intermediates and root expired before the key was made; one lacks keyCertSign.
        (
            "sony-xperia10-iii/sdk33/TEE_EC",
            Tee,
            Rsa,
            Factory,
            2,
            Ok(Tee),
        ),
        (
            "tegu/sdk36/SB_EC_2026_ROOT",
            StrongBox,
            Ca1,
            Remote,
            0,
            Ok(StrongBox),
        ),
        ("tegu/sdk36/TEE_EC_2026_ROOT", Tee, Ca1, Remote, 0, Ok(Tee)),
        // ML-DSA leaves: the chain verifies (ECDSA/RSA above the leaf), the key is not P-256.
        (
            "tokay/sdk37/TEE_MLDSA_FACTORY",
            Tee,
            Rsa,
            Factory,
            0,
            Err(Rule::KeyProperties),
        ),
        (
            "tokay/sdk37/TEE_MLDSA_RKP",
            Tee,
            Ca1,
            Remote,
            0,
            Err(Rule::KeyProperties),
        ),
    ]
};

#[test]
fn each_chain_gets_its_verdict_from_a_lenient_and_a_strict_policy() {
    let cases = common::android_cases();
    assert_eq!(
        TABLE.iter().map(|r| r.0.to_string()).collect::<Vec<_>>(),
        cases,
        "the table names every vector"
    );
    let none = RevocationList::empty();
    for &(case, lenient, root, provisioning, expired, strict) in TABLE {
        let der = chain(&format!("{case}.pem"));
        let verdict = verify_android(
            &der,
            &AndroidExpectations::lenient(challenge(case)),
            &none,
            None,
        )
        .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(verdict.assurance, lenient, "{case}");
        assert_eq!(verdict.chain.root, root, "{case}");
        assert_eq!(verdict.chain.provisioning, provisioning, "{case}");
        assert_eq!(verdict.chain.expired_tolerated.len(), expired, "{case}");
        // What Google's certificates state: RKP attestation certificates name TEE or
        // StrongBox, factory chains name StrongBox only.
        let stated = match (provisioning, lenient) {
            (Provisioning::Remote, Assurance::StrongBox) => Some(SecurityLevel::StrongBox),
            (Provisioning::Remote, _) => Some(SecurityLevel::TrustedEnvironment),
            (Provisioning::Factory, Assurance::StrongBox) => Some(SecurityLevel::StrongBox),
            _ => None,
        };
        assert_eq!(verdict.chain.certificate_security_level, stated, "{case}");

        let strict_policy = AndroidExpectations::strict(challenge(case), own_app(case));
        let got = verify_android(&der, &strict_policy, &none, None)
            .map(|v| v.assurance)
            .map_err(|f| f.rule);
        assert_eq!(got, strict, "{case}");
    }
}

#[test]
fn the_strict_verdicts_name_what_failed() {
    let none = RevocationList::empty();
    let refuse = |case: &str| {
        let policy = AndroidExpectations::strict(challenge(case), own_app(case));
        verify_android(&chain(&format!("{case}.pem")), &policy, &none, None)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        refuse("akita/sdk34/TEE_EC_NONE"),
        "root-of-trust: the bootloader is unlocked"
    );
    assert_eq!(
        refuse("blueline/sdk28/TEE_RSA_NONE"),
        "key-properties: the certified key is RSA-2048, not EC P-256"
    );
    assert_eq!(
        refuse("tokay/sdk37/TEE_MLDSA_RKP"),
        "key-properties: the certified key is ML-DSA-65, not EC P-256"
    );
    assert!(refuse("marlin/sdk29/TEE_EC_NONE").starts_with("software-root: "));
}

#[test]
fn the_malformed_chain_is_refused() {
    // Its rootOfTrust.deviceLocked is a BOOLEAN encoded 0x01, not DER (BouncyCastle reads it as
    // true): the extension is not what the hardware would have written.
    let der = chain("invalid/malformed_rot_device_locked.pem");
    let fault = verify_android_chain(&der, &RevocationList::empty(), None).unwrap_err();
    assert_eq!(fault.rule, Rule::MalformedExtension);
    assert!(fault.detail.contains("rootOfTrust.deviceLocked"), "{fault}");
    let fault = verify_android(
        &der,
        &AndroidExpectations::lenient(b"challenge".to_vec()),
        &RevocationList::empty(),
        None,
    )
    .unwrap_err();
    assert_eq!(fault.rule, Rule::MalformedExtension);
}

#[test]
fn a_single_certificate_parses_but_is_not_a_chain() {
    let der = chain("allow_while_on_body.pem");
    let kd = KeyDescription::from_certificate(&der[0]).unwrap().unwrap();
    // Tag 506, set by the framework (softwareEnforced) on this phone.
    assert!(kd.software_enforced.allow_while_on_body);
    assert!(!kd.hardware_enforced.allow_while_on_body);
    assert_eq!(kd.hardware_enforced.user_auth_type, Some(1));
    assert_eq!(kd.hardware_enforced.auth_timeout, Some(86_400));
    let fault = verify_android_chain(&der, &RevocationList::empty(), None).unwrap_err();
    assert_eq!(fault.rule, Rule::MalformedChain);
}

#[test]
fn rkp_chains_fail_once_an_intermediate_expired_and_factory_chains_do_not() {
    let none = RevocationList::empty();
    // caiman TEE: RKP intermediates valid until 2025-10-03 15:31:19 and 2025-12-04 17:13:01.
    let caiman = chain("caiman/sdk36/TEE_EC_RKP.pem");
    let day_after = UNIX_EPOCH + Duration::from_secs(1_759_505_479 + 86_400);
    let fault = verify_android_chain(&caiman, &none, Some(day_after)).unwrap_err();
    assert_eq!(fault.rule, Rule::Validity, "{fault}");
    assert!(fault.detail.contains("expired"), "{fault}");
    // Before the intermediates were issued.
    let before = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let fault = verify_android_chain(&caiman, &none, Some(before)).unwrap_err();
    assert_eq!(fault.rule, Rule::Validity);
    assert!(fault.detail.contains("not valid before"), "{fault}");

    // blueline (factory, intermediates to 2028, root to 2026) verified in 2030: tolerated.
    let blueline = chain("blueline/sdk28/TEE_EC_NONE.pem");
    let later = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let attested = verify_android_chain(&blueline, &none, Some(later)).unwrap();
    assert_eq!(attested.expired_tolerated.len(), 2);
    assert_eq!(attested.verified_at, later);
}
