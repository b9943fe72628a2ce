//! Small helpers: medians, rates, UTC dates, machine facts.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// File name of the default model in the model cache.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Threads of the criterion benches' rayon pools: `FORGE_BENCH_THREADS`
/// when it is a positive number, else 2.
pub fn bench_threads() -> usize {
    std::env::var("FORGE_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(2)
}

/// A prompt of `len` token ids for benchmarks that need no text: ids 3..
/// (past the control tokens), cycling below `vocab`.
pub fn synthetic_prompt(len: usize, vocab: usize) -> Vec<u32> {
    (0..len)
        .map(|i| (3 + (i * 37) % (vocab - 3)) as u32)
        .collect()
}

/// Where `forge-node pull` puts the default model:
/// `$FORGE_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf`, `$FORGE_HOME`
/// defaulting to `~/.forge`. `None` when neither variable is set.
pub fn default_model_path() -> Option<PathBuf> {
    let home = match std::env::var_os("FORGE_HOME").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h),
        None => PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?).join(".forge"),
    };
    Some(home.join("models").join(DEFAULT_MODEL_FILE))
}

/// The process's command line, shell-quoted where needed.
pub fn command_line() -> String {
    std::env::args()
        .map(|a| shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `s` quoted for a POSIX shell when it holds anything but plain characters.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Positional argument `i` of an example's command line (`args` without
/// the program name), parsed; `default` when absent.
pub fn positional_arg<T: std::str::FromStr>(
    args: &[String],
    i: usize,
    default: T,
) -> anyhow::Result<T> {
    args.get(i).map_or(Ok(default), |a| {
        a.parse().map_err(|_| anyhow::anyhow!("bad argument {a:?}"))
    })
}

/// `f` run `iters` times on `pool` (each call through `pool.install`), the
/// calls' wall times in milliseconds, sorted; at least one call.
pub fn sorted_ms_on(pool: &rayon::ThreadPool, iters: usize, f: &(dyn Fn() + Sync)) -> Vec<f64> {
    let mut ms: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let started = std::time::Instant::now();
            pool.install(f);
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// Median of `xs` (mean of the two middle values for an even count); `None`
/// when empty. NaNs sort last.
pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The `q`-quantile of `xs` (0 <= q <= 1), interpolating linearly between
/// order statistics; `None` when empty. `quantile(xs, 0.5)` is the median.
pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let at = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (at - lo as f64))
}

/// A confidence interval for the median of `xs` that assumes nothing of
/// their distribution (the sign test's): the order statistics `x(k)` and
/// `x(n + 1 - k)`, counting from 1, with `k` the largest for which a fair
/// coin tossed `n` times shows fewer than `k` heads with probability at most
/// `(1 - level) / 2`. It covers the median with probability at least
/// `level` when the `xs` are independent draws. For the overheads of
/// alternating run pairs that is the effect itself: which side of a pair
/// ran first alternates, so the noise in a pair's difference is symmetric
/// about zero. `None` when there are too few values for `level` (fewer than
/// 6 at 0.95) or `level` is not in (0, 1).
pub fn median_ci(xs: &[f64], level: f64) -> Option<(f64, f64)> {
    if !(level > 0.0 && level < 1.0) {
        return None;
    }
    let n = xs.len();
    let tail = (1.0 - level) / 2.0;
    // P(heads <= j), summed in logs so that large n does not underflow.
    let ln_half_n = n as f64 * 0.5f64.ln();
    let (mut ln_choose, mut below, mut k) = (0.0f64, 0.0f64, 0usize);
    for j in 0..n {
        if j > 0 {
            ln_choose += ((n - j + 1) as f64).ln() - (j as f64).ln();
        }
        below += (ln_choose + ln_half_n).exp();
        if below > tail {
            break;
        }
        k = j + 1;
    }
    if k == 0 {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    Some((v[k - 1], v[n - k]))
}

/// `n / secs`, or 0 when `secs` is not positive.
pub fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// The current time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    utc_from_unix(secs)
}

/// `secs` since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_from_unix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The CPU from `/proc/cpuinfo`, if readable: its model name, family and
/// model numbers, and which of the instruction sets the kernels pick
/// between it has. Virtual machines often report only "Intel(R) Xeon(R)
/// Processor", which alone does not tell two machines apart.
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let field = |key: &str| {
        info.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let name = field("model name")?;
    let flags = field("flags").unwrap_or_default();
    let has: Vec<&str> = ["amx_int8", "avx512_vnni", "avx512f", "avx2"]
        .into_iter()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .collect();
    let (family, model) = (field("cpu family"), field("model"));
    Some(match (family, model) {
        (Some(f), Some(m)) => format!("{name} (family {f}, model {m}; {})", has.join(", ")),
        _ => format!("{name} ({})", has.join(", ")),
    })
}

/// The 1-minute load average from `/proc/loadavg`, if readable.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Writes a result table to `md_path` and its raw figures as JSON next to
/// it (same name, `.json`), creating the folder.
pub fn write_results(
    md_path: &std::path::Path,
    md: &str,
    report: &impl serde::Serialize,
) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Some(dir) = md_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(md_path, md).with_context(|| format!("cannot write {}", md_path.display()))?;
    let json_path = md_path.with_extension("json");
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(&json_path, json + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    tracing::info!(md = %md_path.display(), json = %json_path.display(), "wrote the results");
    Ok(())
}

/// Parses a `KEY=VALUE` command-line argument (for `--llama-env`).
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// CPU time consumed so far by the live threads of this process, in
/// seconds, from `/proc/self/task/*/schedstat` (nanosecond resolution;
/// threads that already exited are not counted). Under load from other
/// processes, CPU time is a steadier measure of work than wall time.
pub fn process_cpu_secs() -> Option<f64> {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok();
        // A thread may exit between listing and reading: skip it.
        if let Some(v) = stat
            .as_deref()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            ns += v;
        }
    }
    Some(ns as f64 * 1e-9)
}

