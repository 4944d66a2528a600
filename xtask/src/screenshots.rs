//! `cargo xtask screenshots`: the path.svg of two verdicts on the built-in lab — a healthy loop,
//! and ICMP dropped on the target's INPUT chain — rendered by headless Chromium into
//! docs/images/ for the README. `cargo xtask setup` installs Chromium too (the tests open
//! report.html in it); installing here keeps this command working on its own.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use tracer_topology::lab::Lab;

use crate::{
    setup::install_debian_packages,
    util::{describe, run_checked, target_dir, tracer_binary, workspace_root},
};

/// The lab with SPDK's port names, in namespaces of its own (the demo's may be in use).
const INITIATOR_NS: &str = "shot_ns_initiator";
const TARGET_NS: &str = "shot_ns_spdk";
const INITIATOR: &str = "shot_ns_initiator/cvl_0_1";
const TARGET: &str = "shot_ns_spdk/cvl_0_0";
/// The browser, and the font the pictures are drawn for.
const PACKAGES: &[&str] = &["chromium", "fonts-dejavu-core"];
/// Device pixels per SVG pixel: sharp on high-density screens.
const SCALE: &str = "2";

pub fn run() -> anyhow::Result<()> {
    install_debian_packages(PACKAGES)?;
    let pictures = target_dir().join("screenshots");
    std::fs::create_dir_all(&pictures)
        .with_context(|| format!("creating {}", pictures.display()))?;
    let images = workspace_root().join("docs/images");
    std::fs::create_dir_all(&images).with_context(|| format!("creating {}", images.display()))?;
    // Refused if another `cargo xtask screenshots` holds the names; removed when dropped, on
    // failure too.
    let lab = Lab::new((INITIATOR_NS, "cvl_0_1"), (TARGET_NS, "cvl_0_0"))
        .topology()
        .build()?;
    let ok = diagnose(&pictures.join("path-ok.svg"), 0)?;
    run_checked(Command::new("ip").args([
        "netns", "exec", TARGET_NS, "iptables", "-I", "INPUT", "-p", "icmp", "-j", "DROP",
    ]))?;
    let netfilter = diagnose(&pictures.join("path-netfilter.svg"), 12)?;
    drop(lab);
    for svg in [ok, netfilter] {
        let name = svg.file_stem().context("a picture's name")?.to_owned();
        screenshot(&svg, &images.join(name).with_extension("png"))?;
    }
    Ok(())
}

/// `tracer diagnose --svg` on the lab, which must give the verdict with `expected_code`.
fn diagnose(svg: &Path, expected_code: i32) -> anyhow::Result<PathBuf> {
    let mut diagnose = Command::new(tracer_binary());
    diagnose
        .args([
            "diagnose",
            "--initiator",
            INITIATOR,
            "--target",
            TARGET,
            "--svg",
        ])
        .arg(svg);
    eprintln!("+ {}", describe(&diagnose));
    let status = diagnose.status().context("running tracer diagnose")?;
    if status.code() != Some(expected_code) {
        bail!("tracer diagnose exited with {status}, not {expected_code}");
    }
    Ok(svg.to_owned())
}

/// The picture's size, from its root element's `width` and `height`.
fn size(svg: &str) -> anyhow::Result<(u32, u32)> {
    let root = svg
        .split("<svg ")
        .nth(1)
        .and_then(|rest| rest.split('>').next())
        .context("no <svg> element")?;
    let attribute = |name: &str| -> anyhow::Result<u32> {
        let value = root
            .split(&format!(" {name}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .with_context(|| format!("no {name} on <svg>"))?;
        value
            .parse()
            .with_context(|| format!("{name}=\"{value}\" is not a whole number"))
    };
    Ok((attribute("width")?, attribute("height")?))
}

/// Renders `svg` at its own size with headless Chromium into `png`.
fn screenshot(svg: &Path, png: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(svg).with_context(|| format!("reading {}", svg.display()))?;
    let (width, height) = size(&text)?;
    let profile = std::env::temp_dir().join(format!("tracer-chromium-{}", std::process::id()));
    let mut chromium = Command::new("chromium");
    chromium
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--force-device-scale-factor={SCALE}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("file://{}", svg.display()));
    eprintln!("+ {}", describe(&chromium));
    let _ = std::fs::remove_file(png);
    // Chromium complains about the missing desktop (D-Bus and the like) at length: its output
    // is shown only when it fails.
    let output = chromium.output().context("running chromium");
    let _ = std::fs::remove_dir_all(&profile);
    let output = output?;
    if !output.status.success() || !png.exists() {
        bail!(
            "chromium did not write {} ({}): {}",
            png.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    eprintln!("screenshots: {}", png.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_size_of_the_root_element() {
        let svg = r#"<?xml version="1.0"?>
<svg xmlns="http://www.w3.org/2000/svg" width="1018" height="640" viewBox="0 0 1018 640">
<rect width="5" height="6"/></svg>"#;
        assert_eq!(size(svg).unwrap(), (1018, 640));
        assert!(size("<html/>").is_err());
    }
}
