//! The flight recorder: the last N captured frames of each port, and their pcapng form.

use std::collections::VecDeque;

use aya::maps::{MapData, RingBuf};
use tracer_common::{CAPTURE_SNAPLEN, CapturedFrame, Direction};

/// One captured frame, with its timestamp on the wall clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub unix_ns: u64,
    pub frame_len: u32,
    pub inbound: bool,
    pub data: Vec<u8>,
}

/// Decodes one ring buffer record; None for a record of the wrong size.
pub fn decode(record: &[u8], monotonic_to_unix_ns: i128) -> Option<Frame> {
    if record.len() < size_of::<CapturedFrame>() {
        return None;
    }
    // SAFETY: the length was checked; CapturedFrame is plain data, read unaligned.
    let raw: CapturedFrame = unsafe { std::ptr::read_unaligned(record.as_ptr().cast()) };
    let captured = (raw.captured_len as usize).min(CAPTURE_SNAPLEN);
    Some(Frame {
        unix_ns: (i128::from(raw.timestamp_ns) + monotonic_to_unix_ns).max(0) as u64,
        frame_len: raw.frame_len,
        inbound: raw.direction == Direction::Ingress as u8,
        data: raw.data[..captured].to_vec(),
    })
}

/// The last `capacity` frames of one port, from its capture ring buffer.
pub struct FlightRecorder {
    pub interface: String,
    ring: Option<RingBuf<MapData>>,
    frames: VecDeque<Frame>,
    capacity: usize,
    /// Frames pushed out of the recorder to keep memory bounded.
    pub evicted: u64,
}

impl FlightRecorder {
    pub fn new(interface: &str, capacity: usize) -> Self {
        Self {
            interface: interface.to_owned(),
            ring: None,
            frames: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            evicted: 0,
        }
    }

    /// Reads from `ring` from now on (a port re-attached gets a new ring buffer).
    pub fn attach(&mut self, ring: Option<RingBuf<MapData>>) {
        self.ring = ring;
    }

    /// The ring buffer's descriptor, readable while frames wait: for an epoll set to wake on.
    pub fn ring_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd as _;
        self.ring.as_ref().map(|ring| ring.as_fd())
    }

    /// Moves every frame waiting in the ring buffer into the recorder, showing each to `seen`
    /// first (the recorder keeps only the last ones); returns how many.
    pub fn drain(&mut self, monotonic_to_unix_ns: i128, mut seen: impl FnMut(&Frame)) -> usize {
        let Some(ring) = &mut self.ring else {
            return 0;
        };
        let mut decoded = Vec::new();
        while let Some(record) = ring.next() {
            decoded.extend(decode(&record, monotonic_to_unix_ns));
        }
        let count = decoded.len();
        for frame in decoded {
            seen(&frame);
            self.push(frame);
        }
        count
    }

    pub fn push(&mut self, frame: Frame) {
        if self.capacity == 0 {
            self.evicted += 1;
            return;
        }
        if self.frames.len() == self.capacity {
            self.frames.pop_front();
            self.evicted += 1;
        }
        self.frames.push_back(frame);
    }

    pub fn frames(&self) -> impl Iterator<Item = &Frame> {
        self.frames.iter()
    }
}

/// The offset from CLOCK_MONOTONIC (the kernel programs' clock) to the Unix epoch.
pub fn monotonic_to_unix_ns() -> i128 {
    let read = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid timespec to write.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    };
    read(libc::CLOCK_REALTIME) - read(libc::CLOCK_MONOTONIC)
}

const LINKTYPE_ETHERNET: u16 = 1;
const BLOCK_SECTION_HEADER: u32 = 0x0A0D_0D0A;
const BLOCK_INTERFACE_DESCRIPTION: u32 = 1;
const BLOCK_ENHANCED_PACKET: u32 = 6;
const OPTION_END: u16 = 0;
const OPTION_IF_NAME: u16 = 2;
const OPTION_IF_TSRESOL: u16 = 9;
const OPTION_EPB_FLAGS: u16 = 2;
/// epb_flags direction bits: 01 inbound, 10 outbound.
const EPB_INBOUND: u32 = 1;
const EPB_OUTBOUND: u32 = 2;

fn pad4(bytes: &mut Vec<u8>) {
    while !bytes.len().is_multiple_of(4) {
        bytes.push(0);
    }
}

fn option(body: &mut Vec<u8>, code: u16, value: &[u8]) {
    body.extend_from_slice(&code.to_le_bytes());
    body.extend_from_slice(&(value.len() as u16).to_le_bytes());
    body.extend_from_slice(value);
    pad4(body);
}

fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let total = (12 + body.len()) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&total.to_le_bytes());
}

/// A pcapng file with one interface per recorder and every frame in time order, each marked
/// inbound or outbound.
pub fn pcapng(recorders: &[&FlightRecorder]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut header = Vec::new();
    header.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    header.extend_from_slice(&1u16.to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(&(-1i64).to_le_bytes());
    option(&mut header, OPTION_END, &[]);
    block(&mut out, BLOCK_SECTION_HEADER, &header);

    for recorder in recorders {
        let mut interface = Vec::new();
        interface.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        interface.extend_from_slice(&0u16.to_le_bytes());
        interface.extend_from_slice(&(CAPTURE_SNAPLEN as u32).to_le_bytes());
        option(
            &mut interface,
            OPTION_IF_NAME,
            recorder.interface.as_bytes(),
        );
        option(&mut interface, OPTION_IF_TSRESOL, &[9]); // nanoseconds
        option(&mut interface, OPTION_END, &[]);
        block(&mut out, BLOCK_INTERFACE_DESCRIPTION, &interface);
    }

    let mut frames: Vec<(u32, &Frame)> = recorders
        .iter()
        .enumerate()
        .flat_map(|(id, recorder)| recorder.frames().map(move |frame| (id as u32, frame)))
        .collect();
    frames.sort_by_key(|(_, frame)| frame.unix_ns);
    for (interface_id, frame) in frames {
        let mut packet = Vec::new();
        packet.extend_from_slice(&interface_id.to_le_bytes());
        packet.extend_from_slice(&((frame.unix_ns >> 32) as u32).to_le_bytes());
        packet.extend_from_slice(&(frame.unix_ns as u32).to_le_bytes());
        packet.extend_from_slice(&(frame.data.len() as u32).to_le_bytes());
        packet.extend_from_slice(&frame.frame_len.to_le_bytes());
        packet.extend_from_slice(&frame.data);
        pad4(&mut packet);
        let flags = if frame.inbound {
            EPB_INBOUND
        } else {
            EPB_OUTBOUND
        };
        option(&mut packet, OPTION_EPB_FLAGS, &flags.to_le_bytes());
        option(&mut packet, OPTION_END, &[]);
        block(&mut out, BLOCK_ENHANCED_PACKET, &packet);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(unix_ns: u64, inbound: bool, len: usize) -> Frame {
        Frame {
            unix_ns,
            frame_len: len as u32,
            inbound,
            data: vec![0xab; len],
        }
    }

    #[test]
    fn recorder_keeps_the_last_frames() {
        let mut recorder = FlightRecorder::new("cvl_0_1", 2);
        for i in 0..5 {
            recorder.push(frame(i, true, 60));
        }
        let kept: Vec<u64> = recorder.frames().map(|f| f.unix_ns).collect();
        assert_eq!(kept, vec![3, 4]);
        assert_eq!(recorder.evicted, 3);
    }

    #[test]
    fn decode_rejects_short_records() {
        assert!(decode(&[0; 10], 0).is_none());
    }

    /// Walks the blocks of a pcapng file: (type, body) pairs, checking both length fields.
    fn blocks(bytes: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut blocks = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
            let (kind, len) = (word(at), word(at + 4) as usize);
            assert_eq!(len % 4, 0);
            assert_eq!(word(at + len - 4) as usize, len, "trailing length");
            blocks.push((kind, bytes[at + 8..at + len - 4].to_vec()));
            at += len;
        }
        blocks
    }

    #[test]
    fn pcapng_layout() {
        let mut initiator = FlightRecorder::new("cvl_0_1", 10);
        let mut target = FlightRecorder::new("cvl_0_0", 10);
        initiator.push(frame(2_000, false, 42));
        target.push(frame(1_000, true, 61));
        let file = pcapng(&[&initiator, &target]);
        let blocks = blocks(&file);
        let kinds: Vec<u32> = blocks.iter().map(|(kind, _)| *kind).collect();
        assert_eq!(kinds, vec![BLOCK_SECTION_HEADER, 1, 1, 6, 6]);
        // Frames in time order: the target's inbound frame first, on interface 1.
        let first = &blocks[3].1;
        assert_eq!(u32::from_le_bytes(first[0..4].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(first[12..16].try_into().unwrap()), 61);
        let second = &blocks[4].1;
        assert_eq!(u32::from_le_bytes(second[0..4].try_into().unwrap()), 0);
        assert!(blocks[1].1.windows(7).any(|w| w == b"cvl_0_1"));
    }
}
