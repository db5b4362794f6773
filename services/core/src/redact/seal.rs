//! Sealing: authenticated encryption of header values for the mirror's eyes only.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// Prefix of a sealed value.
pub const SEALED_PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 24;

/// Seals and opens values with a 32-byte key shared by the tap and the mirror. The header
/// name is bound as associated data, so a sealed value cannot be moved to another header.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("seal key must be 32 bytes, got {0}")]
    KeyLength(usize),
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value does not open with this key for this header")]
    Forged,
}

impl Sealer {
    pub fn new(key: &[u8]) -> Result<Self, SealError> {
        XChaCha20Poly1305::new_from_slice(key)
            .map(|cipher| Self { cipher })
            .map_err(|_| SealError::KeyLength(key.len()))
    }

    /// `sealed:v1:<base64url(nonce || ciphertext)>`, with a fresh random nonce.
    pub fn seal(&self, header: &str, value: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption with a valid key only fails for inputs over ~256 GiB.
        let sealed = self.cipher.encrypt(&nonce, Payload { msg: value, aad: header.as_bytes() }).unwrap_or_default();
        let mut raw = nonce.to_vec();
        raw.extend(sealed);
        format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw)).into_bytes()
    }

    /// The clear value of a sealed `header` value.
    pub fn open(&self, header: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let text = std::str::from_utf8(sealed).map_err(|_| SealError::Malformed)?;
        let encoded = text.strip_prefix(SEALED_PREFIX).ok_or(SealError::Malformed)?;
        let raw = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| SealError::Malformed)?;
        if raw.len() < NONCE_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: header.as_bytes() })
            .map_err(|_| SealError::Forged)
    }
}
