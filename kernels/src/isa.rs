//! Which instruction sets the kernels use, chosen once at run time (never at build time: the
//! same binary runs on AVX-512 Xeons with AMX, AVX-512 EPYCs without it, and older CPUs).
//!
//! `NNUNET_KERNELS_ISA=avx512|avx2|portable` caps the fp32 choice and
//! `NNUNET_KERNELS_BF16=amx|avx512bf16|emulated` the bf16 choice (parity tests, benchmarks).

use std::sync::OnceLock;
use std::sync::atomic::Ordering;

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
        let limit = match crate::shared::settings().isa_limit.load(Ordering::Relaxed) {
            1 => Isa::Portable,
            2 => Isa::Avx2,
            _ => Isa::Avx512,
        };
        Self::available().min(limit)
    }

    /// Caps the fp32 family at `limit` (`None`: no cap) for the whole process: parity tests and
    /// benchmarks compare the families on one machine.
    pub fn set_limit(limit: Option<Isa>) {
        crate::shared::settings()
            .isa_limit
            .store(limit.map_or(0, |i| i as u8 + 1), Ordering::Relaxed);
    }

    /// The best fp32 family of this CPU (capped by `NNUNET_KERNELS_ISA`).
    pub fn available() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            let hw = hardware_isa();
            match std::env::var("NNUNET_KERNELS_ISA").as_deref() {
                Ok("portable") => Isa::Portable,
                Ok("avx2") => hw.min(Isa::Avx2),
                _ => hw,
            }
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
        let limit = match crate::shared::settings().bf16_limit.load(Ordering::Relaxed) {
            1 => Bf16Isa::Emulated,
            2 => Bf16Isa::Avx512Bf16,
            _ => Bf16Isa::Amx,
        };
        Self::available().min(limit)
    }

    /// Caps the bf16 family at `limit` (`None`: no cap) for the whole process (parity tests,
    /// benchmarks).
    pub fn set_limit(limit: Option<Bf16Isa>) {
        crate::shared::settings()
            .bf16_limit
            .store(limit.map_or(0, |i| i as u8 + 1), Ordering::Relaxed);
    }

    /// The best bf16 family of this CPU (capped by `NNUNET_KERNELS_BF16`).
    pub fn available() -> Bf16Isa {
        static ISA: OnceLock<Bf16Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            let hw = hardware_bf16();
            match std::env::var("NNUNET_KERNELS_BF16").as_deref() {
                Ok("emulated") => Bf16Isa::Emulated,
                Ok("avx512bf16") => hw.min(Bf16Isa::Avx512Bf16),
                _ => hw,
            }
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

#[cfg(target_arch = "x86_64")]
fn hardware_isa() -> Isa {
    if std::arch::is_x86_feature_detected!("avx512f") {
        Isa::Avx512
    } else if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        Isa::Avx2
    } else {
        Isa::Portable
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn hardware_isa() -> Isa {
    Isa::Portable
}

#[cfg(target_arch = "x86_64")]
fn hardware_bf16() -> Bf16Isa {
    static HW: OnceLock<Bf16Isa> = OnceLock::new();
    *HW.get_or_init(|| {
        if hardware_isa() < Isa::Avx512 {
            return Bf16Isa::Emulated;
        }
        let bf16 = std::arch::is_x86_feature_detected!("avx512bf16")
            && std::arch::is_x86_feature_detected!("avx512bw");
        if bf16 && crate::microkernel::amx::available() {
            Bf16Isa::Amx
        } else if bf16 {
            Bf16Isa::Avx512Bf16
        } else {
            Bf16Isa::Emulated
        }
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn hardware_bf16() -> Bf16Isa {
    Bf16Isa::Emulated
}
