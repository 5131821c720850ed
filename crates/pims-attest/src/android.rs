//! Android Key Attestation: the chain rules of Google's verifier (`android/keyattestation`),
//! then the relying party's policy.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::ObjectIdentifier;
use x509_cert::name::Name;

use crate::fault::{AttestationFault, Rule};
use crate::key_description::{KeyDescription, Origin, SecurityLevel, VerifiedBootState};
use crate::revocation::RevocationList;
use crate::roots::{android_root_for, AndroidRoot};
use crate::x509::{Cert, KeyAlgorithm, SignatureError};
use crate::Assurance;

/// OID of the key attestation extension.
pub const KEY_ATTESTATION_OID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.1.17");
const OID_SERIAL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.5");
const OID_COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const OID_ORGANIZATION: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");

/// How the device got its attestation key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provisioning {
    /// A key put in at the factory; the intermediate below the root names a `serialNumber`.
    /// Its certificates cannot be rotated, so their expiry is tolerated.
    Factory,
    /// Remote Key Provisioning: short-lived keys under "Droid CA2"; they must be valid.
    Remote,
    /// Neither (software attestation chains).
    Unknown,
}

impl Provisioning {
    pub fn as_str(self) -> &'static str {
        match self {
            Provisioning::Factory => "factory",
            Provisioning::Remote => "remote",
            Provisioning::Unknown => "unknown",
        }
    }

    /// Certificates a chain of this kind has, root and leaf included.
    fn chain_len(self, actual: usize) -> usize {
        match self {
            Provisioning::Remote => 5,
            Provisioning::Factory => 4,
            // As Google's verifier: software chains are root → attestation key → leaf.
            Provisioning::Unknown if actual == 4 => 4,
            Provisioning::Unknown => 3,
        }
    }
}

/// What a chain proves before any policy: it is well formed, ends at a known root, every
/// signature verifies, nothing is revoked, its intermediates were valid at `verified_at`.
#[derive(Clone, Debug)]
pub struct AttestedChain {
    pub root: AndroidRoot,
    pub provisioning: Provisioning,
    /// The security level Google's certificates state for the attestation key: remotely
    /// provisioned attestation certificates name it (`O=TEE`, `O=StrongBox`); factory chains
    /// name StrongBox only (`None` for the others).
    pub certificate_security_level: Option<SecurityLevel>,
    pub key_description: KeyDescription,
    /// The certified key's SubjectPublicKeyInfo (DER).
    pub leaf_public_key: Vec<u8>,
    /// The same key's subjectPublicKey bits: for EC keys the uncompressed point (65 bytes for
    /// P-256), the form PIMS devices send.
    pub leaf_public_key_point: Vec<u8>,
    pub leaf_key_algorithm: KeyAlgorithm,
    /// Serial numbers, leaf first, as the revocation list writes them.
    pub serials: Vec<String>,
    /// The time the chain was checked at.
    pub verified_at: SystemTime,
    /// Factory certificates that had expired at `verified_at` (tolerated; subject names).
    pub expired_tolerated: Vec<String>,
}

impl AttestedChain {
    /// The key's creation time as attested (set by Android, not the secure hardware).
    pub fn key_created(&self) -> Option<SystemTime> {
        self.key_description
            .creation_time_millis()
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
    }

    /// The lower of the attestation and KeyMint security levels; `Software` for a chain that
    /// ends at a software root, whatever it claims.
    pub fn security_level(&self) -> SecurityLevel {
        if self.root == AndroidRoot::AospSoftware {
            return SecurityLevel::Software;
        }
        self.key_description
            .attestation_security_level
            .min(self.key_description.keymint_security_level)
    }

    /// The assurance the chain proves.
    pub fn assurance(&self) -> Assurance {
        match self.security_level() {
            SecurityLevel::StrongBox => Assurance::StrongBox,
            SecurityLevel::TrustedEnvironment => Assurance::Tee,
            SecurityLevel::Software => Assurance::Software,
        }
    }
}

