//! The netlink wire format: constants, request encoding, and the bounds-checked splitting of
//! datagrams into messages and attributes.

use std::{ffi::CStr, io, net::Ipv4Addr};

// Wire types of netlink header fields; libc declares these as c_int.
pub(super) const NLMSG_NOOP: u16 = libc::NLMSG_NOOP as u16;
pub(super) const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
pub(super) const NLMSG_DONE: u16 = libc::NLMSG_DONE as u16;
pub(super) const NLMSG_OVERRUN: u16 = libc::NLMSG_OVERRUN as u16;
pub(super) const NLM_F_REQUEST: u16 = libc::NLM_F_REQUEST as u16;
pub(super) const NLM_F_MULTI: u16 = libc::NLM_F_MULTI as u16;
pub(super) const NLM_F_DUMP_INTR: u16 = libc::NLM_F_DUMP_INTR as u16;
pub(super) const NLM_F_DUMP: u16 = libc::NLM_F_DUMP as u16;
/// Attribute type bits without NLA_F_NESTED and NLA_F_NET_BYTEORDER.
pub(super) const NLA_TYPE_MASK: u16 = libc::NLA_TYPE_MASK as u16;
pub(super) const AF_UNSPEC: u8 = libc::AF_UNSPEC as u8;
pub(super) const AF_INET: u8 = libc::AF_INET as u8;
pub(super) const IFF_UP: u32 = libc::IFF_UP as u32;
pub(super) const IFF_LOWER_UP: u32 = libc::IFF_LOWER_UP as u32;

/// First rtnetlink message type; types come in groups of four: NEW, DEL, GET, SET.
pub(super) const RTM_BASE: u16 = libc::RTM_NEWLINK;

// Sizes of the C structs on the wire (uapi/linux/netlink.h, rtnetlink.h, if_addr.h,
// neighbour.h); libc lacks ndmsg and rtmsg.
/// `struct nlmsghdr`.
pub(super) const NLMSG_HEADER_LEN: usize = 16;
/// `struct rtattr` (same layout as `struct nlattr`).
pub(super) const RTA_HEADER_LEN: usize = 4;
/// `struct ifinfomsg`.
pub(super) const IFINFOMSG_LEN: usize = 16;
/// `struct ifaddrmsg`.
pub(super) const IFADDRMSG_LEN: usize = 8;
/// `struct ndmsg`.
pub(super) const NDMSG_LEN: usize = 12;
/// `struct rtmsg`.
pub(super) const RTMSG_LEN: usize = 12;
/// `struct tcmsg`.
pub(super) const TCMSG_LEN: usize = 20;

// tc (uapi/linux/pkt_sched.h, rtnetlink.h, pkt_cls.h), which libc lacks.
pub(super) const RTM_DELQDISC: u16 = 37;
pub(super) const RTM_GETTFILTER: u16 = 46;
pub(super) const RTM_NEWTFILTER: u16 = 44;
pub(super) const NLM_F_ACK: u16 = libc::NLM_F_ACK as u16;
pub(super) const TC_H_CLSACT: u32 = 0xffff_fff1;
pub(super) const TC_H_MIN_INGRESS: u32 = 0xfff2;
pub(super) const TC_H_MIN_EGRESS: u32 = 0xfff3;
pub(super) const TCA_KIND: u16 = 1;
pub(super) const TCA_OPTIONS: u16 = 2;
pub(super) const TCA_BPF_NAME: u16 = 7;
pub(super) const TCA_BPF_ID: u16 = 11;
pub(super) const IFLA_XDP: u16 = 43;
pub(super) const IFLA_CARRIER_UP_COUNT: u16 = 47;
pub(super) const IFLA_CARRIER_DOWN_COUNT: u16 = 48;
pub(super) const IFLA_LINK_NETNSID: u16 = 37;
pub(super) const RTM_GETNSID: u16 = 90;
pub(super) const RTM_NEWNSID: u16 = 88;
pub(super) const NETNSA_NSID: u16 = 1;
pub(super) const NETNSA_FD: u16 = 3;
pub(super) const IFLA_INFO_SLAVE_KIND: u16 = 4;
pub(super) const IFLA_INFO_SLAVE_DATA: u16 = 5;
pub(super) const IFLA_BRPORT_STATE: u16 = 1;
pub(super) const IFLA_XDP_PROG_ID: u16 = 4;

