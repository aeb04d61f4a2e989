//! Which instruction sets the kernels use, chosen once at run time (never at build time: the
//! same binary runs on AVX-512 Xeons with AMX, AVX-512 EPYCs without it, and older CPUs).
//!
//! `NNUNET_KERNELS_ISA=avx512|avx2|portable` caps the fp32 choice and
//! `NNUNET_KERNELS_BF16=amx|avx512bf16|emulated` the bf16 choice (parity tests, benchmarks).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

/// The fp32 kernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust loops (any CPU).
    Portable,
    /// AVX2 + FMA, 256-bit vectors.
    Avx2,
    /// AVX-512F, 512-bit vectors.
    Avx512,
}

/// The bf16 kernel family (bf16 products, fp32 accumulation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bf16Isa {
    /// Inputs rounded to bf16, products in the fp32 kernels: same numbers, no speed-up.
    Emulated,
    /// `vdpbf16ps` (AVX512-BF16: Intel Cooper Lake and later, AMD Zen 4 and later).
    Avx512Bf16,
    /// AMX tiles (`tdpbf16ps`, Intel Sapphire Rapids and later).
    Amx,
}

impl Isa {
    /// The fp32 family the kernels use: the best this CPU has, capped by `NNUNET_KERNELS_ISA`
    /// and [`Isa::set_limit`].
    pub fn detected() -> Isa {
        let stored = crate::shared::settings().isa_limit.load(Ordering::Relaxed);
        limited(Self::available(), stored, [Isa::Portable, Isa::Avx2])
    }

    /// Caps the fp32 family at `limit` (`None`: no cap) for the whole process: parity tests and
    /// benchmarks compare the families on one machine.
    pub fn set_limit(limit: Option<Isa>) {
        store_limit(&crate::shared::settings().isa_limit, limit.map(|i| i as u8));
    }

    /// The best fp32 family of this CPU (capped by `NNUNET_KERNELS_ISA`).
    pub fn available() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            let caps = [("portable", Isa::Portable), ("avx2", Isa::Avx2)];
            env_capped("NNUNET_KERNELS_ISA", hardware_isa(), caps)
        })
    }

    /// Name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

impl Bf16Isa {
    /// The bf16 family the kernels use: the best this CPU has, capped by `NNUNET_KERNELS_BF16`
    /// and [`Bf16Isa::set_limit`].
    pub fn detected() -> Bf16Isa {
        let stored = crate::shared::settings().bf16_limit.load(Ordering::Relaxed);
        limited(
            Self::available(),
            stored,
            [Bf16Isa::Emulated, Bf16Isa::Avx512Bf16],
        )
    }

    /// Caps the bf16 family at `limit` (`None`: no cap) for the whole process (parity tests,
    /// benchmarks).
    pub fn set_limit(limit: Option<Bf16Isa>) {
        store_limit(
            &crate::shared::settings().bf16_limit,
            limit.map(|i| i as u8),
        );
    }

    /// The best bf16 family of this CPU (capped by `NNUNET_KERNELS_BF16`).
    pub fn available() -> Bf16Isa {
        static ISA: OnceLock<Bf16Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            let caps = [
                ("emulated", Bf16Isa::Emulated),
                ("avx512bf16", Bf16Isa::Avx512Bf16),
            ];
            env_capped("NNUNET_KERNELS_BF16", hardware_bf16(), caps)
        })
    }

    /// Whether the CPU computes bf16 products natively (what `-precision auto` asks).
    pub fn native() -> bool {
        hardware_bf16() > Bf16Isa::Emulated
    }

    /// Name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Bf16Isa::Emulated => "emulated",
            Bf16Isa::Avx512Bf16 => "avx512_bf16",
            Bf16Isa::Amx => "amx",
        }
    }
}

/// Stores the cap at family `level` (its index, lowest first; `None`: no cap) in `cell`: 0 for
/// none, else the index + 1.
fn store_limit(cell: &AtomicU8, level: Option<u8>) {
    cell.store(level.map_or(0, |l| l + 1), Ordering::Relaxed);
}

/// `available` capped by a limit stored as [`store_limit`] stores it: 1 and 2 cap at the first and
/// second of `levels` (the two lowest families), anything else leaves it.
fn limited<T: Copy + Ord>(available: T, stored: u8, levels: [T; 2]) -> T {
    match stored {
        1 => available.min(levels[0]),
        2 => available.min(levels[1]),
        _ => available,
    }
}

/// `hardware` capped by the environment variable `var`: a value named in `caps` caps at its
/// family; any other value, or none, leaves it.
fn env_capped<T: Copy + Ord>(var: &str, hardware: T, caps: [(&str, T); 2]) -> T {
    let value = std::env::var(var);
    match caps.iter().find(|(name, _)| value.as_deref() == Ok(*name)) {
        Some(&(_, cap)) => hardware.min(cap),
        None => hardware,
    }
}

/// The widest f32 family this CPU runs (portable code off x86-64).
fn hardware_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") {
            return Isa::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// The best bf16 family this CPU runs: AMX tiles, AVX-512 bf16 dot products, or emulation
/// (always off x86-64, and where AVX-512 is missing).
fn hardware_bf16() -> Bf16Isa {
    static HW: OnceLock<Bf16Isa> = OnceLock::new();
    *HW.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let bf16 = hardware_isa() == Isa::Avx512 && has!("avx512bf16") && has!("avx512bw");
            if bf16 && crate::microkernel::amx::available() {
                return Bf16Isa::Amx;
            }
            if bf16 {
                return Bf16Isa::Avx512Bf16;
            }
        }
        Bf16Isa::Emulated
    })
}
