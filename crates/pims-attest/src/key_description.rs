//! The Android key attestation extension (OID 1.3.6.1.4.1.11129.2.1.17), `KeyDescription`:
//! <https://source.android.com/docs/security/features/keystore/attestation#schema>.
//!
//! Parsed with `der` in strict DER: a value that is not DER (such as a BOOLEAN encoded `0x01`)
//! makes the whole extension malformed. Tags this parser does not know are listed in
//! [`AuthorizationList::unknown_tags`] rather than refused; a tag that appears twice is refused.

use der::asn1::AnyRef;
use der::{Decode, Reader, SliceReader, Tag, TagNumber, Tagged};

/// `SecurityLevel` of the attestation and of the KeyMint (Keymaster) implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecurityLevel {
    Software,
    TrustedEnvironment,
    StrongBox,
}

impl SecurityLevel {
    /// The name Google's tools use (`SOFTWARE`, `TRUSTED_ENVIRONMENT`, `STRONG_BOX`).
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityLevel::Software => "SOFTWARE",
            SecurityLevel::TrustedEnvironment => "TRUSTED_ENVIRONMENT",
            SecurityLevel::StrongBox => "STRONG_BOX",
        }
    }
}

/// `VerifiedBootState` of the root of trust.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifiedBootState {
    /// Booted an image signed by the OEM's key (a locked, stock device).
    Verified,
    /// Booted an image signed by a user-installed key (e.g. GrapheneOS on a relocked Pixel):
    /// trustworthy only when that key is known.
    SelfSigned,
    /// Unlocked bootloader: anything may be running.
    Unverified,
    Failed,
}

impl VerifiedBootState {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifiedBootState::Verified => "VERIFIED",
            VerifiedBootState::SelfSigned => "SELF_SIGNED",
            VerifiedBootState::Unverified => "UNVERIFIED",
            VerifiedBootState::Failed => "FAILED",
        }
    }
}

/// `RootOfTrust`: the state of the boot chain when the key was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootOfTrust {
    pub verified_boot_key: Vec<u8>,
    pub device_locked: bool,
    pub verified_boot_state: VerifiedBootState,
    /// Present from attestation version 3.
    pub verified_boot_hash: Option<Vec<u8>>,
}

/// `Origin` of the key material.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Made inside the secure hardware: the only origin that proves the private key never left.
    Generated,
    Derived,
    Imported,
    Reserved,
    SecurelyImported,
    Unknown(u64),
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Generated => "GENERATED",
            Origin::Derived => "DERIVED",
            Origin::Imported => "IMPORTED",
            Origin::Reserved => "RESERVED",
            Origin::SecurelyImported => "SECURELY_IMPORTED",
            Origin::Unknown(_) => "UNKNOWN",
        }
    }
}

/// One package of `AttestationApplicationId` (all packages sharing the calling app's UID).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageInfo {
    pub name: String,
    pub version: u64,
}

/// `AttestationApplicationId`: the calling app's package(s) and the SHA-256 digests of its
/// signing certificate(s), as the Android framework saw them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationApplicationId {
    pub packages: Vec<PackageInfo>,
    pub signature_digests: Vec<Vec<u8>>,
}