/// Boot state requirements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootPolicy {
    /// The bootloader must be locked.
    pub require_locked: bool,
    /// The boot must be `VERIFIED` (or `SELF_SIGNED` with a key in `allowed_boot_keys`).
    pub require_verified_boot: bool,
    /// When set, the verified boot key must be one of these (e.g. GrapheneOS's published keys
    /// for `SELF_SIGNED` boots, or an OEM's key).
    pub allowed_boot_keys: Option<Vec<Vec<u8>>>,
}

/// An app allowed to enroll: its package name and the SHA-256 digests of its signing
/// certificates (as in `apksigner verify --print-certs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AndroidApp {
    pub package_name: String,
    pub signature_digests: Vec<Vec<u8>>,
}

/// What the relying party requires of an Android attestation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AndroidExpectations {
    /// The challenge the server gave for this enrollment (binds session and key).
    pub challenge: Vec<u8>,
    /// The key being enrolled, when known: its SubjectPublicKeyInfo (DER) or, for EC keys, its
    /// uncompressed point.
    pub public_key: Option<Vec<u8>>,
    /// Accept chains that end at an AOSP software root (assurance `software`).
    pub allow_software_root: bool,
    /// The lowest security level accepted.
    pub min_security_level: SecurityLevel,
    /// The key must have been generated in the secure hardware (`origin = GENERATED`).
    pub require_generated_key: bool,
    /// The key must be an EC P-256 signing key (what PIMS device keys are).
    pub require_ec_p256_signing_key: bool,
    pub boot: BootPolicy,
    /// Lowest `osPatchLevel` (`YYYYMM`) accepted.
    pub min_os_patch_level: Option<u64>,
    /// Apps allowed; empty accepts any app.
    pub apps: Vec<AndroidApp>,
    /// When set, the key must require user authentication by one of these authenticator types
    /// (bit mask: 1 = device credential, 2 = biometric), enforced by the hardware.
    pub user_auth_types: Option<u64>,
}

impl AndroidExpectations {
    /// Records what the chain proves and checks only the challenge: any root Google or AOSP
    /// signs, any level, any boot state, any app.
    pub fn lenient(challenge: impl Into<Vec<u8>>) -> AndroidExpectations {
        AndroidExpectations {
            challenge: challenge.into(),
            public_key: None,
            allow_software_root: true,
            min_security_level: SecurityLevel::Software,
            require_generated_key: false,
            require_ec_p256_signing_key: false,
            boot: BootPolicy::default(),
            min_os_patch_level: None,
            apps: Vec::new(),
            user_auth_types: None,
        }
    }

    /// The hardware policy: a Google root, TEE or StrongBox, a key generated in hardware that
    /// is an EC P-256 signing key, a locked bootloader with a verified boot, and one of `apps`.
    pub fn strict(challenge: impl Into<Vec<u8>>, apps: Vec<AndroidApp>) -> AndroidExpectations {
        AndroidExpectations {
            challenge: challenge.into(),
            public_key: None,
            allow_software_root: false,
            min_security_level: SecurityLevel::TrustedEnvironment,
            require_generated_key: true,
            require_ec_p256_signing_key: true,
            boot: BootPolicy {
                require_locked: true,
                require_verified_boot: true,
                allowed_boot_keys: None,
            },
            min_os_patch_level: None,
            apps,
            user_auth_types: None,
        }
    }

