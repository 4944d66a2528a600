//! Kernel packet drops on `kfree_skb`, counted by (netns, ifindex, reason, protocol), or by
//! (netns, ifindex, location, protocol) on kernels without drop reasons (before 5.17).
//!
//! Two programs, one per kind of kernel: tp_btf with the drop reason, and a raw tracepoint
//! that reads where the skb was freed. Drops away from the watched places are counted
//! together, without namespace and interface. Struct offsets come from the running kernel's
//! BTF through `KERNEL_OFFSETS`.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext, Global,
    bindings::BPF_NOEXIST,
    helpers::bpf_probe_read_kernel,
    macros::{btf_tracepoint, map, raw_tracepoint},
    maps::{HashMap, PerCpuArray, PerCpuHashMap},
    programs::{BtfTracePointContext, RawTracePointContext},
};
use aya_log_ebpf::debug;
use tracer_common::{
    DropKey, InterfaceName, KernelOffsets, WATCHED_NAMES_MAX, WATCHED_PLACES_MAX, WatchedPlace,
};

#[unsafe(no_mangle)]
static KERNEL_OFFSETS: Global<KernelOffsets> = Global::new(KernelOffsets {
    skb_dev: 0,
    skb_protocol: 0,
    dev_ifindex: 0,
    dev_net: 0,
    net_inum: 0,
    skb_sk: 0,
    sock_net: 0,
    dev_name: 0,
});

#[map]
static DROP_COUNTERS: PerCpuHashMap<DropKey, u64> = PerCpuHashMap::with_max_entries(4096, 0);

/// The places whose drops are kept apart, written by the loader as ports come and go.
#[map]
static WATCHED_PLACES: HashMap<WatchedPlace, u8> = HashMap::with_max_entries(WATCHED_PLACES_MAX, 0);

/// The watched ports' names: their drops are kept apart in whichever namespace they are.
#[map]
static WATCHED_NAMES: HashMap<InterfaceName, u8> = HashMap::with_max_entries(WATCHED_NAMES_MAX, 0);

/// Drops that could not be counted (map full, unreadable skb).
#[map]
static LOST_EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[btf_tracepoint(function = "kfree_skb")]
pub fn tracer_kfree_skb(ctx: BtfTracePointContext) -> i32 {
    // kfree_skb(struct sk_buff *skb, void *location, enum skb_drop_reason reason, ...)
    let skb: *const u8 = ctx.arg(0);
    let reason: u32 = ctx.arg(2);
    record::<Direct, _>(&ctx, skb, reason, 0)
}

/// Kernels without drop reasons: kfree_skb(struct sk_buff *skb, void *location).
#[raw_tracepoint(tracepoint = "kfree_skb")]
pub fn tracer_kfree_skb_location(ctx: RawTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    record::<Probed, _>(&ctx, skb, 0, location)
}

/// How a program reads the skb and what it points to.
trait KernelMemory {
    /// The `T` at `base + offset`, `offset` one of `KERNEL_OFFSETS`.
    fn read_at<T: Copy>(base: *const u8, offset: u32) -> Result<T, i32>;
}

/// tp_btf: the skb is a typed pointer, read with plain loads. The verifier checks each against
/// the kernel's BTF (the offsets are constants to it: `KERNEL_OFFSETS` is frozen read-only
/// data) and a load that faults reads zero. A helper call a field cost several times more, on
/// every drop of the machine.
struct Direct;

impl KernelMemory for Direct {
    #[inline(always)]
    fn read_at<T: Copy>(base: *const u8, offset: u32) -> Result<T, i32> {
        // SAFETY: a BTF pointer load, checked by the verifier and fault-safe in the kernel.
        Ok(unsafe { base.wrapping_add(offset as usize).cast::<T>().read() })
    }
}

/// Raw tracepoint: untyped arguments, so every read goes through bpf_probe_read_kernel.
struct Probed;

impl KernelMemory for Probed {
    #[inline(always)]
    fn read_at<T: Copy>(base: *const u8, offset: u32) -> Result<T, i32> {
        // SAFETY: bpf_probe_read_kernel validates the address.
        unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize).cast::<T>()) }
    }
}

#[inline(always)]
fn record<M: KernelMemory, C: EbpfContext>(
    ctx: &C,
    skb: *const u8,
    reason: u32,
    location: u64,
) -> i32 {
    if count_drop::<M>(skb, reason, location).is_err() {
        debug!(ctx, "kfree_skb: drop not counted");
        if let Some(lost) = LOST_EVENTS.get_ptr_mut(0) {
            // SAFETY: per-CPU slot, only this CPU writes it.
            unsafe { *lost += 1 };
        }
    }
    0
}

#[inline(always)]
fn count_drop<M: KernelMemory>(skb: *const u8, reason: u32, location: u64) -> Result<(), i32> {
    let offsets = KERNEL_OFFSETS.load();
    let protocol = u16::from_be(M::read_at::<u16>(skb, offsets.skb_protocol)?);
    let dev: *const u8 = M::read_at(skb, offsets.skb_dev)?;
    let (netns, ifindex) = if dev.is_null() {
        // No device yet (e.g. dropped on a local OUTPUT hook): the socket tells the namespace.
        let sk: *const u8 = M::read_at(skb, offsets.skb_sk)?;
        (netns_of::<M>(sk, offsets.sock_net, offsets.net_inum)?, 0)
    } else {
        (
            netns_of::<M>(dev, offsets.dev_net, offsets.net_inum)?,
            M::read_at(dev, offsets.dev_ifindex)?,
        )
    };
    let place = WatchedPlace { netns, ifindex };
    // SAFETY: the values are plain u8 only the loader writes.
    let watched = unsafe { WATCHED_PLACES.get(place).is_some() }
        // Only then the name, a read the usual drop (at a watched place) can skip.
        || (!dev.is_null() && watched_name(dev, offsets.dev_name));
    let key = DropKey {
        netns: if watched { netns } else { 0 },
        ifindex: if watched { ifindex } else { 0 },
        reason,
        protocol,
        _pad: 0,
        location,
    };
    if increment(&key) {
        return Ok(());
    }
    match DROP_COUNTERS.insert(key, 1, BPF_NOEXIST.into()) {
        Ok(()) => Ok(()),
        // Another CPU inserted the key first.
        Err(_) if increment(&key) => Ok(()),
        Err(err) => Err(err),
    }
}

/// The namespace inode of the object at `owner` whose `struct net *` is at `net_offset`.
#[inline(always)]
fn netns_of<M: KernelMemory>(
    owner: *const u8,
    net_offset: u32,
    inum_offset: u32,
) -> Result<u32, i32> {
    if owner.is_null() {
        return Ok(0);
    }
    let net: *const u8 = M::read_at(owner, net_offset)?;
    if net.is_null() {
        return Ok(0);
    }
    M::read_at(net, inum_offset)
}

/// Whether the device at `dev` carries a watched port's name. Read through the helper in
/// both programs: the verifier takes no plain 16-byte load of a char array.
#[inline(always)]
fn watched_name(dev: *const u8, name_offset: u32) -> bool {
    // SAFETY: the values are plain u8 only the loader writes.
    Probed::read_at::<InterfaceName>(dev, name_offset)
        .is_ok_and(|name| unsafe { WATCHED_NAMES.get(name).is_some() })
}

#[inline(always)]
fn increment(key: &DropKey) -> bool {
    let Some(count) = DROP_COUNTERS.get_ptr_mut(key) else {
        return false;
    };
    // SAFETY: per-CPU value, only this CPU writes it.
    unsafe { *count += 1 };
    true
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
