//! Reading a bundle's capture.pcapng back (as [`crate::capture::pcapng`] writes it, or any
//! pcapng of Ethernet frames), to list its frames in report.html. The file may come from anyone
//! (`diagnose --from`): every length is checked, and a damaged file yields the frames before
//! the damage and says where it is.

/// One frame of the capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedFrame {
    /// Nanoseconds since the Unix epoch (the interface's time resolution applied).
    pub unix_ns: u128,
    /// The interface's name, or `#N` when the file did not name it.
    pub interface: String,
    /// Some(true) inbound, Some(false) outbound, None when the file did not say.
    pub inbound: Option<bool>,
    /// The frame's length on the wire.
    pub length: u32,
    /// The bytes kept (a snap length may have cut the frame).
    pub data: Vec<u8>,
}

/// The frames of a capture, and what stopped the reading early, if anything did.
#[derive(Debug, Default)]
pub struct SavedCapture {
    pub frames: Vec<SavedFrame>,
    pub damage: Option<String>,
}

const BLOCK_SECTION_HEADER: u32 = 0x0A0D_0D0A;
const BLOCK_INTERFACE_DESCRIPTION: u32 = 1;
const BLOCK_ENHANCED_PACKET: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPTION_END: u16 = 0;
const OPTION_IF_NAME: u16 = 2;
const OPTION_IF_TSRESOL: u16 = 9;
const OPTION_EPB_FLAGS: u16 = 2;

struct Interface {
    name: Option<String>,
    /// Ticks per second of the timestamps.
    ticks_per_second: u128,
}

/// Bytes read in the section's byte order.
#[derive(Clone, Copy)]
struct Order {
    big_endian: bool,
}

impl Order {
    fn u16(self, bytes: &[u8], at: usize) -> Option<u16> {
        let raw: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(raw)
        } else {
            u16::from_le_bytes(raw)
        })
    }

    fn u32(self, bytes: &[u8], at: usize) -> Option<u32> {
        let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(raw)
        } else {
            u32::from_le_bytes(raw)
        })
    }
}

/// The options after a block's fixed part: (code, value) until the end option.
fn options(order: Order, mut bytes: &[u8]) -> Vec<(u16, &[u8])> {
    let mut found = Vec::new();
    while let (Some(code), Some(length)) = (order.u16(bytes, 0), order.u16(bytes, 2)) {
        let length = usize::from(length);
        if code == OPTION_END {
            break;
        }
        let Some(value) = bytes.get(4..4 + length) else {
            break;
        };
        found.push((code, value));
        let padded = (4 + length).next_multiple_of(4);
        bytes = bytes.get(padded..).unwrap_or_default();
    }
    found
}

/// if_tsresol: a power of ten, or of two with the high bit set; microseconds when absent.
fn ticks_per_second(resolution: Option<u8>) -> u128 {
    match resolution {
        None => 1_000_000,
        Some(value) if value & 0x80 != 0 => 1u128.checked_shl(u32::from(value & 0x7f)).unwrap_or(0),
        Some(value) => 10u128.checked_pow(u32::from(value)).unwrap_or(0),
    }
}

/// The frames of a pcapng file, in file order.
pub fn read(bytes: &[u8]) -> SavedCapture {
    let mut capture = SavedCapture::default();
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut order = Order { big_endian: false };
    let mut at = 0;
    while at < bytes.len() {
        let damaged = |what: &str| Some(format!("{what} at byte {at}"));
        // The section header's own type reads the same in either order; its magic says which.
        let Some(kind) = order.u32(bytes, at) else {
            capture.damage = damaged("a cut block header");
            break;
        };
        if kind == BLOCK_SECTION_HEADER {
            let Some(magic) = bytes.get(at + 8..at + 12) else {
                capture.damage = damaged("a cut section header");
                break;
            };
            order.big_endian = match u32::from_le_bytes(magic.try_into().unwrap_or_default()) {
                BYTE_ORDER_MAGIC => false,
                magic if magic.swap_bytes() == BYTE_ORDER_MAGIC => true,
                _ => {
                    capture.damage = damaged("a section header without the byte-order magic");
                    break;
                }
            };
            interfaces.clear();
        } else if at == 0 {
            capture.damage = Some("not a pcapng file (no section header first)".to_owned());
            break;
        }
        let length = order.u32(bytes, at + 4).map_or(0, |n| n as usize);
        if length < 12 || !length.is_multiple_of(4) || at + length > bytes.len() {
            capture.damage = damaged("a block whose length does not fit the file");
            break;
        }
        if order.u32(bytes, at + length - 4).map(|n| n as usize) != Some(length) {
            capture.damage = damaged("a block whose two lengths differ");
            break;
        }
        let body = &bytes[at + 8..at + length - 4];
        match kind {
            BLOCK_INTERFACE_DESCRIPTION => {
                let found = options(order, body.get(8..).unwrap_or_default());
                let name =
                    found
                        .iter()
                        .find(|(code, _)| *code == OPTION_IF_NAME)
                        .map(|(_, value)| {
                            String::from_utf8_lossy(value)
                                .trim_end_matches('\0')
                                .to_owned()
                        });
                let resolution = found
                    .iter()
                    .find(|(code, _)| *code == OPTION_IF_TSRESOL)
                    .and_then(|(_, value)| value.first().copied());
                interfaces.push(Interface {
                    name,
                    ticks_per_second: ticks_per_second(resolution),
                });
            }
            BLOCK_ENHANCED_PACKET => match enhanced_packet(order, body, &interfaces) {
                Some(frame) => capture.frames.push(frame),
                None => {
                    capture.damage = damaged("a packet block that does not parse");
                    break;
                }
            },
            _ => {}
        }
        at += length;
    }
    capture
}

