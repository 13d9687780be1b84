//! Secrets at rest: XChaCha20-Poly1305 under a key stretched from `state.encryption_key` with
//! HKDF-SHA256. Each sealed value is `nonce (24 bytes) ‖ ciphertext+tag`, bound to where it is
//! stored (space and key as associated data): a sealed value copied to another row does not open.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE_BYTES: usize = 24;

/// Seals and opens secrets with the gateway's state key.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(…)")
    }
}

impl Sealer {
    /// A sealer for `passphrase` (at least [`crate::config::MIN_KEY_CHARS`] characters; checked
    /// by the config).
    pub fn new(passphrase: &str) -> Self {
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"mcp-middleware state v1"), passphrase.as_bytes());
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit (8,160): this cannot fail.
        let _ = hkdf.expand(b"secrets at rest", &mut key);
        Self { cipher: XChaCha20Poly1305::new(&key.into()) }
    }

    /// `plaintext` sealed for the row `space`/`key`.
    pub fn seal(&self, space: &str, key: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated(space, key);
        // Encryption fails only for inputs beyond ~256 GB; an empty result would not open.
        let sealed = self.cipher.encrypt(&nonce, Payload { msg: plaintext, aad: &aad }).unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plaintext of a value sealed for `space`/`key`; `None` when it was sealed with another
    /// key, for another row, or altered.
    pub fn open(&self, space: &str, key: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, body) = sealed.split_at_checked(NONCE_BYTES)?;
        let aad = associated(space, key);
        self.cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad: &aad }).ok()
    }
}

fn associated(space: &str, key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(space.len() + key.len() + 1);
    aad.extend_from_slice(space.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_where_and_with_what_they_were_sealed() {
        let sealer = Sealer::new("a passphrase of at least 32 characters");
        let sealed = sealer.seal("tokens", "github", b"gho_secret");
        assert!(!sealed.windows(10).any(|w| w == b"gho_secret"));
        assert_eq!(sealer.open("tokens", "github", &sealed).as_deref(), Some(&b"gho_secret"[..]));
        assert_eq!(sealer.open("tokens", "linear", &sealed), None, "another row");
        let other = Sealer::new("another passphrase of 32 characters!");
        assert_eq!(other.open("tokens", "github", &sealed), None, "another key");
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(sealer.open("tokens", "github", &altered), None, "altered");
        assert_eq!(sealer.open("tokens", "github", b"short"), None);
        assert_ne!(sealer.seal("t", "k", b"x"), sealer.seal("t", "k", b"x"), "fresh nonces");
    }
}
