//! The plain-integer FLOPs reference (DESIGN.md section 3, over a forwarded range).

/// The model dimensions that enter the FLOPs formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlopConfig {
    /// L: transformer layers.
    pub layers: u64,
    /// d: model (residual) dimension.
    pub d_model: u64,
    /// H: attention (query) heads.
    pub heads: u64,
    /// Hkv: key/value heads.
    pub kv_heads: u64,
    /// dh: head dimension.
    pub head_dim: u64,
    /// F: FFN hidden dimension.
    pub ffn: u64,
    /// V: vocabulary size.
    pub vocab: u64,
}

/// Exact FLOPs of a request, or `None` on invalid input or `u128` overflow.
///
/// With `T = n_prompt + n_gen - 1` (positions `start..T` are forwarded) and
/// `P = 2*d*H*dh + 2*2*d*Hkv*dh + 2*H*dh*d + 3*2*d*F`:
///
/// ```text
/// FLOPs = (T - start)*L*P + 2*L*H*dh*(T*(T+1) - start*(start+1)) + n_gen*2*d*V
/// ```
///
/// Invalid: `n_gen == 0`; `start >= T` when `T > 0`; `start > 0` when `T == 0`.
pub fn flops(cfg: &FlopConfig, n_prompt: u64, n_gen: u64, start: u64) -> Option<u128> {
    if n_gen == 0 {
        return None;
    }
    let t = n_prompt.checked_add(n_gen - 1)?;
    if start > t || (start == t && t > 0) {
        return None;
    }
    let w = |x: u64| x as u128;
    let (l, d, h, hkv, dh, f, v) = (
        w(cfg.layers),
        w(cfg.d_model),
        w(cfg.heads),
        w(cfg.kv_heads),
        w(cfg.head_dim),
        w(cfg.ffn),
        w(cfg.vocab),
    );
    let prod = |xs: &[u128]| xs.iter().try_fold(1u128, |acc, &x| acc.checked_mul(x));

    let p = prod(&[2, d, h, dh])?
        .checked_add(prod(&[4, d, hkv, dh])?)?
        .checked_add(prod(&[2, h, dh, d])?)?
        .checked_add(prod(&[6, d, f])?)?;
    let (t, s) = (w(t), w(start));
    let projections = prod(&[t - s, l, p])?;
    let span = prod(&[t, t + 1])? - prod(&[s, s + 1])?; // s <= t, so no underflow
    let attention = prod(&[2, l, h, dh, span])?;
    let lm_head = prod(&[w(n_gen), 2, d, v])?;
    projections.checked_add(attention)?.checked_add(lm_head)
}
