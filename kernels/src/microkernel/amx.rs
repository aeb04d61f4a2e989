//! AMX (Advanced Matrix Extensions) bf16 tiles, through inline assembly: the AMX intrinsics are
//! not stable Rust. Linux hands out the tile state only to processes that ask for it
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`), which [`available`] does once.

use std::arch::asm;
use std::sync::OnceLock;

/// Whether the CPU has AMX-BF16 and the kernel granted this process the tile state.
pub(crate) fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| cpu_has_amx() && request_tile_state())
}

fn cpu_has_amx() -> bool {
    // CPUID leaf 7, sub-leaf 0, EDX: bit 22 AMX-BF16, bit 24 AMX-TILE.
    let leaf = std::arch::x86_64::__cpuid_count(7, 0);
    leaf.edx & (1 << 22) != 0 && leaf.edx & (1 << 24) != 0
}

#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: arch_prctl only changes this process's permitted extended state.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// The tile palette: eight tiles of 16 rows × 64 bytes (16 fp32 or 32 bf16 per row).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

const CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// An `asm!` block (`$template`s, then `options($option…)`) over accumulator tiles 0–3 as the four
/// 16 × 16 quadrants of the 32 × 32 fp32 block at `$c`, rows `$ld` bytes apart: the templates
/// name quadrant `i` `{ci}` and the row stride `{l}`. Expanded in the caller's `unsafe` block: the
/// block's memory must be valid for the instructions.
macro_rules! quadrants {
    ($c:expr, $ld:expr; $($option:ident),+; $($template:literal),+) => {{
        let (c, ld): (*mut f32, usize) = ($c, $ld);
        let row = ld / 4;
        asm!(
            $($template,)+
            c0 = in(reg) c,
            c1 = in(reg) c.add(16),
            c2 = in(reg) c.add(16 * row),
            c3 = in(reg) c.add(16 * row + 16),
            l = in(reg) ld,
            options($($option),+),
        );
    }};
}

/// Rows (output channels) of the direct tile: two tiles of 16.
pub(crate) const DIRECT_MR: usize = 32;
/// Positions of the direct tile: two tiles of 16.
pub(crate) const DIRECT_NR: usize = 32;
/// bf16 values of packed weights per step: two tiles of 16 rows × 32.
pub(crate) const STEP_A: usize = 1024;

/// `C[32][32] = Σ_s A_s · B_s`: `A_s` the packed weights of step `s` (two 16 × 32 bf16 tiles at
/// `a + s·STEP_A`), `B_s` 16 channel-pair rows of 16 positions (twice, 16 positions apart) at
/// `src + soff[s]`, rows `b_stride` bytes apart. `C` rows `ldc` floats apart.
///
/// # Safety
/// AMX available ([`available`]); every operand readable, `c` writable as described.
pub(crate) unsafe fn direct(
    steps: usize,
    a: *const u16,
    src: *const u32,
    soff: *const isize,
    c: *mut f32,
    ldc: usize,
    b_stride: usize,
) {
    unsafe {
        asm!("ldtilecfg [{0}]", in(reg) &CONFIG, options(nostack, readonly));
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
        for s in 0..steps {
            let at = a.add(s * STEP_A);
            let b = src.offset(*soff.add(s));
            let a_tiles = [at.cast(), at.add(STEP_A / 2).cast()];
            step(a_tiles, 64, [b.cast(), b.add(16).cast()], b_stride);
        }
        store_c(c, ldc * 4);
    }
}

/// `acc[32][32] += Σ_s A_s · B_s` for the weight gradient: `A_s` 32 grid rows (`a_stride` bytes
/// apart) of 32 positions at `a + 32·s` (bf16), `B_s` 16 position-pair rows of 32 channel pairs
/// at `bt + 16·s` rows (`b_stride` bytes apart). `acc` rows `ldacc` floats apart.
///
/// # Safety
/// AMX available; every operand readable, `acc` readable and writable as described.
pub(crate) unsafe fn weight_grad(
    steps: usize,
    a: *const u16,
    a_stride: usize,
    bt: *const u32,
    b_stride: usize,
    acc: *mut f32,
    ldacc: usize,
) {
    unsafe {
        asm!("ldtilecfg [{0}]", in(reg) &CONFIG, options(nostack, readonly));
        let l = ldacc * 4;
        quadrants!(acc, l; nostack, readonly;
            "tileloadd tmm0, [{c0} + {l}*1]", "tileloadd tmm1, [{c1} + {l}*1]",
            "tileloadd tmm2, [{c2} + {l}*1]", "tileloadd tmm3, [{c3} + {l}*1]");
        for s in 0..steps {
            let a0 = a.add(32 * s).cast::<u8>();
            let b0 = bt.cast::<u8>().add(16 * s * b_stride);
            step(
                [a0, a0.add(16 * a_stride)],
                a_stride,
                [b0, b0.add(64)],
                b_stride,
            );
        }
        store_c(acc, l);
    }
}

/// One step of a 32 × 32 product: loads the A tiles at `a` (rows `a_stride` bytes apart) into
/// tmm4–5 and the B tiles at `b` (rows `b_stride` bytes apart) into tmm6–7, and adds `A_i · B_j`
/// to tile `2i + j` (tmm0–3).
///
/// # Safety
/// AMX available, the tile configuration loaded; the 16 rows of every A and B tile readable.
#[inline(always)]
unsafe fn step(a: [*const u8; 2], a_stride: usize, b: [*const u8; 2], b_stride: usize) {
    unsafe {
        asm!(
            "tileloadd tmm4, [{a0} + {as_}*1]",
            "tileloadd tmm5, [{a1} + {as_}*1]",
            "tileloadd tmm6, [{b0} + {bs}*1]",
            "tileloadd tmm7, [{b1} + {bs}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a0 = in(reg) a[0],
            a1 = in(reg) a[1],
            as_ = in(reg) a_stride,
            b0 = in(reg) b[0],
            b1 = in(reg) b[1],
            bs = in(reg) b_stride,
            options(nostack, readonly),
        );
    }
}

/// Stores tiles 0–3 as a 32 × 32 fp32 block (`ld` bytes per row) and releases the tile state.
unsafe fn store_c(c: *mut f32, ld: usize) {
    unsafe {
        quadrants!(c, ld; nostack;
            "tilestored [{c0} + {l}*1], tmm0", "tilestored [{c1} + {l}*1], tmm1",
            "tilestored [{c2} + {l}*1], tmm2", "tilestored [{c3} + {l}*1], tmm3", "tilerelease");
    }
}
