//! What failed: the first rule, named, with a sentence for people.

use std::fmt;

/// The rules, in the order they are checked. Each has a stable lowercase name (for logs,
/// stored records and the command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    // ---- Android Key Attestation ----
    /// A certificate is not DER X.509, the chain is empty or shorter than a real one.
    MalformedChain,
    /// More certificates than the chain's kind has, or the attestation extension on a
    /// certificate other than the first: something was appended below the attested key.
    ChainExtended,
    /// The first certificate does not carry the key attestation extension.
    LeafNotAttested,
    /// The chain ends at an AOSP software attestation root (its private key is public) and the
    /// policy does not accept software attestation.
    SoftwareRoot,
    /// The chain does not end at a Google attestation root (matched by public key).
    UntrustedRoot,
    /// A certificate's issuer is not the subject of the next one.
    NameChaining,
    /// A signature algorithm or key these rules cannot verify.
    UnsupportedAlgorithm,
    /// A certificate's signature does not verify with its issuer's key.
    Signature,
    /// A serial in the chain is on the revocation list.
    Revoked,
    /// The attestation extension is not a well-formed DER `KeyDescription`.
    MalformedExtension,
    /// A certificate (other than the leaf and the root) is not valid at the verification
    /// time, and the chain is not a factory chain whose expiry is tolerated.
    Validity,
    /// The attested challenge is not the expected one (another session, key or replay).
    Challenge,
    /// The certified key is not the key being enrolled.
    PublicKey,
    /// The security level is below the one the policy requires.
    SecurityLevel,
    /// The key was not generated in the secure hardware, or is not the kind required.
    KeyProperties,
    /// The bootloader is unlocked or the boot is not verified (or its key is not allowed).
    RootOfTrust,
    /// The OS patch level is older than the policy's floor.
    PatchLevel,
    /// The key belongs to another app (package or signing certificate).
    ApplicationId,
    /// The key does not require the user authentication the policy asks for.
    UserAuth,

    // ---- Apple App Attest ----
    /// Not an App Attest attestation or assertion object (CBOR, fields, format name).
    MalformedObject,
    /// The certificate chain does not lead to Apple's App Attestation Root CA, or a signature
    /// or validity check fails.
    AppleChain,
    /// The nonce in the credential certificate is not SHA-256(authData ‖ clientDataHash).
    Nonce,
    /// The key id is not SHA-256 of the certified public key, or not the expected one, or the
    /// credential id differs from it.
    KeyId,
    /// The RP id hash is not SHA-256 of `teamId.bundleId`.
    RpIdHash,
    /// The counter is not 0 (attestation) or did not grow (assertion).
    Counter,
    /// The AAGUID is for the other environment (development vs production).
    Environment,
    /// The assertion's signature does not verify with the attested key.
    AssertionSignature,
}

impl Rule {
    /// The stable name, e.g. `chain-extended`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::MalformedChain => "malformed-chain",
            Rule::ChainExtended => "chain-extended",
            Rule::LeafNotAttested => "leaf-not-attested",
            Rule::SoftwareRoot => "software-root",
            Rule::UntrustedRoot => "untrusted-root",
            Rule::NameChaining => "name-chaining",
            Rule::UnsupportedAlgorithm => "unsupported-algorithm",
            Rule::Signature => "signature",
            Rule::Revoked => "revoked",
            Rule::MalformedExtension => "malformed-extension",
            Rule::Validity => "validity",
            Rule::Challenge => "challenge",
            Rule::PublicKey => "public-key",
            Rule::SecurityLevel => "security-level",
            Rule::KeyProperties => "key-properties",
            Rule::RootOfTrust => "root-of-trust",
            Rule::PatchLevel => "patch-level",
            Rule::ApplicationId => "application-id",
            Rule::UserAuth => "user-auth",
            Rule::MalformedObject => "malformed-object",
            Rule::AppleChain => "apple-chain",
            Rule::Nonce => "nonce",
            Rule::KeyId => "key-id",
            Rule::RpIdHash => "rp-id-hash",
            Rule::Counter => "counter",
            Rule::Environment => "environment",
            Rule::AssertionSignature => "assertion-signature",
        }
    }
}

/// Stored and sent as its string form (`"chain-extended"`).
impl serde::Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused attestation: the first rule that failed and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationFault {
    pub rule: Rule,
    pub detail: String,
}

impl AttestationFault {
    pub(crate) fn new(rule: Rule, detail: impl Into<String>) -> AttestationFault {
        AttestationFault {
            rule,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for AttestationFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.detail)
    }
}

impl std::error::Error for AttestationFault {}
