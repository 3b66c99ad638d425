//! Dev mode (`--dev`, what `make run` uses): what production takes from
//! configuration is generated once and kept under the data dir, so that a
//! restart keeps sessions and credentials.

use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _, path::Path};

use anyhow::Context as _;

/// `n` random bytes from the operating system, as hex.
///
/// # Errors
/// When the operating system has no randomness to give.
pub fn random_hex(n: usize) -> anyhow::Result<String> {
    let mut bytes = vec![0_u8; n];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The secret kept in `file`, made by `make` and written (readable by its owner
/// only) when the file does not exist yet.
///
/// # Errors
/// When the file cannot be read or written.
pub fn kept_secret(file: &Path, make: impl FnOnce() -> anyhow::Result<String>) -> anyhow::Result<String> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(mut out) => {
            let secret = make()?;
            out.write_all(secret.as_bytes())
                .and_then(|()| out.sync_all())
                .with_context(|| format!("cannot write {}", file.display()))?;
            Ok(secret)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let kept =
                std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            Ok(kept.trim_end().to_owned())
        }
        Err(error) => Err(error).with_context(|| format!("cannot create {}", file.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("strata-dev-{}", uuid::Uuid::now_v7()));
        let file = dir.join("nested/secret");
        let first = kept_secret(&file, || random_hex(16)).unwrap();
        assert_eq!(first.len(), 32);
        let again = kept_secret(&file, || Ok("other".to_owned())).unwrap();
        assert_eq!(again, first);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