fn enhanced_packet(order: Order, body: &[u8], interfaces: &[Interface]) -> Option<SavedFrame> {
    let interface_id = order.u32(body, 0)? as usize;
    let ticks = (u128::from(order.u32(body, 4)?) << 32) | u128::from(order.u32(body, 8)?);
    let captured = order.u32(body, 12)? as usize;
    let length = order.u32(body, 16)?;
    let data = body.get(20..20 + captured)?.to_vec();
    let rest = body
        .get((20 + captured).next_multiple_of(4)..)
        .unwrap_or_default();
    let inbound = options(order, rest)
        .iter()
        .find(|(code, value)| *code == OPTION_EPB_FLAGS && value.len() == 4)
        .and_then(|(_, value)| match order.u32(value, 0)? & 0b11 {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        });
    let interface = interfaces.get(interface_id);
    let unix_ns = match interface.map_or(1_000_000, |i| i.ticks_per_second) {
        0 => 0,
        per_second => ticks.saturating_mul(1_000_000_000) / per_second,
    };
    Some(SavedFrame {
        unix_ns,
        interface: interface
            .and_then(|i| i.name.clone())
            .unwrap_or_else(|| format!("#{interface_id}")),
        inbound,
        length,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{FlightRecorder, Frame, pcapng};

    #[test]
    fn reads_what_tracer_writes() {
        let mut initiator = FlightRecorder::new("cvl_0_1", 10);
        let mut target = FlightRecorder::new("cvl_0_0", 10);
        let frame = |unix_ns, inbound, data: &[u8]| Frame {
            unix_ns,
            frame_len: data.len() as u32 + 10,
            inbound,
            data: data.to_vec(),
        };
        initiator.push(frame(2_000_000_123, false, &[1, 2, 3]));
        target.push(frame(1_000_000_000, true, &[4; 61]));
        let capture = read(&pcapng(&[&initiator, &target]));
        assert_eq!(capture.damage, None);
        assert_eq!(
            capture.frames,
            vec![
                SavedFrame {
                    unix_ns: 1_000_000_000,
                    interface: "cvl_0_0".to_owned(),
                    inbound: Some(true),
                    length: 71,
                    data: vec![4; 61],
                },
                SavedFrame {
                    unix_ns: 2_000_000_123,
                    interface: "cvl_0_1".to_owned(),
                    inbound: Some(false),
                    length: 13,
                    data: vec![1, 2, 3],
                },
            ]
        );
    }

    #[test]
    fn a_cut_file_keeps_the_frames_before_the_cut() {
        let mut recorder = FlightRecorder::new("cvl_0_1", 10);
        for i in 0..3 {
            recorder.push(Frame {
                unix_ns: i,
                frame_len: 60,
                inbound: true,
                data: vec![0; 60],
            });
        }
        let file = pcapng(&[&recorder]);
        let capture = read(&file[..file.len() - 5]);
        assert_eq!(capture.frames.len(), 2);
        assert!(capture.damage.unwrap().contains("does not fit"));
        assert!(read(b"hello world, not a capture").damage.is_some());
        assert!(read(&[]).frames.is_empty());
    }
}
