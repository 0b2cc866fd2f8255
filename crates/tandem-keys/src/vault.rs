use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::{KeyError, SigningAlgorithm, SigningKey};

/// Encrypts private key files with a key derived from a configured secret (AES-256-GCM, the
/// key id bound in as associated data so a file cannot be passed off under another name).
pub struct KeyEncryption {
    key: LessSafeKey,
}

impl KeyEncryption {
    pub fn from_secret(secret: &str) -> Result<KeyEncryption, KeyError> {
        let prk = Salt::new(HKDF_SHA256, b"tandem private key files v1").extract(secret.as_bytes());
        let okm = prk
            .expand(&[b"aes-256-gcm"], &AES_256_GCM)
            .map_err(|_| KeyError::Invalid("cannot derive the key-file encryption key".into()))?;
        Ok(KeyEncryption {
            key: LessSafeKey::new(UnboundKey::from(okm)),
        })
    }

    fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KeyError::Invalid("no randomness for a nonce".into()))?;
        let mut sealed = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| KeyError::Invalid("cannot encrypt a private key".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open(&self, kid: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buffer)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// One private key file: the key in PKCS#8 DER, base64, either plain or sealed.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeyFile {
    kid: String,
    algorithm: SigningAlgorithm,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pkcs8: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed: Option<String>,
}

/// The folder of this server's private keys: one file a key, mode 0600, written atomically.
pub struct KeyVault {
    dir: PathBuf,
    encryption: Option<KeyEncryption>,
}

const EXTENSION: &str = "key.json";

