//! Token sampling: greedy, temperature, top-k, top-p, penalties and logit bias,
//! from a counter-based RNG.
//!
//! The random draw of step `s` is a pure function of `(seed, s)`, so anyone
//! holding the logits of one step can re-derive its token without replaying
//! the steps before it (the spot checks rely on this).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::kernels::exp_f64;

/// How to pick the next token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 = greedy (argmax); otherwise logits are divided by it.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose mass reaches `top_p` (1 = all).
    pub top_p: f32,
    /// Seed of the random draws.
    pub seed: u64,
    /// Subtracted once from the logit of every token already generated.
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per time it was generated.
    pub frequency_penalty: f32,
    /// Added to the logits of the given tokens.
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Check ranges (as the OpenAI API defines them) against a vocabulary size.
    pub fn validate(&self, vocab: usize) -> Result<()> {
        let bad = |param, problem: String| Err(EngineError::InvalidParameter { param, problem });
        if !(0.0..=2.0).contains(&self.temperature) {
            return bad(
                "temperature",
                format!("{} is outside [0, 2]", self.temperature),
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", format!("{} is outside (0, 1]", self.top_p));
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return bad(name, format!("{v} is outside [-2, 2]"));
            }
        }
        for &(t, b) in &self.logit_bias {
            if t as usize >= vocab {
                return bad(
                    "logit_bias",
                    format!("token {t} is outside the vocabulary of {vocab}"),
                );
            }
            if !(-100.0..=100.0).contains(&b) {
                return bad("logit_bias", format!("bias {b} is outside [-100, 100]"));
            }
        }
        Ok(())
    }
}

/// The uniform draw in [0, 1) of step `step` under `seed` (SplitMix64).
pub fn uniform(seed: u64, step: u64) -> f64 {
    let x = splitmix64(seed ^ splitmix64(step.wrapping_add(0x5EED)));
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Pick the token of step `step` from `logits`, given the tokens generated
/// so far (`history`, for the penalties).
pub fn sample(logits: &[f32], params: &SamplingParams, history: &[u32], step: u64) -> u32 {
    pick(&adjust(logits, params, history), params, step)
}

/// The logits the sampler draws from: the model's, with the presence and
/// frequency penalties of `history` subtracted and the logit bias added
/// (before temperature, top-k and top-p, which [`pick`] applies).
pub(crate) fn adjust<'a>(
    logits: &'a [f32],
    params: &SamplingParams,
    history: &[u32],
) -> Cow<'a, [f32]> {
    let penalised = params.presence_penalty != 0.0 || params.frequency_penalty != 0.0;
    if !penalised && params.logit_bias.is_empty() {
        // Nothing to change: no copy of the vocabulary-sized row.
        return Cow::Borrowed(logits);
    }
    let mut l = logits.to_vec();
    if penalised {
        let mut counts = std::collections::BTreeMap::<u32, u32>::new();
        for &t in history {
            *counts.entry(t).or_default() += 1;
        }
        for (t, c) in counts {
            if let Some(v) = l.get_mut(t as usize) {
                *v -= params.presence_penalty + params.frequency_penalty * c as f32;
            }
        }
    }
    for &(t, b) in &params.logit_bias {
        if let Some(v) = l.get_mut(t as usize) {
            *v += b;
        }
    }
    Cow::Owned(l)
}

/// Draw the token of step `step` from logits already [`adjust`]ed: argmax at
/// temperature 0, else temperature, top-k, top-p and the counter-based draw.
pub(crate) fn pick(l: &[f32], params: &SamplingParams, step: u64) -> u32 {
    if params.temperature <= 0.0 {
        return argmax(l);
    }
    let mut idx = ranked(l, params.top_k);
    if idx.is_empty() {
        return argmax(l);
    }
    let max = l[idx[0] as usize];
    let t = f64::from(params.temperature);
    let mut probs: Vec<f64> = idx
        .iter()
        .map(|&i| exp_f64((f64::from(l[i as usize]) - f64::from(max)) / t))
        .collect();
    let total: f64 = probs.iter().sum();
    if params.top_p < 1.0 {
        let mut cum = 0.0;
        let mut keep = probs.len();
        for (k, p) in probs.iter().enumerate() {
            cum += p / total;
            if cum >= f64::from(params.top_p) {
                keep = k + 1;
                break;
            }
        }
        probs.truncate(keep);
        idx.truncate(keep);
    }
    let total: f64 = probs.iter().sum();
    let target = uniform(params.seed, step) * total;
    let mut cum = 0.0;
    for (k, p) in probs.iter().enumerate() {
        cum += p;
        if target < cum {
            return idx[k];
        }
    }
    idx[idx.len() - 1]
}

