pub mod counters;
pub mod diagnose;
pub mod lab;
pub mod watch;
