//! tracer's own cable-map frames: EtherType 0x88B5 (IEEE 802's local experimental one), sent
//! to the broadcast address, naming the port that sent them and the run (a nonce), so that a
//! frame from another run or another host is never taken for one of ours.

use tracer_common::ETH_P_TRACER_CABLE;

const MAGIC: &[u8; 8] = b"TRCRCBL1";
const BROADCAST: [u8; 6] = [0xff; 6];
const ETH_HLEN: usize = 14;
/// Longest sender name carried (NETNS/IFNAME, cut): the frame stays within the capture's
/// snap length.
const NAME_MAX: usize = 160;
/// Ethernet's minimum payload: shorter frames are padded by some drivers, not by others.
const MIN_PAYLOAD: usize = 46;

/// What a cable frame says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CableFrame {
    pub nonce: u64,
    /// The sending port's index in this run's list of ports.
    pub sender: u16,
    /// The sending port, as NETNS/IFNAME (for people reading a capture).
    pub name: String,
}

impl CableFrame {
    /// The whole Ethernet frame, from `source` (the sending port's MAC).
    pub fn encode(&self, source: [u8; 6]) -> Vec<u8> {
        let mut frame = Vec::with_capacity(ETH_HLEN + MIN_PAYLOAD + NAME_MAX);
        frame.extend_from_slice(&BROADCAST);
        frame.extend_from_slice(&source);
        frame.extend_from_slice(&ETH_P_TRACER_CABLE.to_be_bytes());
        frame.extend_from_slice(MAGIC);
        frame.extend_from_slice(&self.nonce.to_be_bytes());
        frame.extend_from_slice(&self.sender.to_be_bytes());
        let name = &self.name.as_bytes()[..self.name.len().min(NAME_MAX)];
        frame.push(name.len() as u8);
        frame.extend_from_slice(name);
        frame.resize(frame.len().max(ETH_HLEN + MIN_PAYLOAD), 0);
        frame
    }

    /// One of ours, from any frame; `None` for anything else.
    pub fn decode(frame: &[u8]) -> Option<Self> {
        let ethertype = u16::from_be_bytes(frame.get(12..ETH_HLEN)?.try_into().ok()?);
        let payload = frame.get(ETH_HLEN..)?;
        if ethertype != ETH_P_TRACER_CABLE || payload.get(..MAGIC.len())? != MAGIC {
            return None;
        }
        let nonce = u64::from_be_bytes(payload.get(8..16)?.try_into().ok()?);
        let sender = u16::from_be_bytes(payload.get(16..18)?.try_into().ok()?);
        let length = usize::from(*payload.get(18)?);
        let name = payload.get(19..19 + length)?;
        Some(Self {
            nonce,
            sender,
            name: String::from_utf8_lossy(name).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_reads_back_and_nothing_else_does() {
        let sent = CableFrame {
            nonce: 0x0123_4567_89ab_cdef,
            sender: 3,
            name: "lab/cvl_0_1".to_owned(),
        };
        let frame = sent.encode([2, 0, 0, 0, 0, 1]);
        assert!(frame.len() >= 60);
        assert_eq!(CableFrame::decode(&frame), Some(sent));
        for cut in 0..33 {
            assert_eq!(CableFrame::decode(&frame[..cut]), None, "cut at {cut}");
        }
        let mut other = frame.clone();
        other[14] = b'x';
        assert_eq!(CableFrame::decode(&other), None);
    }

    #[test]
    fn a_long_name_is_cut_to_fit_the_capture() {
        let frame = CableFrame {
            nonce: 1,
            sender: 0,
            name: "n".repeat(300),
        }
        .encode([0; 6]);
        assert!(frame.len() <= tracer_common::CAPTURE_SNAPLEN);
        assert_eq!(CableFrame::decode(&frame).unwrap().name.len(), NAME_MAX);
    }
}