/// What the kernel answered to one request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// Payloads of the reply messages, in order; `interrupted` if the kernel flagged the dump
    /// as possibly inconsistent.
    Messages {
        payloads: Vec<Vec<u8>>,
        interrupted: bool,
    },
    /// NLMSG_ERROR (or an NLMSG_DONE carrying an error) with this positive errno.
    KernelError { errno: i32 },
}

/// Gathers the reply to the request with one sequence number from successive datagrams.
pub(super) struct ReplyCollector {
    sequence: u32,
    reply_type: u16,
    payloads: Vec<Vec<u8>>,
    interrupted: bool,
}

impl ReplyCollector {
    pub(super) fn new(sequence: u32, reply_type: u16) -> Self {
        Self {
            sequence,
            reply_type,
            payloads: Vec::new(),
            interrupted: false,
        }
    }

    /// Takes in one datagram; returns the answer once the reply is complete.
    pub(super) fn absorb(&mut self, datagram: &[u8]) -> io::Result<Option<Answer>> {
        for message in parse_messages(datagram)? {
            // Replies to earlier requests that timed out are not ours any more.
            if message.sequence != self.sequence {
                continue;
            }
            if message.flags & NLM_F_DUMP_INTR != 0 {
                self.interrupted = true;
            }
            match message.message_type {
                NLMSG_NOOP => {}
                NLMSG_OVERRUN => return Err(malformed("netlink reported an overrun")),
                NLMSG_ERROR => {
                    let code = read_i32(message.payload, 0)
                        .ok_or_else(|| malformed("NLMSG_ERROR without an error code"))?;
                    return self.finish_with(code).map(Some);
                }
                NLMSG_DONE => {
                    // Since Linux 4.x the dump's own result follows; older kernels send nothing.
                    let code = read_i32(message.payload, 0).unwrap_or(0);
                    return self.finish_with(code).map(Some);
                }
                message_type if message_type == self.reply_type => {
                    self.payloads.push(message.payload.to_vec());
                    // A reply that is not multi-part is a single message.
                    if message.flags & NLM_F_MULTI == 0 {
                        return Ok(Some(self.finish()));
                    }
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Ends the reply on a status code: 0 is success, negative an errno.
    pub(super) fn finish_with(&mut self, code: i32) -> io::Result<Answer> {
        match code {
            0 => Ok(self.finish()),
            code if code < 0 => Ok(Answer::KernelError {
                errno: code.saturating_neg(),
            }),
            code => Err(malformed(format!("netlink status {code} is not an errno"))),
        }
    }

    pub(super) fn finish(&mut self) -> Answer {
        Answer::Messages {
            payloads: std::mem::take(&mut self.payloads),
            interrupted: self.interrupted,
        }
    }
}

/// The C library's text for an errno, e.g. "Network is unreachable".
pub(super) fn describe_errno(errno: i32) -> String {
    let mut text = [0u8; 256];
    // SAFETY: the buffer is writable for its full length; the XSI strerror_r that libc binds
    // NUL-terminates it on success.
    let status = unsafe { libc::strerror_r(errno, text.as_mut_ptr().cast(), text.len()) };
    match CStr::from_bytes_until_nul(&text) {
        Ok(text) if status == 0 && !text.is_empty() => text.to_string_lossy().into_owned(),
        _ => format!("error {errno}"),
    }
}

/// Builds a request message; refuses every type but GET and the two deletions tracer makes of
/// what it added (a clsact qdisc, a neighbour entry its probes created), so this client cannot
/// change anything else.
pub(super) fn encode_request(
    message_type: u16,
    flags: u16,
    sequence: u32,
    header: &[u8],
    attributes: &[(u16, &[u8])],
) -> io::Result<Vec<u8>> {
    let clsact_deletion =
        message_type == RTM_DELQDISC && attributes == [(TCA_KIND, b"clsact\0".as_slice())];
    // One IPv4 entry, named by its address: never a flush of a table.
    let neighbour_deletion = message_type == libc::RTM_DELNEIGH
        && header.first() == Some(&AF_INET)
        && matches!(attributes, [(libc::NDA_DST, address)] if address.len() == 4);
    if !is_get_request(message_type) && !clsact_deletion && !neighbour_deletion {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("netlink message type {message_type} is not a GET request"),
        ));
    }
    let mut body = header.to_vec();
    pad_to_alignment(&mut body);
    for (kind, value) in attributes {
        encode_attribute(&mut body, *kind, value)?;
    }
    let length = u32::try_from(NLMSG_HEADER_LEN + body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "netlink request too long"))?;
    let mut message = Vec::with_capacity(NLMSG_HEADER_LEN + body.len());
    message.extend_from_slice(&length.to_ne_bytes());
    message.extend_from_slice(&message_type.to_ne_bytes());
    message.extend_from_slice(&flags.to_ne_bytes());
    message.extend_from_slice(&sequence.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills it in
    message.extend_from_slice(&body);
    Ok(message)
}

/// Appends one attribute, padded to the 4-byte boundary (RTA_ALIGN).
pub(crate) fn encode_attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) -> io::Result<()> {
    let length = u16::try_from(RTA_HEADER_LEN + value.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "netlink attribute too long"))?;
    out.extend_from_slice(&length.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    pad_to_alignment(out);
    Ok(())
}

/// rtnetlink types come as NEW, DEL, GET, SET from RTM_BASE on; only GET reads.
pub(super) fn is_get_request(message_type: u16) -> bool {
    message_type >= RTM_BASE && (message_type - RTM_BASE) % 4 == 2
}

/// NLMSG_ALIGN and RTA_ALIGN: round up to a multiple of 4.
pub(crate) fn align(length: usize) -> usize {
    length.saturating_add(3) & !3
}

pub(super) fn pad_to_alignment(bytes: &mut Vec<u8>) {
    bytes.resize(align(bytes.len()), 0);
}

pub(crate) fn malformed(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed netlink message: {what}"),
    )
}