/// The candidates of a draw: every token whose logit is not NaN, by
/// descending logit (`f32::total_cmp`), ties by ascending token id, so the
/// order is total; only the first `top_k` when `top_k > 0`.
///
/// Ranked as one `u64` per token (an order-preserving image of the logit,
/// inverted, above the token id) rather than with a comparator closure, which
/// had cost about 1.5 ms per sampled token on a 49,152-token vocabulary
/// (`papers/results/sampler.md`): the same order, by a partial selection
/// for top-k, else a radix sort.
fn ranked(l: &[f32], top_k: usize) -> Vec<u32> {
    let mut keys: Vec<u64> = l
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .map(|(i, &v)| (u64::from(!ordered_bits(v)) << 32) | i as u64)
        .collect();
    if top_k > 0 && top_k < keys.len() {
        keys.select_nth_unstable(top_k - 1);
        keys.truncate(top_k);
        keys.sort_unstable();
    } else {
        sort_by_high_half(&mut keys);
    }
    // The low 32 bits are the token id (vocabularies are far below 2^32).
    keys.into_iter().map(|k| k as u32).collect()
}

/// Sorts `keys` by their high 32 bits, stably: a least-significant-digit
/// radix sort, three passes of 11, 11 and 10 bits. Keys that arrive in
/// ascending order of their low halves (token ids, as `ranked` builds
/// them) leave in ascending `u64` order.
fn sort_by_high_half(keys: &mut Vec<u64>) {
    let mut out = vec![0u64; keys.len()];
    for (shift, bits) in [(32, 11), (43, 11), (54, 10)] {
        let digit = |k: u64| ((k >> shift) & ((1 << bits) - 1)) as usize;
        // starts[d + 1] counts digit d; the prefix sums make them offsets.
        let mut starts = [0usize; (1 << 11) + 1];
        for &k in keys.iter() {
            starts[digit(k) + 1] += 1;
        }
        for d in 1..starts.len() {
            starts[d] += starts[d - 1];
        }
        for &k in keys.iter() {
            let slot = &mut starts[digit(k)];
            out[*slot] = k;
            *slot += 1;
        }
        std::mem::swap(keys, &mut out);
    }
}

/// `v`'s bits mapped so that unsigned order is `f32::total_cmp`'s order.
fn ordered_bits(v: f32) -> u32 {
    let b = v.to_bits();
    if b >> 31 == 1 { !b } else { b | 0x8000_0000 }
}

