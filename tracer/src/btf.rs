//! A small reader for the kernel's BTF (/sys/kernel/btf/vmlinux): struct member offsets, enum
//! variants and the ids of named types, which differ between kernels and so are never
//! hard-coded.
//!
//! Light on purpose. vmlinux holds some 130 000 types in 5.5 MB; a general BTF library turns
//! every one of them into owned structures (about 20 MB and 20 ms), where tracer needs five
//! structs, one enum and one typedef. So the file is mapped where the kernel allows it (6.16
//! on) and read otherwise, one pass checks the type section and notes where each type starts
//! (4 bytes a type), and every lookup reads what it needs from the raw bytes.

use std::{fs::File, ops::Range, os::fd::AsRawFd as _, path::Path, ptr::NonNull};

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
/// Every type record starts with name offset, info and size-or-type.
const RECORD_HEADER_LEN: usize = 12;
/// Anonymous structs and unions one member lookup may look into. The kernel's structs need far
/// fewer; the bound keeps a malformed BTF (an anonymous member of its own type, or nesting
/// without end) from recursing until the stack overflows.
const ANONYMOUS_MEMBERS_MAX: usize = 256;
/// Typedef and qualifier chains are short; the bound only guards against a malformed loop.
const ALIAS_DEPTH_MAX: usize = 32;

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

/// The bytes of a BTF blob: the kernel's file mapped, or a copy.
enum Bytes {
    Mapped(Mapping),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Mapped(mapping) => mapping.as_slice(),
            Self::Owned(bytes) => bytes,
        }
    }
}

/// A read-only private mapping of a whole file.
struct Mapping {
    address: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// Maps `file`; `None` where the file cannot be mapped (sysfs BTF before 6.16, empty files).
    fn of(file: &File) -> Option<Self> {
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: a fresh read-only private mapping of `len` bytes of an open file; nothing
        // else refers to the address range, which Drop unmaps.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return None;
        }
        Some(Self {
            address: NonNull::new(address.cast())?,
            len,
        })
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes and lives as long as `self`; it is
        // private and read-only, so nothing writes to it meanwhile.
        unsafe { std::slice::from_raw_parts(self.address.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range mmap returned, which nothing borrows any more.
        unsafe { libc::munmap(self.address.as_ptr().cast(), self.len) };
    }
}

// SAFETY: the mapping is read-only memory owned by this value alone.
unsafe impl Send for Mapping {}
// SAFETY: as above; shared references only read.
unsafe impl Sync for Mapping {}

/// Checked BTF: the raw bytes and where each type's record starts.
pub struct Btf {
    bytes: Bytes,
    types: Range<usize>,
    strings: Range<usize>,
    /// Offset of type `id`'s record in the type section, at index `id - 1` (id 0 is `void`).
    starts: Vec<u32>,
}

impl std::fmt::Debug for Btf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Btf")
            .field("types", &self.starts.len())
            .field("string_bytes", &self.strings.len())
            .finish_non_exhaustive()
    }
}

/// One type's record, as found in the type section.
#[derive(Debug, Clone, Copy)]
struct Record {
    name_offset: u32,
    kind: u32,
    vlen: usize,
    /// The `kind_flag` bit: bitfield offsets in members, signedness in enums.
    kind_flag: bool,
    size_or_type: u32,
    /// Where the variable part (members, variants, …) starts, in the type section.
    rest: usize,
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Length of a record's variable part, or `None` for an unknown kind.
fn variable_len(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
        KIND_ARRAY => 12,
        KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
        KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
        KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
        | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
        _ => return None,
    })
}