/// One netlink message inside a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    pub(crate) message_type: u16,
    pub(crate) flags: u16,
    pub(crate) sequence: u32,
    pub(crate) payload: &'a [u8],
}

/// Splits a datagram into its messages.
pub(crate) fn parse_messages(datagram: &[u8]) -> io::Result<Vec<Message<'_>>> {
    let mut messages = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        if rest.len() < NLMSG_HEADER_LEN {
            return Err(malformed(format!(
                "{} bytes after the last message",
                rest.len()
            )));
        }
        let cut_short = || malformed("netlink header cut short");
        let length = read_u32(rest, 0).ok_or_else(cut_short)? as usize;
        let message_type = read_u16(rest, 4).ok_or_else(cut_short)?;
        let flags = read_u16(rest, 6).ok_or_else(cut_short)?;
        let sequence = read_u32(rest, 8).ok_or_else(cut_short)?;
        if length < NLMSG_HEADER_LEN || length > rest.len() {
            return Err(malformed(format!(
                "message length {length} with {} bytes left",
                rest.len()
            )));
        }
        let payload = rest
            .get(NLMSG_HEADER_LEN..length)
            .ok_or_else(|| malformed("message payload out of bounds"))?;
        messages.push(Message {
            message_type,
            flags,
            sequence,
            payload,
        });
        rest = rest.get(align(length)..).unwrap_or_default();
    }
    Ok(messages)
}

/// One attribute (`struct rtattr` plus value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attribute<'a> {
    /// Type without the NLA_F_NESTED and NLA_F_NET_BYTEORDER flags.
    pub(crate) kind: u16,
    pub(crate) value: &'a [u8],
}

