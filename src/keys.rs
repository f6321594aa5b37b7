//! RSA key files: loading (PKCS#1 / PKCS#8 private, SPKI / PKCS#1 public),
//! size checks, and offline generation. The rsa crate is used only here, to
//! parse and inspect keys and to generate them; all online signing and
//! verifying goes through jsonwebtoken's aws-lc-rs backend (see [`crate::token`]).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use jsonwebtoken::{DecodingKey, EncodingKey};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};

/// Below this an RSA key is refused: it no longer gives 112-bit security.
pub const MIN_BITS: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file `{path}` is not a PEM RSA {kind} key (expected {expected})")]
    Format {
        path: PathBuf,
        kind: &'static str,
        expected: &'static str,
    },
    #[error("key file `{path}` holds a {bits}-bit RSA key; at least {MIN_BITS} bits are required")]
    TooSmall { path: PathBuf, bits: usize },
    #[error("key file `{path}` already exists; pass --force to overwrite it")]
    Exists { path: PathBuf },
    #[error("cannot write key file `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key generation failed: {0}")]
    Generate(String),
}

/// The callback server's signing key, parsed once at start.
#[derive(Clone)]
pub struct SigningKey {
    pub key: EncodingKey,
    /// The same key parsed into aws-lc's key pair, which is what signs
    /// (see [`crate::token::sign_package`]): jsonwebtoken's `encode` re-parses
    /// and re-validates the DER on every signature, which costs several
    /// times the signature itself.
    pub pair: std::sync::Arc<aws_lc_rs::signature::RsaKeyPair>,
    pub bits: usize,
    pub path: PathBuf,
}

