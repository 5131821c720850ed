//! `pims attestation verify`: check an Android key attestation chain or an Apple App Attest
//! object offline, as the server does, and print what it proves or the first rule that fails.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use base64::Engine;
use clap::{Args, Subcommand, ValueEnum};
use pims_attest::{
    AndroidApp, AndroidExpectations, AndroidVerdict, AppAttestEnvironment, AppAttestExpectations,
    AppAttestVerdict, AttestationFault, RevocationList,
};

#[derive(Subcommand)]
pub enum AttestationCommand {
    /// Verify an attestation a phone produced: print what it proves and exit 0, or the first
    /// rule that failed and exit 1.
    ///
    /// FILE is an Android key attestation chain, leaf first (PEM, or base64 DER certificates
    /// one per line), or an App Attest attestation object (base64 or raw CBOR).
    Verify(VerifyArgs),
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The attestation: a chain (PEM or base64 DER, leaf first) or an App Attest object.
    file: PathBuf,
    /// What the file holds (default: recognised from its content).
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// The expected challenge, as text.
    #[arg(long, group = "challenge_input")]
    challenge: Option<String>,
    /// The expected challenge, hexadecimal.
    #[arg(long, group = "challenge_input")]
    challenge_hex: Option<String>,
    /// The expected challenge, base64.
    #[arg(long, group = "challenge_input")]
    challenge_base64: Option<String>,
    /// The time to check certificates at: RFC 3339 (`2025-09-26T15:31:20Z`) or Unix seconds.
    /// Default: the key's creation time (Android; App Attest: the credential certificate's
    /// start).
    #[arg(long)]
    at: Option<String>,

    /// Android: `strict` (Google root, TEE or StrongBox, generated EC P-256 signing key,
    /// locked and verified boot) or `lenient` (record what the chain proves).
    #[arg(long, value_enum, default_value_t = Policy::Strict)]
    policy: Policy,
    /// Android: an allowed package name (repeat for several; default: any app).
    #[arg(long = "package")]
    packages: Vec<String>,
    /// Android: an allowed signing certificate SHA-256, hex or base64 (repeat for several;
    /// required with --package).
    #[arg(long = "cert-digest")]
    cert_digests: Vec<String>,
    /// Android: Google's revocation status list (JSON), checked offline.
    #[arg(long)]
    revocation_list: Option<PathBuf>,
    /// Android: an allowed verified boot key, hex or base64 (repeat; SELF_SIGNED boots pass
    /// only with a listed key).
    #[arg(long = "boot-key")]
    boot_keys: Vec<String>,
    /// Android: the lowest OS patch level accepted (YYYYMM).
    #[arg(long)]
    min_patch_level: Option<u64>,
    /// Android: require user authentication of these types (bit mask: 1 device credential,
    /// 2 biometric).
    #[arg(long)]
    user_auth: Option<u64>,