/// Splits an attribute area (what follows a family header, or a nested attribute's value).
pub(crate) fn parse_attributes(area: &[u8]) -> io::Result<Vec<Attribute<'_>>> {
    let mut attributes = Vec::new();
    let mut rest = area;
    while !rest.is_empty() {
        let cut_short = || malformed(format!("{} bytes after the last attribute", rest.len()));
        let length = usize::from(read_u16(rest, 0).ok_or_else(cut_short)?);
        let kind = read_u16(rest, 2).ok_or_else(cut_short)?;
        if length < RTA_HEADER_LEN || length > rest.len() {
            return Err(malformed(format!(
                "attribute {kind} length {length} with {} bytes left",
                rest.len()
            )));
        }
        let value = rest
            .get(RTA_HEADER_LEN..length)
            .ok_or_else(|| malformed("attribute value out of bounds"))?;
        attributes.push(Attribute {
            kind: kind & NLA_TYPE_MASK,
            value,
        });
        rest = rest.get(align(length)..).unwrap_or_default();
    }
    Ok(attributes)
}

/// The value of the first attribute of `kind`.
pub(crate) fn find_attribute<'a>(attributes: &[Attribute<'a>], kind: u16) -> Option<&'a [u8]> {
    attributes
        .iter()
        .find(|attribute| attribute.kind == kind)
        .map(|attribute| attribute.value)
}

/// Splits a message payload into its fixed family header and its attributes.
pub(super) fn split_family_header<'a, const LEN: usize>(
    payload: &'a [u8],
    what: &str,
) -> io::Result<(&'a [u8; LEN], Vec<Attribute<'a>>)> {
    let header = payload
        .get(..LEN)
        .and_then(|header| <&[u8; LEN]>::try_from(header).ok())
        .ok_or_else(|| malformed(format!("{what} cut short")))?;
    let attributes = payload.get(align(LEN)..).unwrap_or_default();
    Ok((header, parse_attributes(attributes)?))
}

pub(super) fn read_array<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    bytes.get(offset..offset.checked_add(N)?)?.try_into().ok()
}

pub(super) fn read_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    read_array(bytes, offset).map(u16::from_ne_bytes)
}

pub(super) fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    read_array(bytes, offset).map(u32::from_ne_bytes)
}

pub(super) fn read_i32(bytes: &[u8], offset: usize) -> Option<i32> {
    read_array(bytes, offset).map(i32::from_ne_bytes)
}

/// An interface index from a C `int` field: never negative.
pub(super) fn ifindex_from(index: i32, what: &str) -> io::Result<u32> {
    u32::try_from(index).map_err(|_| malformed(format!("{what} has interface index {index}")))
}

/// A string attribute: up to the first NUL, if any.
pub(crate) fn attribute_string(value: &[u8]) -> String {
    let text = value.split(|&byte| byte == 0).next().unwrap_or_default();
    String::from_utf8_lossy(text).into_owned()
}

pub(crate) fn attribute_u8(value: &[u8], what: &str) -> io::Result<u8> {
    match value {
        [byte] => Ok(*byte),
        _ => Err(malformed(format!("{what} is {} bytes, not 1", value.len()))),
    }
}

pub(crate) fn attribute_u32(value: &[u8], what: &str) -> io::Result<u32> {
    <[u8; 4]>::try_from(value)
        .map(u32::from_ne_bytes)
        .map_err(|_| malformed(format!("{what} is {} bytes, not 4", value.len())))
}

pub(super) fn attribute_ipv4(value: &[u8], what: &str) -> io::Result<Ipv4Addr> {
    <[u8; 4]>::try_from(value).map(Ipv4Addr::from).map_err(|_| {
        malformed(format!(
            "{what} is {} bytes, not an IPv4 address",
            value.len()
        ))
    })
}

pub(super) fn attribute_mac(value: &[u8]) -> Option<[u8; 6]> {
    value.try_into().ok()
}

/// A `struct tcmsg`: family unspecified, the interface, the handle and parent.
pub(super) fn tcmsg(ifindex: u32, handle: u32, parent: u32) -> [u8; TCMSG_LEN] {
    let mut header = [0u8; TCMSG_LEN];
    header[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    header[8..12].copy_from_slice(&handle.to_ne_bytes());
    header[12..16].copy_from_slice(&parent.to_ne_bytes());
    header
}
