//! Code shared by tracer's kernel programs. Each program is a binary in `src/bin/`.
#![no_std]

pub mod classify;
