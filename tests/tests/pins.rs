//! `tracer monitor` across versions of its pins: the previous release's layout, holding known
//! counts, is read on by this tracer; a map of another shape where tracer pins is named, kept,
//! and replaced only with --reset.
//!
//! The previous layout is the first monitor's (tracer-common before the drop probe counted by
//! location): `DROP_COUNTERS` keyed by (netns, ifindex, reason, protocol, padding), 16 bytes;
//! `PACKET_COUNTERS` one counter an entry, at direction × 10 kinds + kind; `LOST_EVENTS` as
//! today.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use aya::{
    maps::{Array, MapData, MapInfo, MapType, PerCpuArray, PerCpuHashMap, PerCpuValues},
    util::nr_cpus,
};
use tracer_tests::{Lab, PinDir, TracerRun, check, output, sample, scrape_until, unique};

/// A lab whose interface names are unique to the test: a monitor looks for a port wherever it
/// is, and other tests' labs run at the same time.
fn lab(tag: &str) -> Lab {
    let suffix: String = unique(tag).chars().rev().take(10).collect();
    Lab::with_names(tag, &format!("i{suffix}"), &format!("t{suffix}"), 4420)
}

fn monitor_args(lab: &Lab, address: &str, pins: &PinDir) -> Vec<String> {
    let mut args = vec!["monitor".to_owned()];
    args.extend(lab.port_args());
    args.extend(["--metrics-addr", address, "--pin-dir", &pins.arg()].map(str::to_owned));
    args
}

fn target_pins(lab: &Lab, pins: &PinDir) -> PathBuf {
    let t = &lab.target;
    pins.path
        .join("ports")
        .join(format!("{}:{}", t.netns, t.interface))
}

/// `count` on the first CPU, zero on the others.
fn on_first_cpu(count: u64) -> PerCpuValues<u64> {
    let cpus = nr_cpus().expect("counting CPUs");
    let values: Vec<u64> = (0..cpus)
        .map(|cpu| if cpu == 0 { count } else { 0 })
        .collect();
    PerCpuValues::try_from(values).expect("one value per CPU")
}

