//! The node's signing identity and CU proving key.

use std::path::{Path, PathBuf};

use forge_circuits::{ProvingKey, VerifyingKey};
use forge_engine::Model;
use forge_proofs::{KeyError, NodeKey, ReceiptBuilder};

/// File name of the CU verifying key next to the node key.
pub const VK_FILE: &str = "cu.vk";
/// File name of the CU proving key (`forge-node setup` writes it).
pub const PK_FILE: &str = "cu.pk";

/// Where a signer's CU keys came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CuKeySource {
    /// A proving key written by `forge-node setup`.
    Setup(PathBuf),
    /// The project's canonical key pair, embedded in the binary
    /// (`forge_circuits::canonical_pk`), the one `forge-verify` trusts by default.
    Canonical,
}

/// Why the signer's keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The node key.
    #[error(transparent)]
    NodeKey(#[from] KeyError),
    /// A key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The proving key file is not a CU proving key.
    #[error("{path}: {message}")]
    ProvingKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes)
}

/// Signs receipts: the node key (ed25519) and the CU proving key.
#[derive(Debug, Clone)]
pub struct ReceiptSigner {
    key: NodeKey,
    pk: ProvingKey,
    vk: VerifyingKey,
}

impl ReceiptSigner {
    /// A signer from its parts.
    pub fn new(key: NodeKey, pk: ProvingKey, vk: VerifyingKey) -> Self {
        Self { key, pk, vk }
    }

    /// The node key in `home` (created on first use) and the CU keys:
    /// `home/cu.pk` if `forge-node setup --out <home>` wrote one, else the
    /// project's canonical keys embedded in the binary; the verifying key is
    /// written to `home/cu.vk` for `forge-verify --vk`. Returns the signer,
    /// the verifying key's path and where the keys came from.
    pub fn load(home: &Path) -> Result<(Self, PathBuf, CuKeySource), SignerError> {
        let key = NodeKey::load_or_create(home)?;
        let (pk_path, vk_path) = (home.join(PK_FILE), home.join(VK_FILE));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SignerError::Io { path, source }
        };
        if pk_path.exists() {
            let bytes = std::fs::read(&pk_path).map_err(io(&pk_path))?;
            let pk =
                forge_circuits::pk_from_bytes(&bytes).map_err(|e| SignerError::ProvingKey {
                    path: pk_path.clone(),
                    message: e.to_string(),
                })?;
            let vk = forge_circuits::vk_of(&pk);
            write_if_changed(&vk_path, &forge_circuits::vk_to_bytes(&vk)).map_err(io(&vk_path))?;
            return Ok((Self::new(key, pk, vk), vk_path, CuKeySource::Setup(pk_path)));
        }
        let (pk, vk) = (
            forge_circuits::canonical_pk().clone(),
            forge_circuits::canonical_vk().clone(),
        );
        write_if_changed(&vk_path, &forge_circuits::vk_to_bytes(&vk)).map_err(io(&vk_path))?;
        Ok((Self::new(key, pk, vk), vk_path, CuKeySource::Canonical))
    }

    /// The node's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.public_key()
    }

    /// The CU verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.vk
    }

    pub(crate) fn builder<'a>(&'a self, model: &'a Model) -> ReceiptBuilder<'a> {
        ReceiptBuilder::new(model, &self.key, &self.pk)
    }
}