/// `AuthorizationList`: the key's properties, once as enforced by the secure hardware
/// (`hardwareEnforced`) and once by the Android system (`softwareEnforced`, which a rooted
/// phone can lie about).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthorizationList {
    pub purposes: Option<Vec<u64>>,
    pub algorithm: Option<u64>,
    pub key_size: Option<u64>,
    pub block_modes: Option<Vec<u64>>,
    pub digests: Option<Vec<u64>>,
    pub paddings: Option<Vec<u64>>,
    pub ec_curve: Option<u64>,
    pub ml_dsa_variant: Option<u64>,
    pub rsa_public_exponent: Option<u64>,
    pub rsa_oaep_mgf_digests: Option<Vec<u64>>,
    pub rollback_resistance: bool,
    pub early_boot_only: bool,
    pub active_date_time: Option<u64>,
    pub origination_expire_date_time: Option<u64>,
    pub usage_expire_date_time: Option<u64>,
    pub usage_count_limit: Option<u64>,
    pub no_auth_required: bool,
    /// Bit mask of `HardwareAuthenticatorType`: 1 = password (device credential),
    /// 2 = fingerprint/biometric.
    pub user_auth_type: Option<u64>,
    /// Seconds after an authentication during which the key may be used.
    pub auth_timeout: Option<u64>,
    pub allow_while_on_body: bool,
    pub trusted_user_presence_required: bool,
    pub trusted_confirmation_required: bool,
    pub unlocked_device_required: bool,
    /// Milliseconds since the epoch.
    pub creation_date_time: Option<u64>,
    pub origin: Option<Origin>,
    pub rollback_resistant: bool,
    pub root_of_trust: Option<RootOfTrust>,
    pub os_version: Option<u64>,
    /// `YYYYMM`.
    pub os_patch_level: Option<u64>,
    pub attestation_application_id: Option<AttestationApplicationId>,
    pub attestation_id_brand: Option<String>,
    pub attestation_id_device: Option<String>,
    pub attestation_id_product: Option<String>,
    pub attestation_id_serial: Option<String>,
    pub attestation_id_imei: Option<String>,
    pub attestation_id_meid: Option<String>,
    pub attestation_id_manufacturer: Option<String>,
    pub attestation_id_model: Option<String>,
    /// `YYYYMMDD` (or `YYYYMM` on older devices).
    pub vendor_patch_level: Option<u64>,
    pub boot_patch_level: Option<u64>,
    pub device_unique_attestation: bool,
    pub attestation_id_second_imei: Option<String>,
    pub module_hash: Option<Vec<u8>>,
    /// Whether the tags appeared in ascending order, as DER requires of this SEQUENCE.
    pub tags_in_order: bool,
    /// Tag numbers present but not known to this parser (kept, not interpreted).
    pub unknown_tags: Vec<u32>,
}

/// The whole `KeyDescription`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDescription {
    pub attestation_version: u64,
    pub attestation_security_level: SecurityLevel,
    pub keymint_version: u64,
    pub keymint_security_level: SecurityLevel,
    pub attestation_challenge: Vec<u8>,
    pub unique_id: Vec<u8>,
    pub software_enforced: AuthorizationList,
    pub hardware_enforced: AuthorizationList,
}

impl KeyDescription {
    /// Parses the extension's value (the bytes inside its OCTET STRING).
    pub fn from_der(bytes: &[u8]) -> Result<KeyDescription, String> {
        let outer = AnyRef::from_der(bytes).map_err(|e| format!("KeyDescription: {e}"))?;
        expect_tag(&outer, Tag::Sequence, "KeyDescription")?;
        let fields = children(outer.value(), "KeyDescription")?;
        if fields.len() != 8 {
            return Err(format!(
                "KeyDescription has {} fields, 8 expected",
                fields.len()
            ));
        }
        Ok(KeyDescription {
            attestation_version: integer(&fields[0], "attestationVersion")?,
            attestation_security_level: security_level(&fields[1], "attestationSecurityLevel")?,
            keymint_version: integer(&fields[2], "keyMintVersion")?,
            keymint_security_level: security_level(&fields[3], "keyMintSecurityLevel")?,
            attestation_challenge: octets(&fields[4], "attestationChallenge")?.to_vec(),
            unique_id: octets(&fields[5], "uniqueId")?.to_vec(),
            software_enforced: authorization_list(&fields[6], "softwareEnforced")?,
            hardware_enforced: authorization_list(&fields[7], "hardwareEnforced")?,
        })
    }

    /// The `KeyDescription` of a certificate (DER), or `None` when it has no attestation
    /// extension.
    pub fn from_certificate(cert_der: &[u8]) -> Result<Option<KeyDescription>, String> {
        let cert = crate::x509::Cert::from_der(cert_der)?;
        match cert.extension(&crate::android::KEY_ATTESTATION_OID) {
            Some(value) => KeyDescription::from_der(value).map(Some),
            None => Ok(None),
        }
    }

