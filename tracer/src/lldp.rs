//! LLDP (IEEE 802.1AB) frames decoded into the link partner they describe. Every byte comes
//! from the wire: anything malformed is `None`, never a panic.

use tracer_common::ETH_P_LLDP;
use tracer_evidence::{LinkPartner, mac_text};

const ETH_HLEN: usize = 14;
const ETH_P_8021Q: u16 = 0x8100;
const VLAN_HLEN: usize = 4;

const TLV_END: u8 = 0;
const TLV_CHASSIS_ID: u8 = 1;
const TLV_PORT_ID: u8 = 2;
const TLV_TTL: u8 = 3;
const TLV_PORT_DESCRIPTION: u8 = 4;
const TLV_SYSTEM_NAME: u8 = 5;
const TLV_ORGANIZATION: u8 = 127;
/// IEEE 802.3's OUI, and its MAC/PHY configuration/status subtype.
const OUI_IEEE_8023: [u8; 3] = [0x00, 0x12, 0x0f];
const IEEE_8023_MAC_PHY: u8 = 1;
const AUTONEG_ENABLED: u8 = 0x02;

/// Chassis ID subtype 4 and port ID subtype 3: a MAC address.
const CHASSIS_MAC: u8 = 4;
const PORT_MAC: u8 = 3;
/// Chassis ID subtype 5 and port ID subtype 4: a network address (IANA family first).
const CHASSIS_NETWORK_ADDRESS: u8 = 5;
const PORT_NETWORK_ADDRESS: u8 = 4;

/// The link partner an Ethernet frame carrying an LLDPDU describes; `None` for any other
/// frame, or an LLDPDU without the chassis ID, port ID and TTL it must start with.
pub fn partner(frame: &[u8]) -> Option<LinkPartner> {
    let mut offset = 12;
    let mut ethertype = u16::from_be_bytes(frame.get(offset..offset + 2)?.try_into().ok()?);
    if ethertype == ETH_P_8021Q {
        offset += VLAN_HLEN;
        ethertype = u16::from_be_bytes(frame.get(offset..offset + 2)?.try_into().ok()?);
    }
    if ethertype != ETH_P_LLDP {
        return None;
    }
    lldpdu(frame.get(ETH_HLEN + offset - 12..)?)
}

/// Decodes an LLDPDU (what follows the Ethernet header).
pub fn lldpdu(mut rest: &[u8]) -> Option<LinkPartner> {
    let mut partner = LinkPartner::default();
    let (mut chassis, mut port, mut ttl) = (false, false, false);
    while rest.len() >= 2 {
        let header = u16::from_be_bytes([rest[0], rest[1]]);
        let kind = (header >> 9) as u8;
        let length = usize::from(header & 0x1ff);
        let value = rest.get(2..2 + length)?;
        rest = &rest[2 + length..];
        match kind {
            TLV_END => break,
            TLV_CHASSIS_ID => {
                partner.chassis_id = identifier(value, CHASSIS_MAC, CHASSIS_NETWORK_ADDRESS)?;
                chassis = true;
            }
            TLV_PORT_ID => {
                partner.port_id = identifier(value, PORT_MAC, PORT_NETWORK_ADDRESS)?;
                port = true;
            }
            TLV_TTL => {
                partner.ttl_secs = u16::from_be_bytes(value.try_into().ok()?);
                ttl = true;
            }
            TLV_PORT_DESCRIPTION => partner.port_description = Some(text(value)),
            TLV_SYSTEM_NAME => partner.system_name = Some(text(value)),
            TLV_ORGANIZATION => mac_phy(value, &mut partner),
            _ => {}
        }
    }
    (chassis && port && ttl).then_some(partner)
}

/// A chassis or port ID: subtype byte, then the ID in the form the subtype says.
fn identifier(value: &[u8], mac_subtype: u8, address_subtype: u8) -> Option<String> {
    let (&subtype, id) = value.split_first()?;
    if id.is_empty() {
        return None;
    }
    Some(match id {
        [a, b, c, d, e, f] if subtype == mac_subtype => mac_text([*a, *b, *c, *d, *e, *f]),
        [1, a, b, c, d] if subtype == address_subtype => format!("{a}.{b}.{c}.{d}"),
        [2, address @ ..] if subtype == address_subtype && address.len() == 16 => {
            let octets: [u8; 16] = address.try_into().ok()?;
            std::net::Ipv6Addr::from(octets).to_string()
        }
        _ => text(id),
    })
}

