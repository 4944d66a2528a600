//! A read-only ethtool netlink client (generic netlink family "ethtool", Linux 5.6 and
//! newer): link modes (speed, duplex, autonegotiation), link state (with the driver's extended
//! state and link-down count where it gives them) and private flags, as `ethtool`,
//! `ethtool --show-priv-flags` print them. It only sends GET requests.

use std::{
    cell::Cell,
    io,
    os::fd::{AsRawFd as _, OwnedFd},
};

use crate::netlink::{
    codec::{
        Attribute, align, attribute_string, attribute_u8, attribute_u32, encode_attribute,
        find_attribute, malformed, parse_attributes, parse_messages,
    },
    open_netlink,
};

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const GENL_HEADER_LEN: usize = 4;
const NLMSG_HEADER_LEN: usize = 16;
const NLA_F_NESTED: u16 = 0x8000;
const ETHTOOL_GENL_VERSION: u8 = 1;

/// `ETHTOOL_MSG_*_GET` (include/uapi/linux/ethtool_netlink.h); every one of them takes the
/// device header as attribute 1.
const ETHTOOL_MSG_LINKMODES_GET: u8 = 4;
const ETHTOOL_MSG_LINKSTATE_GET: u8 = 6;
const ETHTOOL_MSG_PRIVFLAGS_GET: u8 = 13;
const ETHTOOL_A_HEADER: u16 = 1;
const ETHTOOL_A_HEADER_DEV_INDEX: u16 = 1;

const ETHTOOL_A_LINKMODES_AUTONEG: u16 = 2;
const ETHTOOL_A_LINKMODES_SPEED: u16 = 5;
const ETHTOOL_A_LINKMODES_DUPLEX: u16 = 6;
const SPEED_UNKNOWN: u32 = u32::MAX;
const DUPLEX_HALF: u8 = 0;
const DUPLEX_FULL: u8 = 1;

const ETHTOOL_A_LINKSTATE_LINK: u16 = 2;
const ETHTOOL_A_LINKSTATE_EXT_STATE: u16 = 5;
const ETHTOOL_A_LINKSTATE_EXT_SUBSTATE: u16 = 6;
const ETHTOOL_A_LINKSTATE_EXT_DOWN_CNT: u16 = 7;

const ETHTOOL_A_PRIVFLAGS_FLAGS: u16 = 2;
const ETHTOOL_A_BITSET_BITS: u16 = 3;
const ETHTOOL_A_BITSET_BITS_BIT: u16 = 1;
const ETHTOOL_A_BITSET_BIT_NAME: u16 = 2;
const ETHTOOL_A_BITSET_BIT_VALUE: u16 = 3;

/// `enum ethtool_link_ext_state`, by value.
const EXT_STATE_NAMES: [&str; 11] = [
    "autoneg",
    "link_training_failure",
    "link_logical_mismatch",
    "bad_signal_integrity",
    "no_cable",
    "cable_issue",
    "eeprom_issue",
    "calibration_failure",
    "power_budget_exceeded",
    "overheat",
    "module",
];

/// The kernel's own "not supported" (include/linux/errno.h), which some drivers return.
const ENOTSUPP: i32 = 524;

const RECEIVE_BUFFER_LEN: usize = 32 * 1024;

/// Speed, duplex and autonegotiation as the driver reports them; `None` for what it does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkModes {
    pub speed_mbps: Option<u32>,
    pub duplex: Option<String>,
    pub autoneg: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkState {
    pub link: Option<bool>,
    /// e.g. "no_cable"; the number for states newer than this list.
    pub ext_state: Option<String>,
    pub ext_substate: Option<u8>,
    pub link_down_events: Option<u32>,
}

/// A generic netlink socket talking to the ethtool family, in the namespace that was current
/// when it was opened.
pub struct EthtoolSocket {
    fd: OwnedFd,
    family: u16,
    next_sequence: Cell<u32>,
}

