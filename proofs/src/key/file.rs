//! The key file: created once with mode 0600, refused when others can read it.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::KeyError;

/// 32 bytes from the OS random source.
pub(crate) fn random_secret() -> Result<[u8; 32], KeyError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| KeyError::Entropy(e.to_string()))?;
    Ok(secret)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The secret in `dir/name`, created if absent.
pub(crate) fn load_or_create(dir: &Path, name: &str) -> Result<[u8; 32], KeyError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    let path = dir.join(name);
    match load(&path) {
        Err(KeyError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
            create(dir, &path)
        }
        other => other,
    }
}

/// Reads an existing key file, checking type, permissions and length.
fn load(path: &Path) -> Result<[u8; 32], KeyError> {
    let file = File::open(path).map_err(io(path))?;
    let meta = file.metadata().map_err(io(path))?;
    if !meta.is_file() {
        return Err(KeyError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() != 32 {
        return Err(KeyError::BadLength {
            path: path.to_path_buf(),
            len: meta.len(),
        });
    }
    let mut bytes = Vec::with_capacity(33);
    file.take(33).read_to_end(&mut bytes).map_err(io(path))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::BadLength {
        path: path.to_path_buf(),
        len: bytes.len() as u64,
    })
}

/// Writes a fresh secret to a private temp file, then links it into place:
/// the key file never exists half-written, and if another process wins the
/// race its key is the one used.
fn create(dir: &Path, path: &Path) -> Result<[u8; 32], KeyError> {
    let secret = random_secret()?;
    let nonce = random_secret()?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("key"),
        crate::hex::encode(&nonce[..8])
    ));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&secret).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            // Make the new directory entry durable too; failure here is not fatal.
            let _ = File::open(dir).and_then(|d| d.sync_all());
            Ok(secret)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => load(path),
        Err(e) => Err(io(path)(e)),
    }
}
