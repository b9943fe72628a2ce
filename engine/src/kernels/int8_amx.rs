//! The integer matmul on AMX tiles (Intel Sapphire Rapids and later).
//!
//! One `tdpbsud` multiplies a block (32 elements) of 16 activation rows,
//! signed bytes, by the same block of a group's 16 weight rows, unsigned
//! bytes, and leaves the 16 x 16 exact i32 sums in a tile. The tile is
//! stored, and the float chain of `int8_matmul` runs on it per activation
//! row with the 16 weight rows in the lanes, exactly as the VNNI kernel
//! runs it: the integer sums are exact whatever computes them, so this
//! kernel gives the VNNI kernel's bits. One tile instruction replaces 128
//! `vpdpbusd`, which is what makes prefill and batched decode faster; a
//! single row would use a sixteenth of each tile, so decode steps of fewer
//! than 16 rows stay on VNNI (`AMX_MIN_ROWS`).
//!
//! The grouped weight layout is already the tiles' B layout (tile row k
//! holds elements `4k..4k+4` of each of the 16 weight rows), so Q8_0 blocks
//! load straight from the matrix; Q4_1 blocks are unpacked to bytes once
//! per group, into a buffer every activation tile then reads.
//!
//! Linux hands out the tiles' register state only on request
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`); where that is refused, the CPU has
//! no AMX, or `FORGE_NO_AMX` is set, the kernel declines and VNNI runs.

use std::sync::OnceLock;

use super::int8_matmul::{Job, OutRows};
use super::int8_vnni::vnni_available;
use super::int8_weights::GROUP;

#[cfg(target_arch = "x86_64")]
use std::arch::{
    asm,
    x86_64::{
        __m512, _mm512_cvtepi32_ps, _mm512_fmadd_ps, _mm512_load_si512, _mm512_mul_ps,
        _mm512_set1_epi32, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
        _mm512_storeu_si512, _mm512_sub_epi32,
    },
};

#[cfg(target_arch = "x86_64")]
use super::int8_vnni::{block_scales, weight_rows};
#[cfg(target_arch = "x86_64")]
use super::int8_weights::{Format, Q8_GROUP_BLOCK};
#[cfg(target_arch = "x86_64")]
use crate::quant::QK;

/// Fewer activation rows than this go to the VNNI kernel: below one full
/// tile, the tile's unused rows and the Q4_1 unpacking (paid per group, not
/// shared by other tiles) cost more than the tile saves (measured at 8
/// rows: 0.7x to 1.0x VNNI's speed; at 16 rows and more, 1.1x to 1.6x).
pub(super) const AMX_MIN_ROWS: usize = 16;
/// Activation rows per tile.
#[cfg(target_arch = "x86_64")]
const TILE_ROWS: usize = 16;
/// Bytes of one block's weight tile: 8 rows of 64.
#[cfg(target_arch = "x86_64")]
const B_TILE: usize = 8 * 64;
/// Groups that take each activation tile in turn, while its rows are in
/// the L1 cache (their unpacked weight tiles, up to 384 KB, wait in L2): a
/// tile's 16 rows lie a row's length apart, and reading them from L2 once
/// per group was slower (criterion `smollm2/prefill_512`, alternating
/// builds: 1.08x faster median than one group at a time over all tiles).
/// Tasks hold at most 16 groups (`int8_matmul`), so this is the task.
#[cfg(target_arch = "x86_64")]
const CHUNK: usize = 16;

/// Whether this CPU has AMX-INT8 (with AVX-512 and VNNI for the rest of
/// the chain) and Linux granted this process the tile state (asked once).
pub(super) fn amx_available() -> bool {
    static AMX: OnceLock<bool> = OnceLock::new();
    *AMX.get_or_init(|| {
        std::env::var_os("FORGE_NO_AMX").is_none()
            && vnni_available()
            && cpu_has_amx()
            && tiles_granted()
    })
}

/// CPUID leaf 7, sub-leaf 0, EDX bits 24 (AMX-TILE) and 25 (AMX-INT8).
fn cpu_has_amx() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__cpuid, __cpuid_count};
        if __cpuid(0).eax < 7 {
            return false;
        }
        let edx = __cpuid_count(7, 0).edx;
        edx & (1 << 24) != 0 && edx & (1 << 25) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Ask Linux for the tile data state (`XFEATURE_XTILEDATA`, 18), without
/// which the first tile instruction faults.
fn tiles_granted() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: this arch_prctl request takes two integers and only
        // changes which register state the kernel keeps for this process.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        rc == 0
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    false
}

/// The tile shapes (`ldtilecfg`'s 64-byte operand, palette 1). Tiles 0-2
/// and 3-5 are two sets of (activations, weights, sums), so one block's
/// multiply can run while the previous block's sums go through the floats.
#[cfg(target_arch = "x86_64")]
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

#[cfg(target_arch = "x86_64")]
impl TileConfig {
    fn new() -> Self {
        let mut c = Self {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for set in [0, 3] {
            // Activations: 16 rows of one block's 32 bytes.
            (c.rows[set], c.colsb[set]) = (TILE_ROWS as u8, QK as u16);
            // Weights: 8 rows of 4 bytes x 16 weight rows.
            (c.rows[set + 1], c.colsb[set + 1]) = (8, 64);
            // Sums: 16 activation rows x 16 i32.
            (c.rows[set + 2], c.colsb[set + 2]) = (TILE_ROWS as u8, 64);
        }
        c
    }
}

/// Two blocks' stored sums, one per tile set, 64-byte aligned for the loads.
#[cfg(target_arch = "x86_64")]
#[repr(C, align(64))]
struct Sums([[i32; TILE_ROWS * GROUP]; 2]);

/// Groups `first..first + count` of the job into `out`; false (nothing
/// written) without AMX or when the arrays do not hold them.
pub(super) fn amx_groups(job: &Job<'_>, first: usize, count: usize, out: &OutRows) -> bool {
    if !amx_available() || !job.takes(first, count) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: AMX (granted), AVX-512F/BW, VNNI and FMA were checked
        // above; `takes` vouches for every array read;
        // this task alone writes these groups (the caller's contract).
        unsafe {
            match job.w.format {
                Format::Q4_1 => run::<true>(job, first, count, out),
                Format::Q8_0 => run::<false>(job, first, count, out),
            }
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// # Safety
/// As [`amx_groups`] checks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,fma")]
unsafe fn run<const Q4: bool>(job: &Job<'_>, first: usize, count: usize, out: &OutRows) {
    let nbr = job.w.nbr;
    let config = TileConfig::new();
    // SAFETY: AMX is granted; the operand is a valid 64-byte palette-1 config.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly, preserves_flags));
    }
    UNPACKED.with_borrow_mut(|unpacked| {
        if Q4 && unpacked.len() < CHUNK * nbr * B_TILE {
            unpacked.resize(CHUNK * nbr * B_TILE, 0);
        }
        // SAFETY: the caller's contract; `unpacked` holds CHUNK * nbr tiles
        // when Q4.
        unsafe { run_chunks::<Q4>(job, first, count, out, unpacked) };
    });
    // SAFETY: AMX is granted; releasing the tiles touches no memory.
    unsafe { asm!("tilerelease", options(nostack, nomem, preserves_flags)) };
}

#[cfg(target_arch = "x86_64")]
std::thread_local! {
    /// Each thread's buffer of unpacked Q4_1 weight tiles, kept between
    /// calls: allocating and zeroing it per call cost a prefill more than
    /// its reuse (up to 384 KB per task of 16 groups).
    static UNPACKED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`run`]'s groups, a chunk at a time.
///
/// # Safety
/// As [`amx_groups`] checks, with the tiles configured; `unpacked` holds
/// `CHUNK * nbr` tiles when `Q4`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,fma")]
unsafe fn run_chunks<const Q4: bool>(
    job: &Job<'_>,
    first: usize,
    count: usize,
    out: &OutRows,
    unpacked: &mut [u8],
) {
    let (w, n, nbr) = (job.w, job.a.n, job.w.nbr);
    let mut sums = Sums([[0; TILE_ROWS * GROUP]; 2]);
    let mut c0 = first;
    while c0 < first + count {
        let chunk = (first + count - c0).min(CHUNK);
        if Q4 {
            for (k, g) in (c0..c0 + chunk).enumerate() {
                for b in 0..nbr {
                    // SAFETY: group g's blocks lie within the weights (the
                    // caller's contract); `unpacked` holds CHUNK * nbr tiles.
                    unsafe {
                        let v = weight_rows::<true>(w.qs.as_ptr(), g * nbr + b);
                        for (r, v) in v.iter().enumerate() {
                            _mm512_storeu_si512(
                                unpacked
                                    .as_mut_ptr()
                                    .add((k * nbr + b) * B_TILE + r * 64)
                                    .cast(),
                                *v,
                            );
                        }
                    }
                }
            }
        }
        let mut i0 = 0;
        while i0 < n {
            let rows = (n - i0).min(TILE_ROWS);
            for (k, g) in (c0..c0 + chunk).enumerate() {
                let tiles = if Q4 {
                    // SAFETY: within `unpacked` (k < CHUNK).
                    unsafe { unpacked.as_ptr().add(k * nbr * B_TILE) }
                } else {
                    // SAFETY: as above; a Q8_0 group block is its 8 tile rows.
                    unsafe { w.qs.as_ptr().add(g * nbr * Q8_GROUP_BLOCK) }
                };
                let at = Tile {
                    g,
                    i0,
                    rows,
                    weights: tiles,
                };
                // SAFETY: the contract above; the activations are padded to a
                // multiple of 16 rows, so every tile's rows are readable.
                unsafe {
                    match rows {
                        1 => at.rows::<Q4, 1>(job, &mut sums, out),
                        2 => at.rows::<Q4, 2>(job, &mut sums, out),
                        3 | 4 => at.rows::<Q4, 4>(job, &mut sums, out),
                        5..=8 => at.rows::<Q4, 8>(job, &mut sums, out),
                        _ => at.rows::<Q4, 16>(job, &mut sums, out),
                    }
                }
            }
            i0 += rows;
        }
        c0 += chunk;
    }
}

/// One activation tile (rows `i0..i0 + 16`, of which the first `rows` are
/// wanted) against group g, whose weight tiles lie one after another from
/// `weights`.
#[cfg(target_arch = "x86_64")]
struct Tile {
    g: usize,
    i0: usize,
    rows: usize,
    weights: *const u8,
}

#[cfg(target_arch = "x86_64")]
impl Tile {
    /// Block b's sums into tile set `SET` and then `sums.0[SET]`.
    ///
    /// # Safety
    /// Tiles configured by [`run`]; rows `i0..i0 + 16` of the activations
    /// and block b's weight tile readable.
    #[target_feature(enable = "avx512f,avx512bw,fma")]
    #[inline]
    unsafe fn multiply<const SET: usize>(&self, job: &Job<'_>, b: usize, sums: &mut Sums) {
        let a = job.a;
        // SAFETY: the caller's contract: in bounds.
        let (x, wt) = unsafe {
            (
                a.q.as_ptr().add(self.i0 * a.cols + b * QK),
                self.weights.add(b * B_TILE),
            )
        };
        let c = sums.0[SET].as_mut_ptr();
        // One block on a tile set (activations, weights, sums).
        macro_rules! block {
            ($a:literal, $w:literal, $c:literal) => {
                asm!(
                    concat!("tilezero ", $c),
                    concat!("tileloadd ", $a, ", [{x} + {xs}*1]"),
                    concat!("tileloadd ", $w, ", [{w} + {ws}*1]"),
                    concat!("tdpbsud ", $c, ", ", $a, ", ", $w),
                    concat!("tilestored [{c} + {ws}*1], ", $c),
                    x = in(reg) x, xs = in(reg) a.cols, w = in(reg) wt, ws = in(reg) 64usize,
                    c = in(reg) c, options(nostack, preserves_flags),
                )
            };
        }
        // SAFETY: the tile loads read 16 rows of 32 bytes at stride `cols`
        // and 8 rows of 64 at stride 64 (in bounds, the caller's contract);
        // the store writes 16 rows of 64 bytes into `sums.0[SET]`.
        unsafe {
            if SET == 0 {
                block!("tmm0", "tmm1", "tmm2");
            } else {
                block!("tmm3", "tmm4", "tmm5");
            }
        }
    }

    /// The tile's first `rows` rows (at most R) into `out`.
    ///
    /// # Safety
    /// As [`Tile::multiply`] for every block; group g within the weights,
    /// rows `i0..i0 + rows` below `out`'s n, and group g this task's alone.
    #[target_feature(enable = "avx512f,avx512bw,fma")]
    #[inline]
    unsafe fn rows<const Q4: bool, const R: usize>(
        &self,
        job: &Job<'_>,
        sums: &mut Sums,
        out: &OutRows,
    ) {
        let (w, a) = (job.w, job.a);
        let nbr = w.nbr;
        let mut acc: [__m512; R] = [_mm512_setzero_ps(); R];
        // SAFETY: the caller's contract, for block 0.
        unsafe { self.multiply::<0>(job, 0, sums) };
        for b in 0..nbr {
            // The next block's multiply goes first, so the tile unit works
            // on it while this block's sums go through the float chain.
            if b + 1 < nbr {
                // SAFETY: as above, for block b + 1.
                unsafe {
                    if b % 2 == 0 {
                        self.multiply::<1>(job, b + 1, sums);
                    } else {
                        self.multiply::<0>(job, b + 1, sums);
                    }
                }
            }
            let c = sums.0[b % 2].as_ptr();
            let at = self.g * nbr + b;
            // SAFETY: group g's block b is within the weights (the caller's contract).
            let (dv, mv) = unsafe { block_scales::<Q4>(w, at) };
            // SAFETY: the activations' scale arrays hold every padded row.
            let (dx, xs, c128) = unsafe {
                let ib = self.i0 * nbr + b;
                (
                    a.dx.as_ptr().add(ib),
                    a.xs.as_ptr().add(ib),
                    a.c128.as_ptr().add(ib),
                )
            };
            // Written out row by row so the accumulators stay in registers.
            macro_rules! row {
                ($($r:literal)*) => {$(
                    if $r < R {
                        // SAFETY: row r of the stored sums (64-byte aligned),
                        // and row i0 + r of the padded scale arrays.
                        unsafe {
                            let mut isum = _mm512_load_si512(c.add($r * GROUP).cast());
                            if !Q4 {
                                isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(*c128.add($r * nbr)));
                            }
                            let s = _mm512_mul_ps(dv, _mm512_set1_ps(*dx.add($r * nbr)));
                            acc[$r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), s, acc[$r]);
                            if Q4 {
                                acc[$r] = _mm512_fmadd_ps(mv, _mm512_set1_ps(*xs.add($r * nbr)), acc[$r]);
                            }
                        }
                    }
                )*};
            }
            row!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
        }
        for (r, acc) in acc.iter().take(self.rows).enumerate() {
            let mut v = [0.0f32; GROUP];
            // SAFETY: `v` is 16 floats; the rest is the caller's contract.
            unsafe {
                _mm512_storeu_ps(v.as_mut_ptr(), *acc);
                out.put(self.i0 + r, self.g, &v);
            }
        }
    }
}