    /// Applies the policy to a verified chain.
    pub fn check(&self, chain: AttestedChain) -> Result<AndroidVerdict, AttestationFault> {
        let kd = &chain.key_description;
        let hw = &kd.hardware_enforced;
        if chain.root == AndroidRoot::AospSoftware && !self.allow_software_root {
            return Err(AttestationFault::new(
                Rule::SoftwareRoot,
                "the chain ends at the AOSP software attestation root, whose private key is \
                 public: the key is not proven to be in hardware",
            ));
        }
        // As Google's MATCHES_CERTIFICATE constraint: a StrongBox claim needs a StrongBox
        // certificate (a leaked TEE key cannot pass its keys off as StrongBox ones), and a
        // certificate's stated level must be the one claimed.
        let claimed = kd.keymint_security_level;
        let consistent = match (claimed, chain.certificate_security_level) {
            (SecurityLevel::StrongBox, stated) => stated == Some(SecurityLevel::StrongBox),
            (_, None) => true,
            (_, Some(stated)) => stated == claimed,
        };
        if !consistent {
            return Err(AttestationFault::new(
                Rule::SecurityLevel,
                format!(
                    "KeyMint claims {} but the attestation certificate states {}",
                    claimed.as_str(),
                    chain
                        .certificate_security_level
                        .map_or("no level", SecurityLevel::as_str)
                ),
            ));
        }
        if kd.attestation_challenge != self.challenge {
            return Err(AttestationFault::new(
                Rule::Challenge,
                format!(
                    "attested challenge {} is not the expected {}",
                    hex(&kd.attestation_challenge),
                    hex(&self.challenge)
                ),
            ));
        }
        if let Some(expected) = &self.public_key {
            if *expected != chain.leaf_public_key && *expected != chain.leaf_public_key_point {
                return Err(AttestationFault::new(
                    Rule::PublicKey,
                    "the certified key is not the key being enrolled",
                ));
            }
        }
        let level = chain.security_level();
        if level < self.min_security_level {
            return Err(AttestationFault::new(
                Rule::SecurityLevel,
                format!(
                    "security level {} (attestation {}, KeyMint {}, root {}) is below {}",
                    level.as_str(),
                    kd.attestation_security_level.as_str(),
                    kd.keymint_security_level.as_str(),
                    chain.root.as_str(),
                    self.min_security_level.as_str()
                ),
            ));
        }
        if self.require_generated_key && hw.origin != Some(Origin::Generated) {
            return Err(AttestationFault::new(
                Rule::KeyProperties,
                format!(
                    "hardware-enforced origin is {}, not GENERATED",
                    hw.origin.map_or("absent", Origin::as_str)
                ),
            ));
        }
        if self.require_ec_p256_signing_key {
            if chain.leaf_key_algorithm != KeyAlgorithm::EcP256 {
                return Err(AttestationFault::new(
                    Rule::KeyProperties,
                    format!(
                        "the certified key is {}, not EC P-256",
                        chain.leaf_key_algorithm
                    ),
                ));
            }
            // KeyPurpose SIGN = 2.
            if !hw.purposes.as_ref().is_some_and(|p| p.contains(&2)) {
                return Err(AttestationFault::new(
                    Rule::KeyProperties,
                    "the key's hardware-enforced purposes do not include SIGN",
                ));
            }
        }
        self.check_boot(&chain)?;
        if let Some(floor) = self.min_os_patch_level {
            match hw.os_patch_level {
                Some(level) if level >= floor => {}
                other => {
                    return Err(AttestationFault::new(
                        Rule::PatchLevel,
                        format!(
                            "OS patch level {} is older than {floor}",
                            other.map_or("absent".into(), |l| l.to_string())
                        ),
                    ))
                }
            }
        }
        if !self.apps.is_empty() {
            check_app(kd, &self.apps)?;
        }
        if let Some(mask) = self.user_auth_types {
            let attested = hw.user_auth_type.unwrap_or(0);
            if hw.no_auth_required || attested & mask == 0 {
                return Err(AttestationFault::new(
                    Rule::UserAuth,
                    format!(
                        "the key does not require user authentication of type mask {mask} in \
                         hardware (userAuthType {}, noAuthRequired {})",
                        hw.user_auth_type
                            .map_or("absent".into(), |t: u64| t.to_string()),
                        hw.no_auth_required
                    ),
                ));
            }
        }
        Ok(AndroidVerdict {
            assurance: chain.assurance(),
            security_level: level,
            chain,
        })
    }