    /// App Attest: the Apple Developer team id.
    #[arg(long)]
    team: Option<String>,
    /// App Attest: the app's bundle id.
    #[arg(long)]
    bundle: Option<String>,
    /// App Attest: `production` or `development`.
    #[arg(long, default_value = "production")]
    environment: String,
    /// App Attest: the app passed SHA-256(challenge) as clientDataHash (default: the challenge
    /// bytes themselves, as Apple's sample does).
    #[arg(long)]
    sha256_challenge: bool,
    /// App Attest: the key id the app reported, base64.
    #[arg(long)]
    key_id: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Android,
    Apple,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Policy {
    Strict,
    Lenient,
}

pub fn run(command: AttestationCommand) -> anyhow::Result<()> {
    let AttestationCommand::Verify(args) = command;
    let challenge = challenge(&args)?;
    let at = args.at.as_deref().map(parse_time).transpose()?;
    let input = read_input(&args.file)?;
    let kind = match args.kind {
        Some(kind) => kind,
        None => match &input {
            Input::Chain(_) => Kind::Android,
            Input::Object(_) => Kind::Apple,
        },
    };
    let outcome = match (kind, input) {
        (Kind::Android, Input::Chain(chain)) => android(&args, &chain, challenge, at)?,
        (Kind::Apple, Input::Object(object)) => apple(&args, &object, challenge, at)?,
        (Kind::Android, Input::Object(_)) => bail!("{} holds no certificate", args.file.display()),
        (Kind::Apple, Input::Chain(_)) => {
            bail!(
                "{} holds certificates, not an App Attest object",
                args.file.display()
            )
        }
    };
    match outcome {
        Ok(lines) => {
            for (label, value) in lines {
                println!("{label}: {value}");
            }
            Ok(())
        }
        Err(fault) => {
            println!("refused: {fault}");
            println!("rule: {}", fault.rule);
            std::process::exit(1);
        }
    }
}

type Outcome = Result<Vec<(&'static str, String)>, AttestationFault>;

fn android(
    args: &VerifyArgs,
    chain: &[Vec<u8>],
    challenge: Vec<u8>,
    at: Option<SystemTime>,
) -> anyhow::Result<Outcome> {
    let digests = args
        .cert_digests
        .iter()
        .map(|d| bytes_arg(d).with_context(|| format!("--cert-digest {d}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !args.packages.is_empty() && digests.is_empty() {
        bail!("--package needs --cert-digest (the app's signing certificate SHA-256)");
    }
    let apps: Vec<AndroidApp> = args
        .packages
        .iter()
        .map(|p| AndroidApp {
            package_name: p.clone(),
            signature_digests: digests.clone(),
        })
        .collect();
    let mut expected = match args.policy {
        Policy::Strict => AndroidExpectations::strict(challenge, apps),
        Policy::Lenient => {
            let mut lenient = AndroidExpectations::lenient(challenge);
            lenient.apps = apps;
            lenient
        }
    };
    if !args.boot_keys.is_empty() {
        expected.boot.allowed_boot_keys = Some(
            args.boot_keys
                .iter()
                .map(|k| bytes_arg(k).with_context(|| format!("--boot-key {k}")))
                .collect::<anyhow::Result<_>>()?,
        );
    }
    expected.min_os_patch_level = args.min_patch_level;
    expected.user_auth_types = args.user_auth;
    let revoked = match &args.revocation_list {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
            RevocationList::from_json(&bytes).map_err(anyhow::Error::msg)?
        }
        None => RevocationList::empty(),
    };
    Ok(pims_attest::verify_android(chain, &expected, &revoked, at)
        .map(|v| describe_android(&v, at.is_none(), args.revocation_list.is_some())))
}

fn describe_android(
    v: &AndroidVerdict,
    at_creation: bool,
    revocation_checked: bool,
) -> Vec<(&'static str, String)> {
    let kd = &v.chain.key_description;
    let hw = &kd.hardware_enforced;
    let mut lines = vec![
        ("verified", "Android key attestation".to_string()),
        ("assurance", v.assurance.to_string()),
        (
            "security level",
            format!(
                "{} (attestation {}, KeyMint {})",
                v.security_level.as_str(),
                kd.attestation_security_level.as_str(),
                kd.keymint_security_level.as_str()
            ),
        ),
        (
            "root",
            format!(
                "{} ({} provisioning)",
                v.chain.root.as_str(),
                v.chain.provisioning.as_str()
            ),
        ),
        (
            "checked at",
            format!(
                "{}{}",
                time_text(v.chain.verified_at),
                if at_creation {
                    " (the key's creation time)"
                } else {
                    ""
                }
            ),
        ),
        ("challenge", hex(&kd.attestation_challenge)),
        ("key", v.chain.leaf_key_algorithm.to_string()),
    ];
    if let Some(created) = v.chain.key_created() {
        lines.push(("key created", time_text(created)));
    }
    if let Some(rot) = &hw.root_of_trust {
        lines.push((
            "boot",
            format!(
                "{}, {}, boot key {}",
                if rot.device_locked {
                    "locked"
                } else {
                    "unlocked"
                },
                rot.verified_boot_state.as_str(),
                hex(&rot.verified_boot_key)
            ),
        ));
    }
    if let Some(level) = hw.os_patch_level {
        lines.push(("os patch level", level.to_string()));
    }
    if let Some(app) = kd.application_id() {
        lines.push((
            "app",
            format!(
                "{} signed by {}",
                app.packages
                    .iter()
                    .map(|p| format!("{} (version {})", p.name, p.version))
                    .collect::<Vec<_>>()
                    .join(", "),
                if app.signature_digests.is_empty() {
                    "nothing listed".to_string()
                } else {
                    app.signature_digests
                        .iter()
                        .map(|d| hex(d))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        ));
    }
    lines.push((
        "user auth",
        match (hw.user_auth_type, hw.no_auth_required) {
            (Some(t), _) => format!(
                "type {t}{}",
                hw.auth_timeout
                    .map(|s| format!(", timeout {s} s"))
                    .unwrap_or_default()
            ),
            (None, true) => "none required".into(),
            (None, false) => "not stated".into(),
        },
    ));
    if !v.chain.expired_tolerated.is_empty() {
        lines.push((
            "expired factory certificates (tolerated)",
            v.chain.expired_tolerated.join("; "),
        ));
    }
    lines.push((
        "revocation",
        if revocation_checked {
            format!("no serial listed ({})", v.chain.serials.join(", "))
        } else {
            "not checked (no --revocation-list)".into()
        },
    ));
    lines
}

fn apple(
    args: &VerifyArgs,
    object: &[u8],
    challenge: Vec<u8>,
    at: Option<SystemTime>,
) -> anyhow::Result<Outcome> {
    let (Some(team), Some(bundle)) = (&args.team, &args.bundle) else {
        bail!("an App Attest object needs --team and --bundle");
    };
    let environment = AppAttestEnvironment::parse(&args.environment)
        .context("--environment is production or development")?;
    let client_data_hash = if args.sha256_challenge {
        use sha2::Digest;
        sha2::Sha256::digest(&challenge).to_vec()
    } else {
        challenge
    };
    let expected = AppAttestExpectations {
        team_id: team.clone(),
        bundle_id: bundle.clone(),
        environment,
        client_data_hash,
        key_id: args
            .key_id
            .as_deref()
            .map(|k| bytes_arg(k).context("--key-id"))
            .transpose()?,
    };
    Ok(pims_attest::verify_app_attest(object, &expected, at)
        .map(|v| describe_apple(&v, &expected, at.is_none())))
}

fn describe_apple(
    v: &AppAttestVerdict,
    expected: &AppAttestExpectations,
    at_default: bool,
) -> Vec<(&'static str, String)> {
    vec![
        ("verified", "Apple App Attest attestation".to_string()),
        ("assurance", v.assurance.to_string()),
        ("app", expected.app_id()),
        ("environment", v.environment.as_str().to_string()),
        (
            "checked at",
            format!(
                "{}{}",
                time_text(v.verified_at),
                if at_default {
                    " (the credential certificate's start)"
                } else {
                    ""
                }
            ),
        ),
        (
            "key id",
            base64::engine::general_purpose::STANDARD.encode(&v.key_id),
        ),
        ("public key", hex(&v.public_key)),
        ("counter", v.counter.to_string()),
        ("receipt", format!("{} bytes", v.receipt.len())),
    ]
}

enum Input {
    Chain(Vec<Vec<u8>>),
    Object(Vec<u8>),
}

/// PEM certificates; else base64 lines (DER certificates, or one CBOR object); else raw CBOR.
fn read_input(path: &Path) -> anyhow::Result<Input> {
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Ok(Input::Object(bytes));
    };
    if text.contains("-----BEGIN CERTIFICATE-----") {
        return pims_attest::pem_certificates(text)
            .map(Input::Chain)
            .map_err(anyhow::Error::msg);
    }
    let items = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(|s| base64::engine::general_purpose::STANDARD.decode(s))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: neither PEM nor base64", path.display()))?;
    match items.as_slice() {
        [] => bail!("{} is empty", path.display()),
        // A DER certificate is a SEQUENCE (0x30); an App Attest object a CBOR map.
        [one] if one.first() != Some(&0x30) => Ok(Input::Object(one.clone())),
        _ => Ok(Input::Chain(items)),
    }
}

fn challenge(args: &VerifyArgs) -> anyhow::Result<Vec<u8>> {
    if let Some(text) = &args.challenge {
        return Ok(text.as_bytes().to_vec());
    }
    if let Some(h) = &args.challenge_hex {
        return unhex(h).context("--challenge-hex");
    }
    if let Some(b) = &args.challenge_base64 {
        return base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .context("--challenge-base64");
    }
    bail!("give the expected challenge: --challenge, --challenge-hex or --challenge-base64")
}

/// Hexadecimal when it is, else base64.
fn bytes_arg(text: &str) -> anyhow::Result<Vec<u8>> {
    let t = text.trim();
    if t.len().is_multiple_of(2) && t.chars().all(|c| c.is_ascii_hexdigit()) {
        return unhex(t);
    }
    Ok(base64::engine::general_purpose::STANDARD.decode(t)?)
}

fn unhex(text: &str) -> anyhow::Result<Vec<u8>> {
    let t = text.trim();
    if !t.len().is_multiple_of(2) {
        bail!("odd number of hexadecimal digits");
    }
    (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&t[i..i + 2], 16).context("not hexadecimal"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_time(text: &str) -> anyhow::Result<SystemTime> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(UNIX_EPOCH + Duration::from_secs(seconds));
    }
    // Whole seconds only (der's DateTime reads `YYYY-MM-DDTHH:MM:SSZ`).
    let whole = match text.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => text.to_string(),
    };
    Ok(der::DateTime::from_str(&whole)
        .with_context(|| format!("--at {text}: RFC 3339 (2025-09-26T15:31:20Z) or Unix seconds"))?
        .to_system_time())
}

fn time_text(t: SystemTime) -> String {
    der::DateTime::from_system_time(t)
        .map(|d| d.to_string())
        .unwrap_or_else(|_| format!("{t:?}"))
}