/// Runs `f` and returns its result with the CPU seconds this process's
/// threads spent meanwhile (0 where `/proc` is unavailable).
pub fn cpu_timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let before = process_cpu_secs();
    let out = f();
    let spent = before
        .zip(process_cpu_secs())
        .map_or(0.0, |(a, b)| (b - a).max(0.0));
    (out, spent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn quantiles_interpolate_and_agree_with_the_median() {
        let xs = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&xs, 0.0), Some(1.0));
        assert_eq!(quantile(&xs, 1.0), Some(5.0));
        assert_eq!(quantile(&xs, 0.25), Some(2.0));
        assert_eq!(quantile(&[1.0, 2.0], 0.25), Some(1.25));
        assert_eq!(quantile(&xs, 0.5), median(&xs));
        assert_eq!(
            quantile(&[4.0, 1.0, 2.0, 3.0], 0.5),
            median(&[4.0, 1.0, 2.0, 3.0])
        );
    }

    #[test]
    fn median_intervals_use_the_sign_tests_ranks() {
        // Ranks from the exact binomial tail (math.comb), so each value is
        // its own rank: n = 6 -> 1 and 6, 10 -> 2 and 9, 100 -> 40 and 61,
        // 2000 -> 956 and 1045.
        for (n, lo, hi) in [(6, 1, 6), (10, 2, 9), (100, 40, 61), (2000, 956, 1045)] {
            let xs: Vec<f64> = (1..=n).rev().map(f64::from).collect();
            assert_eq!(
                median_ci(&xs, 0.95),
                Some((lo.into(), hi.into())),
                "n = {n}"
            );
        }
        assert_eq!(median_ci(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.95), None);
        assert_eq!(median_ci(&[], 0.95), None);
        assert_eq!(median_ci(&[1.0; 10], 1.0), None);
        // A lower level narrows it.
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        let (lo, hi) = median_ci(&xs, 0.5).expect("an interval");
        assert!(
            lo > 40.0 && hi < 61.0 && lo <= 50.5 && hi >= 50.5,
            "{lo} {hi}"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("--runs=3"), "--runs=3");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn dates() {
        assert_eq!(utc_from_unix(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_from_unix(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_from_unix(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn cpu_time_grows_with_work() {
        // Spin for 200 ms of wall time: many scheduler ticks, so the
        // kernel's per-thread runtime (updated at ticks and switches) moves.
        let (x, spent) = cpu_timed(|| {
            let t = std::time::Instant::now();
            let mut x = 0u64;
            while t.elapsed() < std::time::Duration::from_millis(200) {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
            }
            x
        });
        assert_ne!(x, 1);
        assert!(spent > 0.0, "{spent}");
    }
}