    fn check_boot(&self, chain: &AttestedChain) -> Result<(), AttestationFault> {
        let boot = &self.boot;
        if !boot.require_locked && !boot.require_verified_boot && boot.allowed_boot_keys.is_none() {
            return Ok(());
        }
        let Some(rot) = chain
            .key_description
            .hardware_enforced
            .root_of_trust
            .as_ref()
        else {
            return Err(AttestationFault::new(
                Rule::RootOfTrust,
                "the attestation has no hardware-enforced root of trust",
            ));
        };
        if boot.require_locked && !rot.device_locked {
            return Err(AttestationFault::new(
                Rule::RootOfTrust,
                "the bootloader is unlocked",
            ));
        }
        let key_allowed = boot
            .allowed_boot_keys
            .as_ref()
            .map(|keys| keys.contains(&rot.verified_boot_key));
        if key_allowed == Some(false) {
            return Err(AttestationFault::new(
                Rule::RootOfTrust,
                format!(
                    "verified boot key {} is not an allowed one",
                    hex(&rot.verified_boot_key)
                ),
            ));
        }
        if boot.require_verified_boot {
            let verified = match rot.verified_boot_state {
                VerifiedBootState::Verified => true,
                VerifiedBootState::SelfSigned => key_allowed == Some(true),
                VerifiedBootState::Unverified | VerifiedBootState::Failed => false,
            };
            if !verified {
                return Err(AttestationFault::new(
                    Rule::RootOfTrust,
                    format!(
                        "verified boot state is {}",
                        rot.verified_boot_state.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn check_app(kd: &KeyDescription, apps: &[AndroidApp]) -> Result<(), AttestationFault> {
    let Some(id) = kd.application_id() else {
        return Err(AttestationFault::new(
            Rule::ApplicationId,
            "the attestation names no application",
        ));
    };
    let names: Vec<&str> = id.packages.iter().map(|p| p.name.as_str()).collect();
    let allowed = apps.iter().any(|app| {
        names.contains(&app.package_name.as_str())
            && app
                .signature_digests
                .iter()
                .any(|d| id.signature_digests.contains(d))
    });
    if allowed {
        return Ok(());
    }
    let package_known = apps
        .iter()
        .any(|app| names.contains(&app.package_name.as_str()));
    Err(AttestationFault::new(
        Rule::ApplicationId,
        if package_known {
            format!(
                "package {} is signed by {}, not an allowed signing certificate",
                names.join(", "),
                id.signature_digests
                    .iter()
                    .map(|d| hex(d))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!("package {} is not an allowed app", names.join(", "))
        },
    ))
}

/// A verified chain accepted by the policy.
#[derive(Clone, Debug)]
pub struct AndroidVerdict {
    pub assurance: Assurance,
    pub security_level: SecurityLevel,
    pub chain: AttestedChain,
}

/// Verifies a Key Attestation chain (leaf first, DER) and applies `expected`.
///
/// `at` is the time the intermediates must be valid at: the server passes the enrollment time
/// (now); `None` uses the key's creation time as attested, which re-verifies an old chain as
/// it was when made (RKP intermediates live days, so a chain cannot be re-verified later).
pub fn verify_android(
    chain_der: &[Vec<u8>],
    expected: &AndroidExpectations,
    revoked: &RevocationList,
    at: Option<SystemTime>,
) -> Result<AndroidVerdict, AttestationFault> {
    expected.check(verify_android_chain(chain_der, revoked, at)?)
}

/// The chain rules alone (no policy): what the chain proves.
pub fn verify_android_chain(
    chain_der: &[Vec<u8>],
    revoked: &RevocationList,
    at: Option<SystemTime>,
) -> Result<AttestedChain, AttestationFault> {
    let certs = chain_der
        .iter()
        .enumerate()
        .map(|(i, der)| {
            Cert::from_der(der).map_err(|e| {
                AttestationFault::new(Rule::MalformedChain, format!("certificate {}: {e}", i + 1))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if certs.len() < 3 {
        return Err(AttestationFault::new(
            Rule::MalformedChain,
            format!(
                "{} certificate(s): a key attestation chain has at least 3 (leaf, attestation \
                 key, root)",
                certs.len()
            ),
        ));
    }
    let root = certs.last().expect("at least 3");
    if !root.is_self_issued() {
        return Err(AttestationFault::new(
            Rule::UntrustedRoot,
            format!(
                "the last certificate ({}) is not a root: its issuer is not its subject",
                root.subject_string()
            ),
        ));
    }

    // Structure: the chain has exactly the certificates of its kind, and only the first one
    // carries the attestation extension (anything signed by the attested key is refused).
    let below_root = &certs[certs.len() - 2];
    let provisioning = provisioning_of(below_root.parsed.tbs_certificate().subject());
    let expected_len = provisioning.chain_len(certs.len());
    if certs.len() > expected_len {
        let extra = certs.len() - expected_len;
        return Err(AttestationFault::new(
            Rule::ChainExtended,
            format!(
                "{} certificate(s) where a {} chain has {expected_len}: {extra} appended below \
                 the attested key ({})",
                certs.len(),
                provisioning.as_str(),
                if certs[..extra]
                    .iter()
                    .any(|c| c.extension(&KEY_ATTESTATION_OID).is_some())
                {
                    "with a fake attestation extension"
                } else {
                    "without an attestation extension"
                }
            ),
        ));
    }
    if certs.len() < expected_len {
        return Err(AttestationFault::new(
            Rule::MalformedChain,
            format!(
                "{} certificates where a {} chain has {expected_len}",
                certs.len(),
                provisioning.as_str()
            ),
        ));
    }
    if let Some(i) = certs[1..]
        .iter()
        .position(|c| c.extension(&KEY_ATTESTATION_OID).is_some())
    {
        return Err(AttestationFault::new(
            Rule::ChainExtended,
            format!(
                "certificate {} ({}) carries an attestation extension: only the leaf may",
                i + 2,
                certs[i + 1].subject_string()
            ),
        ));
    }
    let leaf = &certs[0];
    let Some(extension) = leaf.extension(&KEY_ATTESTATION_OID) else {
        return Err(AttestationFault::new(
            Rule::LeafNotAttested,
            "the first certificate has no key attestation extension",
        ));
    };

    // The anchor, by public key.
    let Some(anchor) = android_root_for(&root.spki_der()) else {
        return Err(AttestationFault::new(
            Rule::UntrustedRoot,
            format!(
                "the root ({}) is not a Google attestation root",
                root.subject_string()
            ),
        ));
    };
    let software = anchor == AndroidRoot::AospSoftware;

    // Names and signatures, from the root down (the root's own signature is not needed: its
    // key is the anchor).
    for i in (0..certs.len() - 1).rev() {
        let (cert, issuer) = (&certs[i], &certs[i + 1]);
        if cert.issuer_der() != issuer.subject_der() {
            return Err(AttestationFault::new(
                Rule::NameChaining,
                format!(
                    "certificate {} names issuer {}, but the next certificate is {}",
                    i + 1,
                    cert.parsed.tbs_certificate().issuer(),
                    issuer.subject_string()
                ),
            ));
        }
        cert.verify_signed_by(issuer, software)
            .map_err(|e| match e {
                SignatureError::Unsupported(d) => AttestationFault::new(
                    Rule::UnsupportedAlgorithm,
                    format!("certificate {}: {d}", i + 1),
                ),
                SignatureError::Invalid(d) => AttestationFault::new(
                    Rule::Signature,
                    format!("certificate {} ({}): {d}", i + 1, cert.subject_string()),
                ),
            })?;
    }

    // Revocation: any serial of the chain.
    let serials: Vec<String> = certs.iter().map(Cert::serial_hex).collect();
    for (i, serial) in serials.iter().enumerate() {
        if let Some(entry) = revoked.lookup(serial) {
            if entry.refuses() {
                return Err(AttestationFault::new(
                    Rule::Revoked,
                    format!(
                        "certificate {} ({}) serial {serial} is {}{}",
                        i + 1,
                        certs[i].subject_string(),
                        entry.status,
                        entry
                            .reason
                            .as_ref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ),
                ));
            }
        }
    }

    let key_description = KeyDescription::from_der(extension)
        .map_err(|e| AttestationFault::new(Rule::MalformedExtension, e))?;

    // Validity of the certificates between leaf and root, at the chosen time. The leaf's
    // validity is set on the device (Google's verifier ignores it too); the root is the anchor.
    let verified_at = match at {
        Some(t) => t,
        None => match key_description.creation_time_millis() {
            Some(ms) => UNIX_EPOCH + Duration::from_millis(ms),
            None => {
                return Err(AttestationFault::new(
                    Rule::Validity,
                    "the attestation has no creation time: give the time to verify at",
                ))
            }
        },
    };
    let mut expired_tolerated = Vec::new();
    for (i, cert) in certs.iter().enumerate().take(certs.len() - 1).skip(1) {
        if verified_at < cert.not_before() {
            return Err(AttestationFault::new(
                Rule::Validity,
                format!(
                    "certificate {} ({}) is not valid before {}",
                    i + 1,
                    cert.subject_string(),
                    cert.parsed.tbs_certificate().validity().not_before
                ),
            ));
        }
        if verified_at > cert.not_after() {
            if provisioning == Provisioning::Factory {
                expired_tolerated.push(cert.subject_string());
                continue;
            }
            return Err(AttestationFault::new(
                Rule::Validity,
                format!(
                    "certificate {} ({}) expired {}",
                    i + 1,
                    cert.subject_string(),
                    cert.parsed.tbs_certificate().validity().not_after
                ),
            ));
        }
    }

    let certificate_security_level = match provisioning {
        Provisioning::Remote => Some(
            match name_attribute(
                certs[1].parsed.tbs_certificate().subject(),
                OID_ORGANIZATION,
            )
            .as_deref()
            {
                Some("TEE") => SecurityLevel::TrustedEnvironment,
                Some("StrongBox") => SecurityLevel::StrongBox,
                _ => SecurityLevel::Software,
            },
        ),
        Provisioning::Factory => [&certs[1], below_root]
            .iter()
            .any(|c| c.subject_string().to_lowercase().contains("strongbox"))
            .then_some(SecurityLevel::StrongBox),
        Provisioning::Unknown => None,
    };

    Ok(AttestedChain {
        root: anchor,
        provisioning,
        certificate_security_level,
        leaf_public_key: leaf.spki_der(),
        leaf_public_key_point: leaf.public_key_bytes().to_vec(),
        leaf_key_algorithm: leaf.key_algorithm(),
        key_description,
        serials,
        verified_at,
        expired_tolerated,
    })
}

fn name_attribute(name: &Name, oid: ObjectIdentifier) -> Option<String> {
    name.iter()
        .find(|atv| atv.oid == oid)
        .map(|atv| String::from_utf8_lossy(atv.value.value()).into_owned())
}

/// Google's rule: factory chains name a `serialNumber` in the intermediate below the root,
/// RKP chains are under "Droid CA2" of "Google LLC".
fn provisioning_of(below_root_subject: &Name) -> Provisioning {
    if name_attribute(below_root_subject, OID_SERIAL_NUMBER).is_some() {
        Provisioning::Factory
    } else if name_attribute(below_root_subject, OID_COMMON_NAME).as_deref() == Some("Droid CA2")
        && name_attribute(below_root_subject, OID_ORGANIZATION).as_deref() == Some("Google LLC")
    {
        Provisioning::Remote
    } else {
        Provisioning::Unknown
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