    /// The key's creation time (milliseconds since the epoch), from either list (Android puts
    /// it in `softwareEnforced`).
    pub fn creation_time_millis(&self) -> Option<u64> {
        self.hardware_enforced
            .creation_date_time
            .or(self.software_enforced.creation_date_time)
    }

    /// The application id (Android puts it in `softwareEnforced`: the framework fills it).
    pub fn application_id(&self) -> Option<&AttestationApplicationId> {
        self.software_enforced
            .attestation_application_id
            .as_ref()
            .or(self.hardware_enforced.attestation_application_id.as_ref())
    }
}

fn children<'a>(bytes: &'a [u8], what: &str) -> Result<Vec<AnyRef<'a>>, String> {
    let mut reader = SliceReader::new(bytes).map_err(|e| format!("{what}: {e}"))?;
    let mut out = Vec::new();
    while !reader.is_finished() {
        out.push(AnyRef::decode(&mut reader).map_err(|e| format!("{what}: {e}"))?);
    }
    Ok(out)
}

fn expect_tag(any: &AnyRef<'_>, tag: Tag, what: &str) -> Result<(), String> {
    if any.tag() == tag {
        Ok(())
    } else {
        Err(format!("{what}: {} where {tag} was expected", any.tag()))
    }
}

fn integer(any: &AnyRef<'_>, what: &str) -> Result<u64, String> {
    any.decode_as::<u64>()
        .map_err(|e| format!("{what}: not a non-negative INTEGER ({e})"))
}

fn enumerated(any: &AnyRef<'_>, what: &str) -> Result<u64, String> {
    expect_tag(any, Tag::Enumerated, what)?;
    let bytes = any.value();
    if bytes.is_empty() || bytes.len() > 8 || bytes[0] & 0x80 != 0 {
        return Err(format!("{what}: ENUMERATED out of range"));
    }
    if bytes.len() > 1 && bytes[0] == 0 && bytes[1] & 0x80 == 0 {
        return Err(format!("{what}: ENUMERATED not in DER"));
    }
    Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

fn octets<'a>(any: &AnyRef<'a>, what: &str) -> Result<&'a [u8], String> {
    expect_tag(any, Tag::OctetString, what)?;
    Ok(any.value())
}

fn utf8(any: &AnyRef<'_>, what: &str) -> Result<String, String> {
    String::from_utf8(octets(any, what)?.to_vec()).map_err(|_| format!("{what}: not UTF-8"))
}

fn boolean(any: &AnyRef<'_>, what: &str) -> Result<bool, String> {
    any.decode_as::<bool>()
        .map_err(|e| format!("{what}: not a DER BOOLEAN ({e})"))
}

fn null(any: &AnyRef<'_>, what: &str) -> Result<bool, String> {
    expect_tag(any, Tag::Null, what)?;
    if any.value().is_empty() {
        Ok(true)
    } else {
        Err(format!("{what}: NULL with content"))
    }
}

fn integer_set(any: &AnyRef<'_>, what: &str) -> Result<Vec<u64>, String> {
    expect_tag(any, Tag::Set, what)?;
    children(any.value(), what)?
        .iter()
        .map(|item| integer(item, what))
        .collect()
}

fn security_level(any: &AnyRef<'_>, what: &str) -> Result<SecurityLevel, String> {
    match enumerated(any, what)? {
        0 => Ok(SecurityLevel::Software),
        1 => Ok(SecurityLevel::TrustedEnvironment),
        2 => Ok(SecurityLevel::StrongBox),
        other => Err(format!("{what}: unknown security level {other}")),
    }
}