impl EthtoolSocket {
    /// `Ok(None)` when the kernel has no ethtool netlink family (before 5.6).
    pub fn open() -> io::Result<Option<Self>> {
        let fd = open_netlink(libc::NETLINK_GENERIC)?;
        let mut socket = Self {
            fd,
            family: GENL_ID_CTRL,
            next_sequence: Cell::new(1),
        };
        let mut name = Vec::new();
        encode_attribute(&mut name, CTRL_ATTR_FAMILY_NAME, b"ethtool\0")?;
        match socket.exchange(CTRL_CMD_GETFAMILY, &name)? {
            Ok(reply) => {
                let attributes = parse_attributes(&reply)?;
                let id = find_attribute(&attributes, CTRL_ATTR_FAMILY_ID)
                    .and_then(|id| <[u8; 2]>::try_from(id).ok())
                    .ok_or_else(|| malformed("ethtool family without an id"))?;
                socket.family = u16::from_ne_bytes(id);
                Ok(Some(socket))
            }
            Err(libc::ENOENT) => Ok(None),
            Err(errno) => Err(io::Error::from_raw_os_error(errno)),
        }
    }

    /// `Ok(None)` when the driver does not report link modes.
    pub fn link_modes(&self, ifindex: u32) -> io::Result<Option<LinkModes>> {
        self.device_request(ETHTOOL_MSG_LINKMODES_GET, ifindex)?
            .map(|reply| parse_link_modes(&reply))
            .transpose()
    }

    pub fn link_state(&self, ifindex: u32) -> io::Result<Option<LinkState>> {
        self.device_request(ETHTOOL_MSG_LINKSTATE_GET, ifindex)?
            .map(|reply| parse_link_state(&reply))
            .transpose()
    }

    /// The driver's private flags by name; `Ok(None)` when it has none.
    pub fn private_flags(&self, ifindex: u32) -> io::Result<Option<Vec<(String, bool)>>> {
        self.device_request(ETHTOOL_MSG_PRIVFLAGS_GET, ifindex)?
            .map(|reply| parse_private_flags(&reply))
            .transpose()
    }

    /// A GET for one device; `Ok(None)` when the driver does not support it.
    fn device_request(&self, command: u8, ifindex: u32) -> io::Result<Option<Vec<u8>>> {
        let mut device = Vec::new();
        encode_attribute(
            &mut device,
            ETHTOOL_A_HEADER_DEV_INDEX,
            &ifindex.to_ne_bytes(),
        )?;
        let mut header = Vec::new();
        encode_attribute(&mut header, ETHTOOL_A_HEADER | NLA_F_NESTED, &device)?;
        match self.exchange(command, &header)? {
            Ok(reply) => Ok(Some(reply)),
            Err(libc::EOPNOTSUPP | libc::ENODATA | ENOTSUPP) => Ok(None),
            Err(errno) => Err(io::Error::from_raw_os_error(errno)),
        }
    }

    /// Sends one request; the reply's attributes, or the kernel's errno.
    fn exchange(&self, command: u8, attributes: &[u8]) -> io::Result<Result<Vec<u8>, i32>> {
        let sequence = self.next_sequence.get();
        self.next_sequence.set(sequence.wrapping_add(1));
        let version = if self.family == GENL_ID_CTRL {
            1
        } else {
            ETHTOOL_GENL_VERSION
        };
        let length = NLMSG_HEADER_LEN + GENL_HEADER_LEN + attributes.len();
        let mut request = Vec::with_capacity(length);
        request.extend_from_slice(&(length as u32).to_ne_bytes());
        request.extend_from_slice(&self.family.to_ne_bytes());
        request.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        request.extend_from_slice(&sequence.to_ne_bytes());
        request.extend_from_slice(&0u32.to_ne_bytes());
        request.extend_from_slice(&[command, version, 0, 0]);
        request.extend_from_slice(attributes);
        // SAFETY: the pointer and length describe `request`; the kernel is the default peer.
        let sent = unsafe {
            let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
            kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            libc::sendto(
                self.fd.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
                (&raw const kernel).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buffer = vec![0u8; RECEIVE_BUFFER_LEN];
        loop {
            // SAFETY: the buffer is writable for its length.
            let received = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    0,
                )
            };
            let Ok(received) = usize::try_from(received) else {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            };
            if let Some(answer) = answer_to(&buffer[..received], sequence, self.family)? {
                return Ok(answer);
            }
        }
    }
}