impl Btf {
    /// The running kernel's BTF.
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new(VMLINUX_BTF))
    }

    /// Maps `path` (or reads it, where it cannot be mapped) and checks it.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let read_error = |source| BtfError::Read {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(read_error)?;
        let bytes = match Mapping::of(&file) {
            Some(mapping) => Bytes::Mapped(mapping),
            None => {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut &file, &mut bytes).map_err(read_error)?;
                Bytes::Owned(bytes)
            }
        };
        Self::check(bytes)
    }

    /// Parses raw little-endian BTF (the format of /sys/kernel/btf/vmlinux).
    pub fn parse(bytes: &[u8]) -> Result<Self, BtfError> {
        Self::check(Bytes::Owned(bytes.to_vec()))
    }

    fn check(bytes: Bytes) -> Result<Self, BtfError> {
        let data = bytes.as_slice();
        let magic = data
            .get(0..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or(BtfError::Malformed("header truncated"))?;
        if magic != MAGIC {
            return Err(BtfError::Malformed("bad magic (not little-endian BTF)"));
        }
        let header = |at| le_u32(data, at).ok_or(BtfError::Malformed("header truncated"));
        let header_len = header(4)? as usize;
        if header_len < HEADER_MIN_LEN {
            return Err(BtfError::Malformed("header too short"));
        }
        let section = |off_at: usize, len_at: usize| -> Result<Range<usize>, BtfError> {
            let start = header_len
                .checked_add(header(off_at)? as usize)
                .ok_or(BtfError::Malformed("section out of range"))?;
            let end = start
                .checked_add(header(len_at)? as usize)
                .filter(|end| *end <= data.len())
                .ok_or(BtfError::Malformed("section out of range"))?;
            Ok(start..end)
        };
        let types = section(8, 12)?;
        let strings = section(16, 20)?;
        let type_section = &data[types.clone()];
        let mut starts = Vec::new();
        let mut pos = 0usize;
        while pos < type_section.len() {
            let info = le_u32(type_section, pos + 4)
                .filter(|_| pos + RECORD_HEADER_LEN <= type_section.len())
                .ok_or(BtfError::Malformed("type section truncated"))?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let rest = variable_len(kind, vlen).ok_or(BtfError::Malformed("unknown type kind"))?;
            let next = pos + RECORD_HEADER_LEN + rest;
            if next > type_section.len() {
                return Err(BtfError::Malformed("type section truncated"));
            }
            starts.push(
                u32::try_from(pos).map_err(|_| BtfError::Malformed("type section too large"))?,
            );
            pos = next;
        }
        Ok(Self {
            bytes,
            types,
            strings,
            starts,
        })
    }

    fn type_section(&self) -> &[u8] {
        &self.bytes.as_slice()[self.types.clone()]
    }

    fn string_section(&self) -> &[u8] {
        &self.bytes.as_slice()[self.strings.clone()]
    }

    /// Word `index` of a record's variable part (checked when the section was).
    fn word(&self, record: &Record, index: usize) -> u32 {
        le_u32(self.type_section(), record.rest + 4 * index).unwrap_or(0)
    }

    /// The record of type `id`; `None` for `void` and ids past the last type.
    fn record(&self, id: u32) -> Option<Record> {
        let start = *self.starts.get((id as usize).checked_sub(1)?)? as usize;
        let section = self.type_section();
        let info = le_u32(section, start + 4)?;
        Some(Record {
            name_offset: le_u32(section, start)?,
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 == 1,
            size_or_type: le_u32(section, start + 8)?,
            rest: start + RECORD_HEADER_LEN,
        })
    }

    /// The NUL-terminated string at `offset`.
    fn string_at(&self, offset: u32) -> Result<&[u8], BtfError> {
        let tail = self
            .string_section()
            .get(offset as usize..)
            .ok_or(BtfError::Malformed("string offset out of range"))?;
        let len = tail
            .iter()
            .position(|&b| b == 0)
            .ok_or(BtfError::Malformed("unterminated string"))?;
        Ok(&tail[..len])
    }

    fn text_at(&self, offset: u32) -> Result<String, BtfError> {
        Ok(String::from_utf8_lossy(self.string_at(offset)?).into_owned())
    }

    /// Whether the string at `offset` is `name`, without copying it.
    fn is_named(&self, offset: u32, name: &str) -> bool {
        let Some(tail) = self.string_section().get(offset as usize..) else {
            return false;
        };
        tail.get(..name.len()) == Some(name.as_bytes()) && tail.get(name.len()) == Some(&0)
    }

    /// The first type of one of `kinds` called `name`.
    fn named(&self, kinds: &[u32], name: &str) -> Option<(u32, Record)> {
        (1..=self.starts.len() as u32).find_map(|id| {
            let record = self.record(id)?;
            (record.name_offset != 0
                && kinds.contains(&record.kind)
                && self.is_named(record.name_offset, name))
            .then_some((id, record))
        })
    }

    /// Looks through typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Option<Record> {
        for _ in 0..ALIAS_DEPTH_MAX {
            let record = self.record(id)?;
            match record.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = record.size_or_type;
                }
                _ => return Some(record),
            }
        }
        None
    }

    /// The id of `typedef NAME` (what a `tp_btf` program attaches by: `btf_trace_EVENT`).
    pub fn typedef_id(&self, name: &str) -> Result<u32, BtfError> {
        self.named(&[KIND_TYPEDEF], name)
            .map(|(id, _)| id)
            .ok_or_else(|| BtfError::NotFound {
                kind: "typedef",
                name: name.to_owned(),
            })
    }

    /// Variants of `enum NAME`, as (name, value).
    pub fn enum_variants(&self, name: &str) -> Result<Vec<(String, i64)>, BtfError> {
        let (_, record) =
            self.named(&[KIND_ENUM, KIND_ENUM64], name)
                .ok_or_else(|| BtfError::NotFound {
                    kind: "enum",
                    name: name.to_owned(),
                })?;
        (0..record.vlen)
            .map(|index| {
                if record.kind == KIND_ENUM64 {
                    let name = self.text_at(self.word(&record, 3 * index))?;
                    let low = u64::from(self.word(&record, 3 * index + 1));
                    let high = u64::from(self.word(&record, 3 * index + 2));
                    Ok((name, ((high << 32) | low) as i64))
                } else {
                    let name = self.text_at(self.word(&record, 2 * index))?;
                    let value = self.word(&record, 2 * index + 1);
                    let value = if record.kind_flag {
                        i64::from(value as i32)
                    } else {
                        i64::from(value)
                    };
                    Ok((name, value))
                }
            })
            .collect()
    }

    /// Byte offset of `path` (e.g. `["nd_net", "net"]`) inside `struct NAME`, looking through
    /// anonymous structs and unions the way C does.
    pub fn member_offset(&self, strukt: &str, path: &[&str]) -> Result<u32, BtfError> {
        let (mut type_id, _) =
            self.named(&[KIND_STRUCT], strukt)
                .ok_or_else(|| BtfError::NotFound {
                    kind: "struct",
                    name: strukt.to_owned(),
                })?;
        let mut bits = 0u32;
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
        if !bits.is_multiple_of(8) {
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
        let record = self
            .resolve(composite)
            .filter(|record| matches!(record.kind, KIND_STRUCT | KIND_UNION))?;
        (0..record.vlen).find_map(|index| {
            let name_offset = self.word(&record, 3 * index);
            let type_id = self.word(&record, 3 * index + 1);
            let offset = self.word(&record, 3 * index + 2);
            let bit_offset = if record.kind_flag {
                offset & 0x00ff_ffff
            } else {
                offset
            };
            if name_offset != 0 && self.is_named(name_offset, name) {
                Some((type_id, bit_offset))
            } else if self.string_at(name_offset).ok()?.is_empty() && *anonymous_left > 0 {
                *anonymous_left -= 1;
                let (ty, bits) = self.find_member_within(type_id, name, anonymous_left)?;
                Some((ty, bit_offset.checked_add(bits)?))
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

        pub(crate) fn typedef(&mut self, name: &str, target: u32) {
            self.header(name, KIND_TYPEDEF, 0, target);
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
    fn typedefs_by_name() {
        let mut b = BtfBuilder::new();
        b.int("int", 4); // 1
        b.typedef("u32", 1); // 2
        b.ptr(0); // 3
        b.typedef("btf_trace_kfree_skb", 3); // 4
        let btf = Btf::parse(&b.build()).unwrap();
        assert_eq!(btf.typedef_id("btf_trace_kfree_skb").unwrap(), 4);
        assert_eq!(btf.typedef_id("u32").unwrap(), 2);
        // A struct of that name is not a typedef.
        assert!(matches!(
            btf.typedef_id("int"),
            Err(BtfError::NotFound { .. })
        ));
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
        btf.typedef_id("btf_trace_kfree_skb").unwrap();
        let reasons = btf.enum_variants("skb_drop_reason").unwrap();
        assert!(
            reasons
                .iter()
                .any(|(n, _)| n == "SKB_DROP_REASON_NETFILTER_DROP")
        );
    }
}