fn root_of_trust(any: &AnyRef<'_>) -> Result<RootOfTrust, String> {
    const WHAT: &str = "rootOfTrust";
    expect_tag(any, Tag::Sequence, WHAT)?;
    let fields = children(any.value(), WHAT)?;
    if fields.len() != 3 && fields.len() != 4 {
        return Err(format!(
            "{WHAT} has {} fields, 3 or 4 expected",
            fields.len()
        ));
    }
    let verified_boot_state = match enumerated(&fields[2], "rootOfTrust.verifiedBootState")? {
        0 => VerifiedBootState::Verified,
        1 => VerifiedBootState::SelfSigned,
        2 => VerifiedBootState::Unverified,
        3 => VerifiedBootState::Failed,
        other => return Err(format!("{WHAT}: unknown verifiedBootState {other}")),
    };
    Ok(RootOfTrust {
        verified_boot_key: octets(&fields[0], "rootOfTrust.verifiedBootKey")?.to_vec(),
        device_locked: boolean(&fields[1], "rootOfTrust.deviceLocked")?,
        verified_boot_state,
        verified_boot_hash: match fields.get(3) {
            Some(hash) => Some(octets(hash, "rootOfTrust.verifiedBootHash")?.to_vec()),
            None => None,
        },
    })
}

fn application_id(any: &AnyRef<'_>) -> Result<AttestationApplicationId, String> {
    const WHAT: &str = "attestationApplicationId";
    let inner = AnyRef::from_der(octets(any, WHAT)?).map_err(|e| format!("{WHAT}: {e}"))?;
    expect_tag(&inner, Tag::Sequence, WHAT)?;
    let fields = children(inner.value(), WHAT)?;
    if fields.len() != 2 {
        return Err(format!("{WHAT} has {} fields, 2 expected", fields.len()));
    }
    expect_tag(
        &fields[0],
        Tag::Set,
        "attestationApplicationId.packageInfos",
    )?;
    let mut packages = Vec::new();
    for package in children(fields[0].value(), WHAT)? {
        expect_tag(&package, Tag::Sequence, "AttestationPackageInfo")?;
        let parts = children(package.value(), "AttestationPackageInfo")?;
        if parts.len() != 2 {
            return Err("AttestationPackageInfo has not 2 fields".into());
        }
        packages.push(PackageInfo {
            name: utf8(&parts[0], "AttestationPackageInfo.packageName")?,
            version: integer(&parts[1], "AttestationPackageInfo.version")?,
        });
    }
    expect_tag(
        &fields[1],
        Tag::Set,
        "attestationApplicationId.signatureDigests",
    )?;
    let signature_digests = children(fields[1].value(), WHAT)?
        .iter()
        .map(|d| octets(d, "attestationApplicationId.signatureDigest").map(<[u8]>::to_vec))
        .collect::<Result<_, _>>()?;
    Ok(AttestationApplicationId {
        packages,
        signature_digests,
    })
}