/// The reply to request `sequence` in one datagram, if it is there: the attributes after the
/// generic netlink header, or the kernel's errno.
fn answer_to(
    datagram: &[u8],
    sequence: u32,
    family: u16,
) -> io::Result<Option<Result<Vec<u8>, i32>>> {
    for message in parse_messages(datagram)? {
        if message.sequence != sequence {
            continue;
        }
        if message.message_type == libc::NLMSG_ERROR as u16 {
            let errno = message
                .payload
                .get(..4)
                .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
                .map(i32::from_ne_bytes)
                .ok_or_else(|| malformed("error message cut short"))?;
            return Ok(Some(Err(-errno)));
        }
        if message.message_type == family {
            let attributes = message
                .payload
                .get(align(GENL_HEADER_LEN)..)
                .unwrap_or_default();
            return Ok(Some(Ok(attributes.to_vec())));
        }
    }
    Ok(None)
}

/// Parses an `ETHTOOL_MSG_LINKMODES_GET_REPLY`'s attributes.
pub fn parse_link_modes(reply: &[u8]) -> io::Result<LinkModes> {
    let attributes = parse_attributes(reply)?;
    let speed = find_attribute(&attributes, ETHTOOL_A_LINKMODES_SPEED)
        .map(|value| attribute_u32(value, "ETHTOOL_A_LINKMODES_SPEED"))
        .transpose()?;
    let duplex = find_attribute(&attributes, ETHTOOL_A_LINKMODES_DUPLEX)
        .map(|value| attribute_u8(value, "ETHTOOL_A_LINKMODES_DUPLEX"))
        .transpose()?;
    let autoneg = find_attribute(&attributes, ETHTOOL_A_LINKMODES_AUTONEG)
        .map(|value| attribute_u8(value, "ETHTOOL_A_LINKMODES_AUTONEG"))
        .transpose()?;
    Ok(LinkModes {
        speed_mbps: speed.filter(|speed| *speed != SPEED_UNKNOWN && *speed != 0),
        duplex: match duplex {
            Some(DUPLEX_HALF) => Some("half".to_owned()),
            Some(DUPLEX_FULL) => Some("full".to_owned()),
            _ => None,
        },
        autoneg: autoneg.map(|autoneg| autoneg != 0),
    })
}

/// Parses an `ETHTOOL_MSG_LINKSTATE_GET_REPLY`'s attributes.
pub fn parse_link_state(reply: &[u8]) -> io::Result<LinkState> {
    let attributes = parse_attributes(reply)?;
    let byte = |kind, what| {
        find_attribute(&attributes, kind)
            .map(|value| attribute_u8(value, what))
            .transpose()
    };
    let ext_state = byte(
        ETHTOOL_A_LINKSTATE_EXT_STATE,
        "ETHTOOL_A_LINKSTATE_EXT_STATE",
    )?;
    Ok(LinkState {
        link: byte(ETHTOOL_A_LINKSTATE_LINK, "ETHTOOL_A_LINKSTATE_LINK")?.map(|link| link != 0),
        ext_state: ext_state.map(|state| {
            EXT_STATE_NAMES
                .get(usize::from(state))
                .map_or_else(|| state.to_string(), |name| (*name).to_owned())
        }),
        ext_substate: byte(
            ETHTOOL_A_LINKSTATE_EXT_SUBSTATE,
            "ETHTOOL_A_LINKSTATE_EXT_SUBSTATE",
        )?,
        link_down_events: find_attribute(&attributes, ETHTOOL_A_LINKSTATE_EXT_DOWN_CNT)
            .map(|value| attribute_u32(value, "ETHTOOL_A_LINKSTATE_EXT_DOWN_CNT"))
            .transpose()?,
    })
}