/// The IEEE 802.3 MAC/PHY TLV: the far end's autonegotiation and operational MAU type.
fn mac_phy(value: &[u8], partner: &mut LinkPartner) {
    if let [
        a,
        b,
        c,
        IEEE_8023_MAC_PHY,
        autoneg,
        _,
        _,
        mau_high,
        mau_low,
        ..,
    ] = *value
        && [a, b, c] == OUI_IEEE_8023
    {
        partner.autoneg = Some(autoneg & AUTONEG_ENABLED != 0);
        partner.mau_type = Some(u16::from_be_bytes([mau_high, mau_low]));
    }
}

/// Text from the wire, printable: control characters become U+FFFD.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
        let header = (u16::from(kind) << 9) | value.len() as u16;
        let mut out = header.to_be_bytes().to_vec();
        out.extend_from_slice(value);
        out
    }

    fn frame(tlvs: &[Vec<u8>]) -> Vec<u8> {
        let mut frame = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e, 2, 0, 0, 0, 0, 1];
        frame.extend_from_slice(&ETH_P_LLDP.to_be_bytes());
        for tlv in tlvs {
            frame.extend_from_slice(tlv);
        }
        frame
    }

    #[test]
    fn decodes_what_a_switch_sends() {
        let frame = frame(&[
            tlv(
                TLV_CHASSIS_ID,
                &[CHASSIS_MAC, 0x52, 0x54, 0, 0x12, 0x34, 0x56],
            ),
            tlv(TLV_PORT_ID, b"\x05Ethernet12"),
            tlv(TLV_TTL, &120u16.to_be_bytes()),
            tlv(TLV_PORT_DESCRIPTION, b"to node 7"),
            tlv(TLV_SYSTEM_NAME, b"tor-3"),
            tlv(
                TLV_ORGANIZATION,
                &[0x00, 0x12, 0x0f, 1, 0x03, 0x6c, 0x01, 0x00, 0x10],
            ),
            tlv(TLV_END, &[]),
        ]);
        let partner = partner(&frame).unwrap();
        assert_eq!(partner.chassis_id, "52:54:00:12:34:56");
        assert_eq!(partner.port_id, "Ethernet12");
        assert_eq!(partner.system_name.as_deref(), Some("tor-3"));
        assert_eq!(partner.port_description.as_deref(), Some("to node 7"));
        assert_eq!(partner.ttl_secs, 120);
        assert_eq!(partner.autoneg, Some(true));
        assert_eq!(partner.mau_type, Some(16));
        assert_eq!(partner.label(), "tor-3 Ethernet12 (to node 7)");
    }

    #[test]
    fn refuses_what_is_not_a_whole_lldpdu() {
        let whole = frame(&[
            tlv(TLV_CHASSIS_ID, &[7, b'x']),
            tlv(TLV_PORT_ID, &[7, b'y']),
            tlv(TLV_TTL, &[0, 1]),
        ]);
        assert!(partner(&whole).is_some());
        for cut in 0..whole.len() {
            assert!(partner(&whole[..cut]).is_none(), "cut at {cut}");
        }
        let without_ttl = frame(&[
            tlv(TLV_CHASSIS_ID, &[7, b'x']),
            tlv(TLV_PORT_ID, &[7, b'y']),
        ]);
        assert!(partner(&without_ttl).is_none());
        let mut other = whole.clone();
        other[12] = 0x08;
        assert!(partner(&other).is_none());
    }

    #[test]
    fn names_from_the_wire_are_printable() {
        let frame = frame(&[
            tlv(TLV_CHASSIS_ID, &[7, b'a', 0x1b, b'[', b'2', b'J']),
            tlv(TLV_PORT_ID, &[PORT_NETWORK_ADDRESS, 1, 10, 0, 0, 9]),
            tlv(TLV_TTL, &[0, 1]),
        ]);
        let partner = partner(&frame).unwrap();
        assert_eq!(partner.chassis_id, "a\u{fffd}[2J");
        assert_eq!(partner.port_id, "10.0.0.9");
    }
}
