pub mod counters;
pub mod lab;