fn authorization_list(any: &AnyRef<'_>, what: &str) -> Result<AuthorizationList, String> {
    expect_tag(any, Tag::Sequence, what)?;
    let mut list = AuthorizationList {
        tags_in_order: true,
        ..AuthorizationList::default()
    };
    let mut seen: Vec<u32> = Vec::new();
    for item in children(any.value(), what)? {
        let number = match item.tag() {
            Tag::ContextSpecific {
                constructed: true,
                number: TagNumber(n),
            } => n,
            other => {
                return Err(format!(
                    "{what}: element {other} is not an explicit [n] tag"
                ))
            }
        };
        if seen.contains(&number) {
            return Err(format!("{what}: tag [{number}] appears twice"));
        }
        if seen.last().is_some_and(|last| *last > number) {
            list.tags_in_order = false;
        }
        seen.push(number);
        let value =
            AnyRef::from_der(item.value()).map_err(|e| format!("{what} [{number}]: {e}"))?;
        let v = &value;
        let name = |field: &str| format!("{what}.{field}");
        match number {
            1 => list.purposes = Some(integer_set(v, &name("purpose"))?),
            2 => list.algorithm = Some(integer(v, &name("algorithm"))?),
            3 => list.key_size = Some(integer(v, &name("keySize"))?),
            4 => list.block_modes = Some(integer_set(v, &name("blockMode"))?),
            5 => list.digests = Some(integer_set(v, &name("digest"))?),
            6 => list.paddings = Some(integer_set(v, &name("padding"))?),
            10 => list.ec_curve = Some(integer(v, &name("ecCurve"))?),
            11 => list.ml_dsa_variant = Some(integer(v, &name("mlDsaVariant"))?),
            200 => list.rsa_public_exponent = Some(integer(v, &name("rsaPublicExponent"))?),
            203 => list.rsa_oaep_mgf_digests = Some(integer_set(v, &name("mgfDigest"))?),
            303 => list.rollback_resistance = null(v, &name("rollbackResistance"))?,
            305 => list.early_boot_only = null(v, &name("earlyBootOnly"))?,
            400 => list.active_date_time = Some(integer(v, &name("activeDateTime"))?),
            401 => {
                list.origination_expire_date_time =
                    Some(integer(v, &name("originationExpireDateTime"))?)
            }
            402 => list.usage_expire_date_time = Some(integer(v, &name("usageExpireDateTime"))?),
            405 => list.usage_count_limit = Some(integer(v, &name("usageCountLimit"))?),
            503 => list.no_auth_required = null(v, &name("noAuthRequired"))?,
            504 => list.user_auth_type = Some(integer(v, &name("userAuthType"))?),
            505 => list.auth_timeout = Some(integer(v, &name("authTimeout"))?),
            506 => list.allow_while_on_body = null(v, &name("allowWhileOnBody"))?,
            507 => {
                list.trusted_user_presence_required = null(v, &name("trustedUserPresenceRequired"))?
            }
            508 => {
                list.trusted_confirmation_required = null(v, &name("trustedConfirmationRequired"))?
            }
            509 => list.unlocked_device_required = null(v, &name("unlockedDeviceRequired"))?,
            701 => list.creation_date_time = Some(integer(v, &name("creationDateTime"))?),
            702 => {
                list.origin = Some(match integer(v, &name("origin"))? {
                    0 => Origin::Generated,
                    1 => Origin::Derived,
                    2 => Origin::Imported,
                    3 => Origin::Reserved,
                    4 => Origin::SecurelyImported,
                    other => Origin::Unknown(other),
                })
            }
            703 => list.rollback_resistant = null(v, &name("rollbackResistant"))?,
            704 => list.root_of_trust = Some(root_of_trust(v)?),
            705 => list.os_version = Some(integer(v, &name("osVersion"))?),
            706 => list.os_patch_level = Some(integer(v, &name("osPatchLevel"))?),
            709 => list.attestation_application_id = Some(application_id(v)?),
            710 => list.attestation_id_brand = Some(utf8(v, &name("attestationIdBrand"))?),
            711 => list.attestation_id_device = Some(utf8(v, &name("attestationIdDevice"))?),
            712 => list.attestation_id_product = Some(utf8(v, &name("attestationIdProduct"))?),
            713 => list.attestation_id_serial = Some(utf8(v, &name("attestationIdSerial"))?),
            714 => list.attestation_id_imei = Some(utf8(v, &name("attestationIdImei"))?),
            715 => list.attestation_id_meid = Some(utf8(v, &name("attestationIdMeid"))?),
            716 => {
                list.attestation_id_manufacturer =
                    Some(utf8(v, &name("attestationIdManufacturer"))?)
            }
            717 => list.attestation_id_model = Some(utf8(v, &name("attestationIdModel"))?),
            718 => list.vendor_patch_level = Some(integer(v, &name("vendorPatchLevel"))?),
            719 => list.boot_patch_level = Some(integer(v, &name("bootPatchLevel"))?),
            720 => list.device_unique_attestation = null(v, &name("deviceUniqueAttestation"))?,
            723 => {
                list.attestation_id_second_imei = Some(utf8(v, &name("attestationIdSecondImei"))?)
            }
            724 => list.module_hash = Some(octets(v, &name("moduleHash"))?.to_vec()),
            other => list.unknown_tags.push(other),
        }
    }
    Ok(list)
}