impl KeyVault {
    pub fn open(dir: &Path, encryption: Option<KeyEncryption>) -> Result<KeyVault, KeyError> {
        std::fs::create_dir_all(dir).map_err(|e| KeyError::file(dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| KeyError::file(dir, e))?;
        Ok(KeyVault {
            dir: dir.to_path_buf(),
            encryption,
        })
    }

    fn path_of(&self, kid: &str) -> Result<PathBuf, KeyError> {
        crate::check_instance_id(kid)
            .map_err(|_| KeyError::Invalid(format!("key id {kid:?} cannot name a file")))?;
        Ok(self.dir.join(format!("{kid}.{EXTENSION}")))
    }

    /// Every key in the folder. A plain file is rewritten sealed once encryption is configured.
    pub fn load_all(&self) -> Result<Vec<SigningKey>, KeyError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| KeyError::file(&self.dir, e))?;
        let mut keys = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| KeyError::file(&self.dir, e))?.path();
            if !path.to_string_lossy().ends_with(EXTENSION) {
                continue;
            }
            let (key, was_plain) = self.read(&path)?;
            if was_plain && self.encryption.is_some() {
                self.save(&key)?;
            }
            keys.push(key);
        }
        Ok(keys)
    }

    fn read(&self, path: &Path) -> Result<(SigningKey, bool), KeyError> {
        let text = std::fs::read(path).map_err(|e| KeyError::file(path, e))?;
        let file: KeyFile = serde_json::from_slice(&text)
            .map_err(|e| KeyError::file(path, format!("not a key file: {e}")))?;
        let decode = |b64: &str| {
            STANDARD
                .decode(b64)
                .map_err(|e| KeyError::file(path, format!("bad base64: {e}")))
        };
        let (pkcs8, was_plain) = match (&file.pkcs8, &file.sealed, &self.encryption) {
            (Some(plain), _, _) => (decode(plain)?, true),
            (None, Some(sealed), Some(encryption)) => {
                let pkcs8 = encryption.open(&file.kid, &decode(sealed)?).ok_or_else(|| {
                    KeyError::file(
                        path,
                        "cannot decrypt it: key_encryption_secret is not the secret it was encrypted with",
                    )
                })?;
                (pkcs8, false)
            }
            (None, Some(_), None) => return Err(KeyError::file(
                path,
                "it is encrypted; set key_encryption_secret to the secret it was encrypted with",
            )),
            (None, None, _) => return Err(KeyError::file(path, "it holds no key")),
        };
        let key = SigningKey::from_pkcs8(file.algorithm, file.kid, pkcs8)
            .map_err(|e| KeyError::file(path, e))?;
        Ok((key, was_plain))
    }

    /// Writes the key's file (mode 0600) and makes it durable before answering.
    pub fn save(&self, key: &SigningKey) -> Result<(), KeyError> {
        let path = self.path_of(key.kid())?;
        let mut file = KeyFile {
            kid: key.kid().to_string(),
            algorithm: key.algorithm(),
            pkcs8: None,
            sealed: None,
        };
        match &self.encryption {
            Some(encryption) => {
                file.sealed = Some(STANDARD.encode(encryption.seal(key.kid(), key.pkcs8())?))
            }
            None => file.pkcs8 = Some(STANDARD.encode(key.pkcs8())),
        }
        let text = serde_json::to_vec_pretty(&file).map_err(|e| KeyError::file(&path, e))?;
        let temporary = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)?;
            out.write_all(&text)?;
            out.sync_all()?;
            std::fs::rename(&temporary, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| KeyError::file(&path, e))
    }

    /// Deletes a key that will never sign again.
    pub fn remove(&self, kid: &str) -> Result<(), KeyError> {
        let path = self.path_of(kid)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(KeyError::file(&path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str) -> SigningKey {
        SigningKey::generate(SigningAlgorithm::Es256, kid.into()).unwrap()
    }

    #[test]
    fn keys_survive_a_reopen_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let vault = KeyVault::open(dir.path(), None).unwrap();
        let k = key("tandem-1-a");
        vault.save(&k).unwrap();
        let mode = std::fs::metadata(dir.path().join("tandem-1-a.key.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = KeyVault::open(dir.path(), None)
            .unwrap()
            .load_all()
            .unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].public_jwk(), k.public_jwk());
        vault.remove("tandem-1-a").unwrap();
        assert!(vault.load_all().unwrap().is_empty());
    }

    #[test]
    fn encrypted_files_need_the_right_secret() {
        let dir = tempfile::tempdir().unwrap();
        let sealed = || Some(KeyEncryption::from_secret("correct horse battery").unwrap());
        let vault = KeyVault::open(dir.path(), sealed()).unwrap();
        let k = key("tandem-2-b");
        vault.save(&k).unwrap();
        let text = std::fs::read_to_string(dir.path().join("tandem-2-b.key.json")).unwrap();
        assert!(text.contains("sealed") && !text.contains("pkcs8"), "{text}");

        let loaded = KeyVault::open(dir.path(), sealed())
            .unwrap()
            .load_all()
            .unwrap();
        assert_eq!(loaded[0].public_jwk(), k.public_jwk());

        let wrong = KeyEncryption::from_secret("wrong secret here").unwrap();
        let err = KeyVault::open(dir.path(), Some(wrong))
            .unwrap()
            .load_all()
            .unwrap_err();
        assert!(err.to_string().contains("cannot decrypt"), "{err}");
        let err = KeyVault::open(dir.path(), None)
            .unwrap()
            .load_all()
            .unwrap_err();
        assert!(
            err.to_string().contains("set key_encryption_secret"),
            "{err}"
        );
    }

    #[test]
    fn plain_files_are_sealed_once_a_secret_is_set() {
        let dir = tempfile::tempdir().unwrap();
        KeyVault::open(dir.path(), None)
            .unwrap()
            .save(&key("tandem-3-c"))
            .unwrap();
        let sealed = KeyEncryption::from_secret("now encrypt them").unwrap();
        KeyVault::open(dir.path(), Some(sealed))
            .unwrap()
            .load_all()
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join("tandem-3-c.key.json")).unwrap();
        assert!(text.contains("sealed") && !text.contains("pkcs8"), "{text}");
    }
}
