//! The few X.509 facts the platform rules need, read from certificates parsed by `x509-cert`,
//! and signature checks done by `ring`.

use std::time::SystemTime;

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode, Reader, SliceReader};
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_cert::Certificate;

pub(crate) const OID_EC_PUBLIC_KEY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
pub(crate) const OID_RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
pub(crate) const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
pub(crate) const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const OID_ML_DSA_44: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.17");
const OID_ML_DSA_65: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.18");
const OID_ML_DSA_87: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.19");

/// The algorithm of a certified public key, as far as these rules care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 (what PIMS device keys are).
    EcP256,
    /// ECDSA on NIST P-384.
    EcP384,
    /// RSA, with the modulus size in bits.
    Rsa { bits: usize },
    /// ML-DSA (FIPS 204) with its parameter set (44, 65 or 87).
    MlDsa(u16),
    /// Anything else, named by its algorithm OID (and curve OID for other EC curves).
    Other(String),
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyAlgorithm::EcP256 => f.write_str("EC P-256"),
            KeyAlgorithm::EcP384 => f.write_str("EC P-384"),
            KeyAlgorithm::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyAlgorithm::MlDsa(set) => write!(f, "ML-DSA-{set}"),
            KeyAlgorithm::Other(oid) => write!(f, "unsupported key {oid}"),
        }
    }
}

/// One certificate of a chain: the parsed form plus the exact bytes the signature covers.
pub(crate) struct Cert {
    pub(crate) parsed: Certificate,
    /// The DER of `tbsCertificate` exactly as received (what the issuer signed).
    tbs: Vec<u8>,
}

impl Cert {
    pub(crate) fn from_der(der_bytes: &[u8]) -> Result<Cert, String> {
        let parsed = Certificate::from_der(der_bytes).map_err(|e| e.to_string())?;
        // The signed bytes are taken from the input, never re-encoded.
        let mut reader = SliceReader::new(der_bytes).map_err(|e| e.to_string())?;
        let tbs = reader
            .sequence(|inner: &mut SliceReader<'_>| {
                let tbs = inner.tlv_bytes()?;
                inner.tlv_bytes()?; // signatureAlgorithm
                inner.tlv_bytes()?; // signatureValue
                Ok::<_, der::Error>(tbs)
            })
            .map_err(|e| e.to_string())?
            .to_vec();
        Ok(Cert { parsed, tbs })
    }

    /// The subject name, DER-encoded (for name chaining).
    pub(crate) fn subject_der(&self) -> Vec<u8> {
        self.parsed
            .tbs_certificate()
            .subject()
            .to_der()
            .unwrap_or_default()
    }

    pub(crate) fn issuer_der(&self) -> Vec<u8> {
        self.parsed
            .tbs_certificate()
            .issuer()
            .to_der()
            .unwrap_or_default()
    }

    pub(crate) fn subject_string(&self) -> String {
        self.parsed.tbs_certificate().subject().to_string()
    }

    pub(crate) fn is_self_issued(&self) -> bool {
        self.subject_der() == self.issuer_der()
    }

    /// The whole SubjectPublicKeyInfo, DER-encoded: roots are matched on it.
    pub(crate) fn spki_der(&self) -> Vec<u8> {
        self.parsed
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap_or_default()
    }

    /// The subjectPublicKey bits: an uncompressed EC point, or an RSAPublicKey.
    pub(crate) fn public_key_bytes(&self) -> &[u8] {
        self.parsed
            .tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes()
    }

    pub(crate) fn key_algorithm(&self) -> KeyAlgorithm {
        let spki = self.parsed.tbs_certificate().subject_public_key_info();
        let oid = spki.algorithm.oid;
        if oid == OID_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
            return match curve {
                Some(c) if c == OID_P256 => KeyAlgorithm::EcP256,
                Some(c) if c == OID_P384 => KeyAlgorithm::EcP384,
                Some(c) => KeyAlgorithm::Other(format!("{oid} curve {c}")),
                None => KeyAlgorithm::Other(format!("{oid} without a named curve")),
            };
        }
        if oid == OID_RSA_ENCRYPTION {
            return KeyAlgorithm::Rsa {
                bits: rsa_modulus_bits(self.public_key_bytes()).unwrap_or(0),
            };
        }
        if oid == OID_ML_DSA_44 {
            return KeyAlgorithm::MlDsa(44);
        }
        if oid == OID_ML_DSA_65 {
            return KeyAlgorithm::MlDsa(65);
        }
        if oid == OID_ML_DSA_87 {
            return KeyAlgorithm::MlDsa(87);
        }
        KeyAlgorithm::Other(oid.to_string())
    }

    /// The serial number in the form Google's revocation list uses: lowercase hexadecimal
    /// without leading zeros (Java's `BigInteger.toString(16)`).
    pub(crate) fn serial_hex(&self) -> String {
        serial_hex(self.parsed.tbs_certificate().serial_number().as_bytes())
    }

    pub(crate) fn not_before(&self) -> SystemTime {
        self.parsed
            .tbs_certificate()
            .validity()
            .not_before
            .to_system_time()
    }

    pub(crate) fn not_after(&self) -> SystemTime {
        self.parsed
            .tbs_certificate()
            .validity()
            .not_after
            .to_system_time()
    }

    /// The value (inside the OCTET STRING) of the extension with this OID, if present.
    pub(crate) fn extension(&self, oid: &ObjectIdentifier) -> Option<&[u8]> {
        self.parsed
            .tbs_certificate()
            .extensions()?
            .iter()
            .find(|e| &e.extn_id == oid)
            .map(|e| e.extn_value.as_bytes())
    }

    /// Whether `issuer`'s key signed this certificate. `allow_legacy_rsa` admits RSA keys of
    /// 1024 bits (only the AOSP software attestation root has one).
    pub(crate) fn verify_signed_by(
        &self,
        issuer: &Cert,
        allow_legacy_rsa: bool,
    ) -> Result<(), SignatureError> {
        let signature = self
            .parsed
            .signature()
            .as_bytes()
            .ok_or_else(|| SignatureError::Invalid("signature has unused bits".into()))?;
        // The algorithm outside the signed part must be the one inside it (RFC 5280 4.1.1.2),
        // or bytes no signature covers could change unnoticed.
        if self.parsed.signature_algorithm().to_der().ok()
            != self.parsed.tbs_certificate().signature().to_der().ok()
        {
            return Err(SignatureError::Invalid(
                "the signature algorithm differs from the one in the signed part".into(),
            ));
        }
        let sig_oid = self.parsed.signature_algorithm().oid;
        verify_with_key(
            &issuer.key_algorithm(),
            issuer.public_key_bytes(),
            &sig_oid,
            &self.tbs,
            signature,
            allow_legacy_rsa,
        )
    }
}

