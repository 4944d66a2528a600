//! tracer: says where a packet between two cabled NIC ports died.
//!
//! The binary (`main.rs`) is a thin CLI over this library; the library is also what the fuzz
//! targets and benchmarks drive.

pub mod btf;
pub mod bundle;
pub mod cable_frame;
pub mod capture;
pub mod child;
pub mod cli;
pub mod collect;
pub mod commands;
pub mod error;
pub mod ethtool;
pub mod gather;
pub mod http;
pub mod kallsyms;
pub mod layout;
pub mod lldp;
pub mod lock;
pub mod logging;
pub mod netfilter;
pub mod netlink;
pub mod netns;
pub mod output;
pub mod pcapng;
pub mod pins;
pub mod place;
pub mod preflight;
pub mod probes;
pub mod render;
pub mod saved;
pub mod session;
pub mod spec;
pub mod tool;