/// Parses an `ETHTOOL_MSG_PRIVFLAGS_GET_REPLY`'s attributes: the flags' bit set, in the
/// verbose form (names, and a VALUE flag on the bits that are set).
pub fn parse_private_flags(reply: &[u8]) -> io::Result<Vec<(String, bool)>> {
    let attributes = parse_attributes(reply)?;
    let Some(bitset) = find_attribute(&attributes, ETHTOOL_A_PRIVFLAGS_FLAGS) else {
        return Ok(Vec::new());
    };
    let bitset = parse_attributes(bitset)?;
    let Some(bits) = find_attribute(&bitset, ETHTOOL_A_BITSET_BITS) else {
        return Ok(Vec::new());
    };
    parse_attributes(bits)?
        .iter()
        .filter(|bit| bit.kind == ETHTOOL_A_BITSET_BITS_BIT)
        .map(|bit: &Attribute| {
            let bit = parse_attributes(bit.value)?;
            let name = find_attribute(&bit, ETHTOOL_A_BITSET_BIT_NAME)
                .map(attribute_string)
                .ok_or_else(|| malformed("private flag without a name"))?;
            Ok((
                name,
                find_attribute(&bit, ETHTOOL_A_BITSET_BIT_VALUE).is_some(),
            ))
        })
        .collect()
}

/// Runs every decoder of this module over `bytes`, for the fuzz targets: whatever the bytes,
/// this returns, never panics. Returns how many accepted them.
pub fn parse_for_fuzzing(bytes: &[u8]) -> usize {
    usize::from(parse_link_modes(bytes).is_ok())
        + usize::from(parse_link_state(bytes).is_ok())
        + usize::from(parse_private_flags(bytes).is_ok())
        + usize::from(matches!(answer_to(bytes, 1, 20), Ok(Some(_))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_attribute(&mut out, kind, value).unwrap();
        out
    }

    #[test]
    fn link_modes_name_what_is_known_only() {
        let mut reply = attribute(ETHTOOL_A_LINKMODES_SPEED, &25_000u32.to_ne_bytes());
        reply.extend(attribute(ETHTOOL_A_LINKMODES_DUPLEX, &[DUPLEX_FULL]));
        reply.extend(attribute(ETHTOOL_A_LINKMODES_AUTONEG, &[1]));
        let modes = parse_link_modes(&reply).unwrap();
        assert_eq!(modes.speed_mbps, Some(25_000));
        assert_eq!(modes.duplex.as_deref(), Some("full"));
        assert_eq!(modes.autoneg, Some(true));
        let mut unknown = attribute(ETHTOOL_A_LINKMODES_SPEED, &SPEED_UNKNOWN.to_ne_bytes());
        unknown.extend(attribute(ETHTOOL_A_LINKMODES_DUPLEX, &[0xff]));
        assert_eq!(parse_link_modes(&unknown).unwrap(), LinkModes::default());
    }

    #[test]
    fn link_state_names_the_extended_state() {
        let mut reply = attribute(ETHTOOL_A_LINKSTATE_LINK, &[0]);
        reply.extend(attribute(ETHTOOL_A_LINKSTATE_EXT_STATE, &[4]));
        reply.extend(attribute(
            ETHTOOL_A_LINKSTATE_EXT_DOWN_CNT,
            &7u32.to_ne_bytes(),
        ));
        let state = parse_link_state(&reply).unwrap();
        assert_eq!(state.link, Some(false));
        assert_eq!(state.ext_state.as_deref(), Some("no_cable"));
        assert_eq!(state.link_down_events, Some(7));
        let newer = attribute(ETHTOOL_A_LINKSTATE_EXT_STATE, &[200]);
        assert_eq!(
            parse_link_state(&newer).unwrap().ext_state.as_deref(),
            Some("200")
        );
    }

    #[test]
    fn private_flags_read_by_name() {
        let bit = |name: &str, set: bool| {
            let mut bit = attribute(ETHTOOL_A_BITSET_BIT_NAME, format!("{name}\0").as_bytes());
            if set {
                bit.extend(attribute(ETHTOOL_A_BITSET_BIT_VALUE, &[]));
            }
            attribute(ETHTOOL_A_BITSET_BITS_BIT | NLA_F_NESTED, &bit)
        };
        let mut bits = bit("link-down-on-close", false);
        bits.extend(bit("fw-lldp-agent", true));
        let bitset = attribute(ETHTOOL_A_BITSET_BITS | NLA_F_NESTED, &bits);
        let reply = attribute(ETHTOOL_A_PRIVFLAGS_FLAGS | NLA_F_NESTED, &bitset);
        assert_eq!(
            parse_private_flags(&reply).unwrap(),
            vec![
                ("link-down-on-close".to_owned(), false),
                ("fw-lldp-agent".to_owned(), true)
            ]
        );
    }
}