impl std::fmt::Debug for SigningKey {
    // Never print key material, even by accident in a `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("bits", &self.bits)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A public key that verifies tokens, with the name operators gave it.
#[derive(Clone)]
pub struct VerifyingKey {
    pub name: String,
    pub key: DecodingKey,
    pub bits: usize,
    pub path: PathBuf,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("name", &self.name)
            .field("bits", &self.bits)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Parses an RSA private key from PEM text, PKCS#8 or PKCS#1.
pub fn parse_private_pem(pem: &str) -> Option<RsaPrivateKey> {
    RsaPrivateKey::from_pkcs8_pem(pem)
        .ok()
        .or_else(|| RsaPrivateKey::from_pkcs1_pem(pem).ok())
}

/// Parses an RSA public key from PEM text, SPKI or PKCS#1.
pub fn parse_public_pem(pem: &str) -> Option<RsaPublicKey> {
    RsaPublicKey::from_public_key_pem(pem)
        .ok()
        .or_else(|| RsaPublicKey::from_pkcs1_pem(pem).ok())
}

fn check_bits(path: &Path, bits: usize) -> Result<(), KeyError> {
    if bits < MIN_BITS {
        return Err(KeyError::TooSmall {
            path: path.to_owned(),
            bits,
        });
    }
    Ok(())
}

/// Loads a private key for signing answers.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let pem = zeroize::Zeroizing::new(read(path)?);
    let key = parse_private_pem(&pem).ok_or_else(|| KeyError::Format {
        path: path.to_owned(),
        kind: "private",
        expected: "PKCS#8 `BEGIN PRIVATE KEY` or PKCS#1 `BEGIN RSA PRIVATE KEY`",
    })?;
    let bits = key.size() * 8;
    check_bits(path, bits)?;
    signing_key_from(&key, path)
}

/// Builds the aws-lc-rs backed signing key from a parsed private key.
pub fn signing_key_from(key: &RsaPrivateKey, path: &Path) -> Result<SigningKey, KeyError> {
    // jsonwebtoken's RSA DER constructor expects PKCS#1, whatever the file held.
    let der = key
        .to_pkcs1_der()
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let pair = aws_lc_rs::signature::RsaKeyPair::from_der(der.as_bytes())
        .map_err(|e| KeyError::Generate(format!("aws-lc rejects the key: {e}")))?;
    Ok(SigningKey {
        pair: std::sync::Arc::new(pair),
        key: EncodingKey::from_rsa_der(der.as_bytes()),
        bits: key.size() * 8,
        path: path.to_owned(),
    })
}

/// Loads a TSS Node public key for verifying request tokens.
pub fn load_verifying_key(name: &str, path: &Path) -> Result<VerifyingKey, KeyError> {
    let pem = read(path)?;
    let key = parse_public_pem(&pem).ok_or_else(|| KeyError::Format {
        path: path.to_owned(),
        kind: "public",
        expected: "SPKI `BEGIN PUBLIC KEY` or PKCS#1 `BEGIN RSA PUBLIC KEY`",
    })?;
    let bits = key.size() * 8;
    check_bits(path, bits)?;
    Ok(verifying_key_from(name, &key, path))
}

pub fn verifying_key_from(name: &str, key: &RsaPublicKey, path: &Path) -> VerifyingKey {
    VerifyingKey {
        name: name.to_owned(),
        key: DecodingKey::from_rsa_raw_components(&key.n().to_bytes_be(), &key.e().to_bytes_be()),
        bits: key.size() * 8,
        path: path.to_owned(),
    }
}

/// Generates a fresh RSA key pair (offline use only: CLI and tests).
pub fn generate(bits: usize) -> Result<RsaPrivateKey, KeyError> {
    check_generate_bits(bits)?;
    RsaPrivateKey::new(&mut rand::rngs::OsRng, bits).map_err(|e| KeyError::Generate(e.to_string()))
}

/// Largest modulus `keys generate` makes: generation time grows with the
/// fourth power of the size, and 16384 bits already takes minutes.
pub const MAX_GENERATE_BITS: usize = 16384;

/// Refuses a modulus size before any work is done.
pub fn check_generate_bits(bits: usize) -> Result<(), KeyError> {
    if bits < MIN_BITS {
        return Err(KeyError::Generate(format!(
            "{bits} bits requested; at least {MIN_BITS} are required"
        )));
    }
    if bits > MAX_GENERATE_BITS {
        return Err(KeyError::Generate(format!(
            "{bits} bits requested; at most {MAX_GENERATE_BITS} are supported"
        )));
    }
    Ok(())
}

/// Paths of a key pair written by [`write_pair`].
#[derive(Debug, Clone)]
pub struct PairPaths {
    pub private: PathBuf,
    pub public: PathBuf,
}

/// File names used for a pair called `name` in `dir`.
pub fn pair_paths(dir: &Path, name: &str) -> PairPaths {
    PairPaths {
        private: dir.join(format!("{name}.pem")),
        public: dir.join(format!("{name}.pub.pem")),
    }
}

/// Writes the private key as PKCS#8 PEM (mode 0600) and the public key as
/// SPKI PEM. Refuses to overwrite unless `force`.
pub fn write_pair(
    key: &RsaPrivateKey,
    dir: &Path,
    name: &str,
    force: bool,
) -> Result<PairPaths, KeyError> {
    let paths = pair_paths(dir, name);
    if !force {
        for p in [&paths.private, &paths.public] {
            if p.exists() {
                return Err(KeyError::Exists { path: p.clone() });
            }
        }
    }
    crate::private_fs::create_dir_all(dir).map_err(|source| KeyError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let private_pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let public_pem = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    write_file(&paths.private, private_pem.as_bytes(), 0o600, force)?;
    write_file(&paths.public, public_pem.as_bytes(), 0o644, force)?;
    Ok(paths)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32, force: bool) -> Result<(), KeyError> {
    let err = |source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    if force && path.exists() {
        // Removing first guarantees the new file gets `mode`: an existing
        // file would keep its old (possibly world-readable) permissions.
        std::fs::remove_file(path).map_err(err)?;
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_owned(),
                }
            } else {
                err(source)
            }
        })?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    Ok(())
}