/// The interface index of the lab's target port, in its namespace.
fn target_ifindex(lab: &Lab) -> u32 {
    let out = check(Command::new("ip").args([
        "-n",
        &lab.target.netns,
        "-o",
        "link",
        "show",
        &lab.target.interface,
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(':').next().unwrap().trim().parse().unwrap()
}

/// Sum of a port's samples of `name` over every other label.
fn port_sum(exposition: &str, name: &str, role: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) && line.contains(&format!("role=\"{role}\""))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// A pin `tracer monitor --unpin` (the PinDir guard) leaves alone, as it is not tracer's:
/// removed on drop, on failure too.
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const PACKETS: u64 = 7;
const DROPS: u64 = 11;
const LOST: u64 = 4;
/// Index of (ingress, icmp_echo_request) in PACKET_COUNTERS: direction × 10 kinds + kind.
const INGRESS_ECHO_REQUEST: u32 = 2;

/// Pins what the previous release pinned for the lab's target port, holding known counts.
fn pin_previous_layout(lab: &Lab, pins: &PinDir) {
    let ports = target_pins(lab, pins);
    let drops = pins.path.join("drops");
    for directory in [&ports, &drops] {
        std::fs::create_dir_all(directory).expect("making the pin directories");
    }
    let mut packets = PerCpuArray::<MapData, u64>::create(20, 0).expect("PACKET_COUNTERS");
    packets
        .set(INGRESS_ECHO_REQUEST, on_first_cpu(PACKETS), 0)
        .expect("setting a packet count");
    packets.pin(ports.join("PACKET_COUNTERS")).expect("pinning");

    let netns = std::fs::metadata(Path::new("/run/netns").join(&lab.target.netns))
        .expect("the target's namespace file")
        .ino() as u32;
    let mut key = [0u8; 16];
    key[0..4].copy_from_slice(&netns.to_ne_bytes());
    key[4..8].copy_from_slice(&target_ifindex(lab).to_ne_bytes());
    key[8..12].copy_from_slice(&2u32.to_ne_bytes());
    key[12..14].copy_from_slice(&0x0800u16.to_ne_bytes());
    let mut drop_counters =
        PerCpuHashMap::<MapData, [u8; 16], u64>::create(1024, 0).expect("DROP_COUNTERS");
    drop_counters
        .insert(key, on_first_cpu(DROPS), 0)
        .expect("setting a drop count");
    drop_counters
        .pin(drops.join("DROP_COUNTERS"))
        .expect("pinning");

    let mut lost = PerCpuArray::<MapData, u64>::create(1, 0).expect("LOST_EVENTS");
    lost.set(0, on_first_cpu(LOST), 0)
        .expect("setting lost events");
    lost.pin(drops.join("LOST_EVENTS")).expect("pinning");
}

#[test]
fn an_upgraded_monitor_reads_the_previous_releases_counts_on() {
    let lab = lab("pup");
    let pins = PinDir::new();
    pin_previous_layout(&lab, &pins);
    let address = format!("127.0.0.1:{}", tracer_tests::free_port());
    let args = monitor_args(&lab, &address, &pins);
    let monitor = TracerRun::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let port = lab.target.spec();
    let labels = [
        ("role", "target"),
        ("pair", "0"),
        ("port", port.as_str()),
        ("direction", "ingress"),
        ("kind", "icmp_echo_request"),
    ];
    let exposition = scrape_until(&address, "the target's counters", |text| {
        sample(text, "tracer_packets_total", &labels).is_some()
    });
    // No traffic was sent: what shows is what was pinned.
    assert_eq!(
        sample(&exposition, "tracer_packets_total", &labels),
        Some(PACKETS as f64),
        "{exposition}"
    );
    assert!(
        port_sum(&exposition, "tracer_drops_total", "target") >= DROPS as f64,
        "{exposition}"
    );
    assert!(
        sample(&exposition, "tracer_lost_events_total", &[]).unwrap_or(0.0) >= LOST as f64,
        "{exposition}"
    );
    let out = monitor.stop_with(libc::SIGINT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The drop and packet counters are in today's layout now: a row of 10 counters a direction.
    let info = MapInfo::from_pin(pins.path.join("drops/DROP_COUNTERS")).expect("the new pin");
    assert_eq!(info.key_size(), 24);
    let info =
        MapInfo::from_pin(target_pins(&lab, &pins).join("PACKET_COUNTERS")).expect("the new pin");
    assert_eq!((info.value_size(), info.max_entries()), (80, 2));
}

#[test]
fn a_foreign_pin_is_named_and_kept_and_replaced_only_with_reset() {
    let lab = lab("pfo");
    let pins = PinDir::new();
    let pinned = target_pins(&lab, &pins).join("PACKET_COUNTERS");
    std::fs::create_dir_all(pinned.parent().unwrap()).unwrap();
    let _foreign_pin = RemovedOnDrop(pinned.clone());
    Array::<MapData, u32>::create(3, 0)
        .expect("someone else's map")
        .pin(&pinned)
        .expect("pinning it");
    let foreign = MapInfo::from_pin(&pinned).unwrap().id();
    let address = format!("127.0.0.1:{}", tracer_tests::free_port());
    let args = monitor_args(&lab, &address, &pins);

    // A monitor that did not stop would be killed: the test then fails on its exit code.
    let out = output(
        Command::new("timeout")
            .arg("30")
            .arg(tracer_tests::tracer_bin())
            .args(&args),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for said in [
        &pinned.display().to_string(),
        "Array map, key 4 bytes, value 4 bytes, 3 entries",
        "--reset",
    ] {
        assert!(stderr.contains(said), "{said}: {stderr}");
    }
    assert_eq!(
        MapInfo::from_pin(&pinned).expect("still pinned").id(),
        foreign
    );

    let mut with_reset: Vec<&str> = args.iter().map(String::as_str).collect();
    with_reset.push("--reset");
    let monitor = TracerRun::start(&with_reset);
    let out = monitor.stop_with(libc::SIGINT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replaced = MapInfo::from_pin(&pinned).expect("tracer's pin");
    assert_ne!(replaced.id(), foreign);
    assert_eq!(replaced.map_type().unwrap(), MapType::PerCpuArray);
    // A row of 10 counters per direction.
    assert_eq!((replaced.value_size(), replaced.max_entries()), (80, 2));
}

#[test]
fn unpin_removes_an_earlier_tracers_pins() {
    let lab = lab("pun");
    let pins = PinDir::new();
    pin_previous_layout(&lab, &pins);
    let previous = [
        target_pins(&lab, &pins).join("PACKET_COUNTERS"),
        pins.path.join("drops/DROP_COUNTERS"),
    ];
    let out = check(&mut pins.unpin());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for pin in &previous {
        assert!(!pin.exists(), "{} is still pinned: {stdout}", pin.display());
    }
}