#[derive(Debug)]
pub(crate) enum SignatureError {
    /// An algorithm (key or signature) these rules do not verify.
    Unsupported(String),
    /// The signature does not verify.
    Invalid(String),
}

pub(crate) fn verify_with_key(
    key: &KeyAlgorithm,
    key_bytes: &[u8],
    sig_oid: &ObjectIdentifier,
    message: &[u8],
    signature: &[u8],
    allow_legacy_rsa: bool,
) -> Result<(), SignatureError> {
    let algorithm: &dyn VerificationAlgorithm = match (key, *sig_oid) {
        (KeyAlgorithm::EcP256, OID_ECDSA_SHA256) => &signature::ECDSA_P256_SHA256_ASN1,
        (KeyAlgorithm::EcP256, OID_ECDSA_SHA384) => &signature::ECDSA_P256_SHA384_ASN1,
        (KeyAlgorithm::EcP384, OID_ECDSA_SHA256) => &signature::ECDSA_P384_SHA256_ASN1,
        (KeyAlgorithm::EcP384, OID_ECDSA_SHA384) => &signature::ECDSA_P384_SHA384_ASN1,
        (KeyAlgorithm::Rsa { bits }, OID_RSA_SHA256) if *bits < 2048 && allow_legacy_rsa => {
            &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY
        }
        (KeyAlgorithm::Rsa { .. }, OID_RSA_SHA256) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (KeyAlgorithm::Rsa { .. }, OID_RSA_SHA384) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (KeyAlgorithm::Rsa { .. }, OID_RSA_SHA512) => &signature::RSA_PKCS1_2048_8192_SHA512,
        (key, oid) => {
            return Err(SignatureError::Unsupported(format!(
                "signature algorithm {oid} with an issuer key {key}"
            )))
        }
    };
    UnparsedPublicKey::new(algorithm, key_bytes)
        .verify(message, signature)
        .map_err(|_| SignatureError::Invalid(format!("{key} signature does not verify")))
}

fn rsa_modulus_bits(rsa_public_key: &[u8]) -> Option<usize> {
    // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
    let mut reader = SliceReader::new(rsa_public_key).ok()?;
    let modulus = reader
        .sequence(|r: &mut SliceReader<'_>| {
            let modulus = der::asn1::UintRef::decode(r)?;
            der::asn1::UintRef::decode(r)?; // publicExponent
            Ok::<_, der::Error>(modulus)
        })
        .ok()?;
    let bytes = modulus.as_bytes();
    let first = *bytes.first()?;
    Some(bytes.len() * 8 - first.leading_zeros() as usize)
}

pub(crate) fn serial_hex(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

/// Splits PEM text into the DER of each `CERTIFICATE` block, in order.
pub fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, String> {
    use base64::Engine;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let end = after
            .find(END)
            .ok_or_else(|| "a PEM certificate has no END line".to_string())?;
        let body: String = after[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der_bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| format!("PEM certificate {}: {e}", out.len() + 1))?;
        out.push(der_bytes);
        rest = &after[end + END.len()..];
    }
    if out.is_empty() {
        return Err("no PEM certificate found".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Google's test chain whose P-256 intermediate signs with SHA-384 (a pairing real RKP
    /// chains use): every link verifies, and a wrong issuer does not.
    #[test]
    fn p256_key_with_sha384_signatures_verify() {
        let pem =
            include_str!("../tests/vectors/android-key-attestation/p256_sha384_intermediate.pem");
        let certs: Vec<Cert> = pem_certificates(pem)
            .unwrap()
            .iter()
            .map(|d| Cert::from_der(d).unwrap())
            .collect();
        assert_eq!(certs.len(), 3);
        assert_eq!(certs[1].key_algorithm(), KeyAlgorithm::EcP256);
        certs[0].verify_signed_by(&certs[1], false).unwrap();
        certs[1].verify_signed_by(&certs[2], false).unwrap();
        certs[2].verify_signed_by(&certs[2], false).unwrap();
        assert!(matches!(
            certs[0].verify_signed_by(&certs[2], false),
            Err(SignatureError::Invalid(_))
        ));
    }

    #[test]
    fn serials_are_written_as_googles_list_writes_them() {
        assert_eq!(serial_hex(&[0x00, 0x8a, 0x01]), "8a01");
        assert_eq!(serial_hex(&[0x01]), "1");
        assert_eq!(serial_hex(&[0x00]), "0");
    }
}
