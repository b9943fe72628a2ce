//! Log-probabilities of sampled tokens, computed only for sequences that ask.
//!
//! The distribution reported is the log-softmax of the logits the sampler
//! drew from *before* temperature, top-k and top-p: the model's logits with
//! the presence/frequency penalties and the logit bias applied
//! ([`crate::sampling`]). That is the choice OpenAI's API makes, and it keeps
//! the numbers a property of the model and the request's penalties, not of
//! how the draw was truncated (under top-k a token outside the top k would
//! otherwise have probability 0).

use serde::{Deserialize, Serialize};

/// The log-probability of one sampled token and of its most likely alternatives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprobs {
    /// The sampled token.
    pub token: u32,
    /// Its natural-log probability (`-inf` if the adjusted logit was `-inf` or NaN).
    pub logprob: f32,
    /// The most likely tokens and their log-probabilities, most likely first
    /// (ties: lower token id first); as many as asked, at most the vocabulary.
    pub top: Vec<(u32, f32)>,
}

/// Log-probabilities of `token` and of the `top` most likely tokens under
/// log-softmax of `adjusted` (NaN logits count as `-inf`).
pub(crate) fn token_logprobs(adjusted: &[f32], token: u32, top: usize) -> TokenLogprobs {
    let lse = log_sum_exp(adjusted);
    let lp = |i: u32| -> f32 {
        match adjusted.get(i as usize) {
            Some(&v) if !v.is_nan() && lse.is_finite() => (f64::from(v) - lse) as f32,
            _ => f32::NEG_INFINITY,
        }
    };
    let top = top_ids(adjusted, top)
        .into_iter()
        .map(|i| (i, lp(i)))
        .collect();
    TokenLogprobs {
        token,
        logprob: lp(token),
        top,
    }
}

/// `ln Σ exp(l_i)` over the non-NaN logits, in f64, shifted by the maximum so
/// that no term overflows.
fn log_sum_exp(l: &[f32]) -> f64 {
    let max = l
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return f64::from(max);
    }
    let m = f64::from(max);
    let sum: f64 = l
        .iter()
        .filter(|v| !v.is_nan())
        .map(|&v| (f64::from(v) - m).exp())
        .sum();
    m + sum.ln()
}

/// Ids of the `k` largest logits, largest first, ties by lower id (the same
/// total order the sampler sorts candidates by); NaN logits are never chosen.
fn top_ids(l: &[f32], k: usize) -> Vec<u32> {
    if k == 0 {
        return Vec::new();
    }
    let order = |a: &u32, b: &u32| l[*b as usize].total_cmp(&l[*a as usize]).then(a.cmp(b));
    let mut ids: Vec<u32> = (0..l.len() as u32)
        .filter(|&i| !l[i as usize].is_nan())
        .collect();
    if k < ids.len() {
        // Partial selection: O(V) instead of sorting the whole vocabulary.
        ids.select_nth_unstable_by(k - 1, order);
        ids.truncate(k);
    }
    ids.sort_by(order);
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_of_known_logits() {
        // Probabilities 1/2, 1/4, 1/4.
        let l = [2f32.ln(), 0.0, 0.0];
        let t = token_logprobs(&l, 2, 2);
        assert!((t.logprob - 0.25f32.ln()).abs() < 1e-6);
        assert_eq!(
            t.top.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![0, 1],
            "ties go to the lower id"
        );
        assert!((t.top[0].1 - 0.5f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn large_logits_do_not_overflow_and_all_mass_sums_to_one() {
        let l: Vec<f32> = (0..1000)
            .map(|i| 500.0 + (i as f32 * 0.37).sin() * 30.0)
            .collect();
        let t = token_logprobs(&l, 3, l.len());
        assert_eq!(t.top.len(), l.len());
        let total: f64 = t.top.iter().map(|&(_, p)| f64::from(p).exp()).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        assert!(t.top.windows(2).all(|w| w[0].1 >= w[1].1));
        assert_eq!(
            t.top.iter().find(|x| x.0 == 3).map(|x| x.1),
            Some(t.logprob)
        );
    }

    #[test]
    fn nan_and_negative_infinity_are_impossible_tokens() {
        let l = [f32::NAN, 1.0, f32::NEG_INFINITY, 1.0];
        let t = token_logprobs(&l, 0, 10);
        assert_eq!(t.logprob, f32::NEG_INFINITY);
        assert_eq!(
            t.top.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![1, 3, 2],
            "NaN is never listed"
        );
        assert_eq!(t.top[2].1, f32::NEG_INFINITY);
        assert!((t.top[0].1 - 0.5f32.ln()).abs() < 1e-6);
        let none = token_logprobs(&[f32::NAN, f32::NAN], 1, 0);
        assert_eq!((none.logprob, none.top.len()), (f32::NEG_INFINITY, 0));
    }
}
