//! A small reader for the kernel's BTF (/sys/kernel/btf/vmlinux): struct member offsets and
//! enum variants, which differ between kernels and so are never hard-coded.

use std::{collections::HashMap, path::Path};

use thiserror::Error;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, Error)]
pub enum BtfError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    #[error("the kernel's BTF has no {kind} named `{name}`")]
    NotFound { kind: &'static str, name: String },
    #[error("the kernel's BTF has no member `{member}` in struct {strukt}")]
    NoMember { strukt: String, member: String },
}

const MAGIC: u16 = 0xeb9f;
const HEADER_MIN_LEN: usize = 24;
/// Anonymous structs and unions one member lookup may look into. The kernel's structs need far
/// fewer; the bound keeps a malformed BTF (an anonymous member of its own type, or nesting
/// without end) from recursing until the stack overflows.
const ANONYMOUS_MEMBERS_MAX: usize = 256;

// BTF kinds, from include/uapi/linux/btf.h.
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Member {
    name: String,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Debug, Clone)]
enum Type {
    /// Struct or union.
    Composite {
        members: Vec<Member>,
    },
    Enum {
        variants: Vec<(String, i64)>,
    },
    /// Typedef, const, volatile, restrict, type tag: look through to `target`.
    Alias {
        target: u32,
    },
    Other,
}