/// Index of the largest logit (the lowest index among ties; NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    let Some(&first) = logits.first() else {
        return 0;
    };
    // The best value rides in a register: reloading it by index every step
    // had made this loop 3x slower.
    let (mut best, mut value) = (0usize, first);
    for (i, &v) in logits.iter().enumerate().skip(1) {
        if v > value || value.is_nan() {
            (best, value) = (i, v);
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The candidate order as it was first written (a comparator sort).
    fn ranked_by_comparator(l: &[f32], top_k: usize) -> Vec<u32> {
        let mut idx: Vec<u32> = (0..l.len() as u32)
            .filter(|&i| !l[i as usize].is_nan())
            .collect();
        idx.sort_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]).then(a.cmp(&b)));
        if top_k > 0 {
            idx.truncate(top_k);
        }
        idx
    }

    #[test]
    fn the_key_sort_ranks_exactly_as_the_comparator() {
        // Ties, signed zeros, infinities, NaNs and subnormals, in a
        // vocabulary-sized row and in small ones.
        let special = [
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE / 2.0,
            -f32::MIN_POSITIVE / 2.0,
            1.0,
            1.0,
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for n in [1usize, 2, 9, 100, 4096, 49_152] {
            let l: Vec<f32> = (0..n)
                .map(|i| match next() % 8 {
                    0 => special[i % special.len()],
                    1 => (next() % 7) as f32, // many exact ties
                    _ => (next() % 2_000_001) as f32 / 1e5 - 10.0,
                })
                .collect();
            for top_k in [0usize, 1, 5, 40, n, n + 3] {
                assert_eq!(
                    ranked(&l, top_k),
                    ranked_by_comparator(&l, top_k),
                    "n {n}, top_k {top_k}"
                );
            }
        }
        assert!(ranked(&[f32::NAN, f32::NAN], 0).is_empty());
    }

    /// `argmax` as it was first written (the best value reloaded by index).
    fn argmax_by_index(logits: &[f32]) -> u32 {
        let mut best = 0usize;
        for (i, v) in logits.iter().enumerate() {
            if *v > logits[best] || logits[best].is_nan() {
                best = i;
            }
        }
        best as u32
    }

    #[test]
    fn argmax_picks_as_first_written() {
        let rows: [&[f32]; 8] = [
            &[],
            &[f32::NAN],
            &[f32::NAN, f32::NAN, f32::NAN],
            &[f32::NAN, 1.0, 5.0, 5.0],
            &[5.0, f32::NAN, 1.0],
            &[-0.0, 0.0, -0.0],
            &[1.0, 1.0, f32::NAN],
            &[f32::NEG_INFINITY, f32::NEG_INFINITY],
        ];
        for row in rows {
            assert_eq!(argmax(row), argmax_by_index(row), "{row:?}");
        }
        let mut x = 7u32;
        let long: Vec<f32> = (0..10_000)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                if x.is_multiple_of(97) {
                    f32::NAN
                } else {
                    (x >> 20) as f32
                }
            })
            .collect();
        assert_eq!(argmax(&long), argmax_by_index(&long));
    }

    #[test]
    fn all_nan_logits_do_not_panic() {
        let p = SamplingParams {
            temperature: 1.0,
            ..SamplingParams::default()
        };
        assert_eq!(sample(&[f32::NAN; 4], &p, &[], 0), argmax(&[f32::NAN; 4]));
    }

    #[test]
    fn greedy_takes_argmax_and_lowest_tie() {
        assert_eq!(
            sample(&[0.1, 3.0, 3.0, -1.0], &SamplingParams::greedy(), &[], 0),
            1
        );
        assert_eq!(argmax(&[f32::NAN, 1.0, 0.5]), 1);
    }

    #[test]
    fn draws_are_deterministic_per_seed_and_step() {
        let p = SamplingParams {
            seed: 42,
            ..SamplingParams::default()
        };
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.3).sin()).collect();
        let a: Vec<u32> = (0..20).map(|s| sample(&logits, &p, &[], s)).collect();
        let b: Vec<u32> = (0..20).map(|s| sample(&logits, &p, &[], s)).collect();
        assert_eq!(a, b);
        let other = SamplingParams {
            seed: 43,
            ..p.clone()
        };
        let c: Vec<u32> = (0..20).map(|s| sample(&logits, &other, &[], s)).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_limits_support() {
        let logits = [1.0, 5.0, 4.9, 0.0];
        let k1 = SamplingParams {
            top_k: 1,
            seed: 9,
            ..SamplingParams::default()
        };
        for s in 0..50 {
            assert_eq!(sample(&logits, &k1, &[], s), 1);
        }
        let p = SamplingParams {
            top_p: 0.5,
            seed: 3,
            ..SamplingParams::default()
        };
        for s in 0..50 {
            assert_eq!(
                sample(&logits, &p, &[], s),
                1,
                "top_p 0.5 keeps only the top token here"
            );
        }
        let wide = SamplingParams {
            temperature: 2.0,
            seed: 3,
            ..SamplingParams::default()
        };
        let seen: std::collections::BTreeSet<u32> =
            (0..400).map(|s| sample(&logits, &wide, &[], s)).collect();
        assert!(seen.contains(&2) && seen.contains(&0), "{seen:?}");
    }

    #[test]
    fn penalties_and_bias_move_the_argmax() {
        let logits = [2.0, 1.9, 0.0];
        let p = SamplingParams {
            presence_penalty: 0.5,
            ..SamplingParams::greedy()
        };
        assert_eq!(sample(&logits, &p, &[0], 0), 1);
        let b = SamplingParams {
            logit_bias: vec![(2, 100.0)],
            ..SamplingParams::greedy()
        };
        assert_eq!(sample(&logits, &b, &[], 0), 2);
    }

    #[test]
    fn validation_names_the_parameter() {
        let bad = SamplingParams {
            temperature: 3.0,
            ..SamplingParams::default()
        };
        assert!(
            bad.validate(10)
                .unwrap_err()
                .to_string()
                .contains("temperature")
        );
        let bad = SamplingParams {
            logit_bias: vec![(10, 1.0)],
            ..SamplingParams::default()
        };
        assert!(
            bad.validate(10)
                .unwrap_err()
                .to_string()
                .contains("logit_bias")
        );
        assert!(SamplingParams::default().validate(10).is_ok());
    }

    #[test]
    fn uniform_is_in_range() {
        for s in 0..1000 {
            let u = uniform(7, s);
            assert!((0.0..1.0).contains(&u));
        }
    }
}