/// Parsed kernel BTF: types by id, and the ids of named types.
#[derive(Debug)]
pub struct Btf {
    types: Vec<Type>,
    by_name: HashMap<(u32, String), u32>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u32(&mut self) -> Result<u32, BtfError> {
        let end = self.pos + 4;
        let bytes = self
            .bytes
            .get(self.pos..end)
            .ok_or(BtfError::Malformed("type section truncated"))?;
        self.pos = end;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn skip(&mut self, len: usize) -> Result<(), BtfError> {
        self.pos += len;
        if self.pos > self.bytes.len() {
            return Err(BtfError::Malformed("type section truncated"));
        }
        Ok(())
    }
}

fn le_u32(bytes: &[u8], at: usize) -> Result<u32, BtfError> {
    let b = bytes
        .get(at..at + 4)
        .ok_or(BtfError::Malformed("header truncated"))?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn string_at(strings: &[u8], offset: u32) -> Result<String, BtfError> {
    let start = offset as usize;
    let tail = strings
        .get(start..)
        .ok_or(BtfError::Malformed("string offset out of range"))?;
    let len = tail
        .iter()
        .position(|&b| b == 0)
        .ok_or(BtfError::Malformed("unterminated string"))?;
    Ok(String::from_utf8_lossy(&tail[..len]).into_owned())
}

impl Btf {
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new(VMLINUX_BTF))
    }

    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let bytes = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&bytes)
    }

    /// Parses raw little-endian BTF (the format of /sys/kernel/btf/vmlinux).
    pub fn parse(bytes: &[u8]) -> Result<Self, BtfError> {
        let magic = bytes
            .get(0..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or(BtfError::Malformed("header truncated"))?;
        if magic != MAGIC {
            return Err(BtfError::Malformed("bad magic (not little-endian BTF)"));
        }
        let header_len = le_u32(bytes, 4)? as usize;
        if header_len < HEADER_MIN_LEN {
            return Err(BtfError::Malformed("header too short"));
        }
        let section = |off_at: usize, len_at: usize| -> Result<&[u8], BtfError> {
            let start = header_len + le_u32(bytes, off_at)? as usize;
            let len = le_u32(bytes, len_at)? as usize;
            bytes
                .get(start..start + len)
                .ok_or(BtfError::Malformed("section out of range"))
        };
        let type_section = section(8, 12)?;
        let strings = section(16, 20)?;

        // Type id 0 is `void`.
        let mut types = vec![Type::Other];
        let mut by_name = HashMap::new();
        let mut reader = Reader {
            bytes: type_section,
            pos: 0,
        };
        while reader.pos < type_section.len() {
            let name_off = reader.u32()?;
            let info = reader.u32()?;
            let size_or_type = reader.u32()?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let bitfield_offsets = info >> 31 == 1;
            let ty = match kind {
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let name = string_at(strings, reader.u32()?)?;
                        let type_id = reader.u32()?;
                        let offset = reader.u32()?;
                        let bit_offset = if bitfield_offsets {
                            offset & 0x00ff_ffff
                        } else {
                            offset
                        };
                        members.push(Member {
                            name,
                            type_id,
                            bit_offset,
                        });
                    }
                    Type::Composite { members }
                }
                KIND_ENUM => {
                    let mut variants = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let name = string_at(strings, reader.u32()?)?;
                        let value = reader.u32()?;
                        let value = if info >> 31 == 1 {
                            i64::from(value as i32)
                        } else {
                            i64::from(value)
                        };
                        variants.push((name, value));
                    }
                    Type::Enum { variants }
                }
                KIND_ENUM64 => {
                    let mut variants = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let name = string_at(strings, reader.u32()?)?;
                        let low = u64::from(reader.u32()?);
                        let high = u64::from(reader.u32()?);
                        variants.push((name, ((high << 32) | low) as i64));
                    }
                    Type::Enum { variants }
                }
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    Type::Alias {
                        target: size_or_type,
                    }
                }
                KIND_INT | KIND_VAR | KIND_DECL_TAG => {
                    reader.skip(4)?;
                    Type::Other
                }
                KIND_ARRAY => {
                    reader.skip(12)?;
                    Type::Other
                }
                KIND_FUNC_PROTO => {
                    reader.skip(8 * vlen)?;
                    Type::Other
                }
                KIND_DATASEC => {
                    reader.skip(12 * vlen)?;
                    Type::Other
                }
                KIND_PTR | KIND_FWD | KIND_FUNC | KIND_FLOAT => Type::Other,
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            let id = types.len() as u32;
            if name_off != 0 && matches!(kind, KIND_STRUCT | KIND_ENUM | KIND_ENUM64) {
                let name = string_at(strings, name_off)?;
                let key_kind = if kind == KIND_STRUCT {
                    KIND_STRUCT
                } else {
                    KIND_ENUM
                };
                by_name.entry((key_kind, name)).or_insert(id);
            }
            types.push(ty);
        }
        Ok(Self { types, by_name })
    }

    fn resolve(&self, mut id: u32) -> Option<&Type> {
        // Alias chains are short; the bound only guards against a malformed loop.
        for _ in 0..32 {
            match self.types.get(id as usize)? {
                Type::Alias { target } => id = *target,
                ty => return Some(ty),
            }
        }
        None
    }

    /// Variants of `enum NAME`, as (name, value).
    pub fn enum_variants(&self, name: &str) -> Result<&[(String, i64)], BtfError> {
        let not_found = || BtfError::NotFound {
            kind: "enum",
            name: name.to_owned(),
        };
        let id = self
            .by_name
            .get(&(KIND_ENUM, name.to_owned()))
            .ok_or_else(not_found)?;
        match self.resolve(*id) {
            Some(Type::Enum { variants }) => Ok(variants),
            _ => Err(not_found()),
        }
    }

    /// Byte offset of `path` (e.g. `["nd_net", "net"]`) inside `struct NAME`, looking through
    /// anonymous structs and unions the way C does.
    pub fn member_offset(&self, strukt: &str, path: &[&str]) -> Result<u32, BtfError> {
        let mut type_id = *self
            .by_name
            .get(&(KIND_STRUCT, strukt.to_owned()))
            .ok_or_else(|| BtfError::NotFound {
                kind: "struct",
                name: strukt.to_owned(),
            })?;
        let mut bits = 0;
        for member in path {
            let (member_type, member_bits) =
                self.find_member(type_id, member)
                    .ok_or_else(|| BtfError::NoMember {
                        strukt: strukt.to_owned(),
                        member: path.join("."),
                    })?;
            bits = member_bits
                .checked_add(bits)
                .ok_or(BtfError::Malformed("member offset overflows"))?;
            type_id = member_type;
        }
        if bits % 8 != 0 {
            return Err(BtfError::Malformed("member is a bitfield"));
        }
        Ok(bits / 8)
    }

    fn find_member(&self, composite: u32, name: &str) -> Option<(u32, u32)> {
        let mut anonymous_left = ANONYMOUS_MEMBERS_MAX;
        self.find_member_within(composite, name, &mut anonymous_left)
    }

    fn find_member_within(
        &self,
        composite: u32,
        name: &str,
        anonymous_left: &mut usize,
    ) -> Option<(u32, u32)> {
        let Some(Type::Composite { members }) = self.resolve(composite) else {
            return None;
        };
        members.iter().find_map(|member| {
            if member.name == name {
                Some((member.type_id, member.bit_offset))
            } else if member.name.is_empty() && *anonymous_left > 0 {
                *anonymous_left -= 1;
                let (ty, bits) = self.find_member_within(member.type_id, name, anonymous_left)?;
                Some((ty, member.bit_offset.checked_add(bits)?))
            } else {
                None
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds raw BTF from (kind, name, info-vlen, size_or_type, extra words) entries.
    #[derive(Default)]
    pub(crate) struct BtfBuilder {
        types: Vec<u8>,
        strings: Vec<u8>,
    }

    impl BtfBuilder {
        pub(crate) fn new() -> Self {
            Self {
                types: Vec::new(),
                strings: vec![0],
            }
        }

        fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn word(&mut self, w: u32) {
            self.types.extend_from_slice(&w.to_le_bytes());
        }

        fn header(&mut self, name: &str, kind: u32, vlen: usize, size_or_type: u32) {
            let name = self.string(name);
            self.word(name);
            self.word((kind << 24) | vlen as u32);
            self.word(size_or_type);
        }

        pub(crate) fn int(&mut self, name: &str, size: u32) {
            self.header(name, KIND_INT, 0, size);
            self.word(size * 8);
        }

        pub(crate) fn ptr(&mut self, target: u32) {
            self.header("", KIND_PTR, 0, target);
        }

        pub(crate) fn composite(&mut self, union: bool, name: &str, members: &[(&str, u32, u32)]) {
            let kind = if union { KIND_UNION } else { KIND_STRUCT };
            self.header(name, kind, members.len(), 64);
            for (member, type_id, bit_offset) in members {
                let member = self.string(member);
                self.word(member);
                self.word(*type_id);
                self.word(*bit_offset);
            }
        }

        pub(crate) fn enumeration(&mut self, name: &str, variants: &[(&str, u32)]) {
            self.header(name, KIND_ENUM, variants.len(), 4);
            for (variant, value) in variants {
                let variant = self.string(variant);
                self.word(variant);
                self.word(*value);
            }
        }

        pub(crate) fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&MAGIC.to_le_bytes());
            out.push(1); // version
            out.push(0); // flags
            for word in [
                HEADER_MIN_LEN as u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&word.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// A miniature sk_buff: `dev` sits in an anonymous union inside an anonymous struct, as in
    /// the real kernel.
    fn fixture() -> Btf {
        let mut b = BtfBuilder::new();
        b.int("int", 4); // 1
        b.ptr(0); // 2: void *
        b.composite(true, "", &[("dev", 2, 0), ("dev_scratch", 1, 0)]); // 3
        b.composite(false, "", &[("next", 2, 0), ("prev", 2, 64), ("", 3, 128)]); // 4
        b.composite(false, "sk_buff", &[("", 4, 0), ("protocol", 1, 1440)]); // 5
        b.composite(false, "possible_net_t", &[("net", 2, 0)]); // 6
        b.composite(
            false,
            "net_device",
            &[("ifindex", 1, 224), ("nd_net", 6, 512)],
        ); // 7
        b.enumeration(
            "skb_drop_reason",
            &[
                ("SKB_NOT_DROPPED_YET", 0),
                ("SKB_DROP_REASON_NETFILTER_DROP", 12),
            ],
        );
        Btf::parse(&b.build()).expect("fixture parses")
    }

    #[test]
    fn offsets_through_anonymous_members() {
        let btf = fixture();
        assert_eq!(btf.member_offset("sk_buff", &["dev"]).unwrap(), 16);
        assert_eq!(btf.member_offset("sk_buff", &["protocol"]).unwrap(), 180);
        assert_eq!(btf.member_offset("net_device", &["ifindex"]).unwrap(), 28);
        assert_eq!(
            btf.member_offset("net_device", &["nd_net", "net"]).unwrap(),
            64
        );
    }

    #[test]
    fn missing_names_are_errors() {
        let btf = fixture();
        assert!(matches!(
            btf.member_offset("sk_buff", &["nope"]),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.member_offset("nope", &["dev"]),
            Err(BtfError::NotFound { .. })
        ));
    }

    #[test]
    fn enum_variants() {
        let btf = fixture();
        let variants = btf.enum_variants("skb_drop_reason").unwrap();
        assert_eq!(
            variants[1],
            ("SKB_DROP_REASON_NETFILTER_DROP".to_owned(), 12)
        );
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(Btf::parse(&[]).is_err());
        assert!(Btf::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0]).is_err());
        let mut truncated = fixture_bytes();
        truncated.truncate(truncated.len() - 10);
        assert!(Btf::parse(&truncated).is_err());
    }

    /// Found by fuzzing (fuzz/fuzz_targets/btf.rs): malformed BTF is an error, never a panic
    /// or a stack overflow.
    #[test]
    fn malformed_layouts_are_errors() {
        let mut b = BtfBuilder::new();
        b.int("int", 4); // 1
        b.composite(false, "loop", &[("", 2, 0)]); // 2: an anonymous member of its own type
        b.composite(false, "far", &[("inner", 4, u32::MAX)]); // 3
        b.composite(false, "", &[("x", 1, 64)]); // 4
        b.composite(false, "outer", &[("", 3, 8)]); // 5
        let btf = Btf::parse(&b.build()).expect("well-formed enough to parse");
        assert!(matches!(
            btf.member_offset("loop", &["x"]),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.member_offset("far", &["inner", "x"]),
            Err(BtfError::Malformed(_))
        ));
        assert!(matches!(
            btf.member_offset("outer", &["inner"]),
            Err(BtfError::NoMember { .. })
        ));
    }

    fn fixture_bytes() -> Vec<u8> {
        let mut b = BtfBuilder::new();
        b.int("int", 4);
        b.composite(false, "s", &[("a", 1, 0)]);
        b.build()
    }

    /// The running kernel's BTF, when it has one, must yield the offsets the drop probe needs.
    #[test]
    fn running_kernel_offsets() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("no {VMLINUX_BTF}: kernel without BTF, nothing to check");
            return;
        }
        let btf = Btf::from_sys_fs().unwrap();
        let dev = btf.member_offset("sk_buff", &["dev"]).unwrap();
        let protocol = btf.member_offset("sk_buff", &["protocol"]).unwrap();
        assert_ne!(dev, protocol);
        btf.member_offset("net", &["ns", "inum"]).unwrap();
        let reasons = btf.enum_variants("skb_drop_reason").unwrap();
        assert!(
            reasons
                .iter()
                .any(|(n, _)| n == "SKB_DROP_REASON_NETFILTER_DROP")
        );
    }
}
