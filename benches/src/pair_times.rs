//! The file `commit_ab raw=PATH` writes: each A/B pair's two times, so
//! that runs made hours apart can be pooled (`commit_ab pool`).
//!
//! A header line `# <what ran> | steps <N>` (N decode steps per timed
//! run), then one line per pair, `<seconds without> <seconds with>`.

use std::io::Write;

use anyhow::{Context, Result, bail};

/// The pairs of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct PairTimes {
    /// Decode steps per timed run.
    pub steps: usize,
    /// (seconds without, seconds with), in run order.
    pub pairs: Vec<(f64, f64)>,
}

impl PairTimes {
    /// Per pair, the with-side time over the without-side time, minus 1,
    /// in percent.
    pub fn overheads(&self) -> Vec<f64> {
        self.pairs
            .iter()
            .map(|&(off, on)| 100.0 * (on / off - 1.0))
            .collect()
    }

    /// The summed times of each side.
    pub fn totals(&self) -> (f64, f64) {
        self.pairs
            .iter()
            .fold((0.0, 0.0), |(a, b), &(off, on)| (a + off, b + on))
    }
}

/// Writes the header line: `what` ran, `steps` steps per run.
pub fn write_header(out: &mut impl Write, what: &str, steps: usize) -> std::io::Result<()> {
    writeln!(out, "# {what} | steps {steps}")
}

/// Writes one pair's line.
pub fn write_pair(out: &mut impl Write, off: f64, on: f64) -> std::io::Result<()> {
    writeln!(out, "{off:.9} {on:.9}")
}

/// Parses a file's text; `name` labels the errors. Fails on a missing or
/// malformed header, a line that is not two positive finite times, and a
/// file with no pairs.
pub fn parse(name: &str, text: &str) -> Result<PairTimes> {
    let mut steps = None;
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(header) = line.strip_prefix('#') {
            let count = header
                .rsplit_once("| steps ")
                .and_then(|(_, s)| s.trim().parse::<usize>().ok())
                .filter(|&s| s > 0)
                .with_context(|| format!("{name}:{}: bad header {line:?}", n + 1))?;
            if steps.replace(count).is_some() {
                bail!("{name}:{}: a second header", n + 1);
            }
            continue;
        }
        if steps.is_none() {
            bail!("{name}:{}: a pair before the header", n + 1);
        }
        let mut times = line.split_whitespace().map(str::parse::<f64>);
        let (Some(Ok(off)), Some(Ok(on)), None) = (times.next(), times.next(), times.next()) else {
            bail!("{name}:{}: expected two times, got {line:?}", n + 1);
        };
        if !(off.is_finite() && on.is_finite() && off > 0.0 && on > 0.0) {
            bail!("{name}:{}: times must be positive, got {line:?}", n + 1);
        }
        pairs.push((off, on));
    }
    let steps = steps.with_context(|| format!("{name}: no header line"))?;
    if pairs.is_empty() {
        bail!("{name}: no pairs");
    }
    Ok(PairTimes { steps, pairs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(steps: usize, pairs: &[(f64, f64)]) -> String {
        let mut out = Vec::new();
        write_header(&mut out, "commit_ab plain 2 64 64", steps).unwrap();
        for &(off, on) in pairs {
            write_pair(&mut out, off, on).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn what_is_written_parses_back() {
        let text = written(64, &[(0.25, 0.2525), (0.5, 0.495)]);
        let p = parse("f", &text).unwrap();
        assert_eq!(p.steps, 64);
        assert_eq!(p.pairs, vec![(0.25, 0.2525), (0.5, 0.495)]);
        let o = p.overheads();
        assert!(
            (o[0] - 1.0).abs() < 1e-9 && (o[1] + 1.0).abs() < 1e-9,
            "{o:?}"
        );
        assert_eq!(p.totals(), (0.75, 0.7475));
    }

    #[test]
    fn malformed_files_are_errors_naming_the_line() {
        let good = written(64, &[(0.25, 0.26)]);
        let cases = [
            ("", "no header"),
            ("# commit_ab plain | steps 64\n", "no pairs"),
            ("0.2 0.3\n", "before the header"),
            ("# commit_ab plain\n0.2 0.3\n", "bad header"),
            ("# x | steps 0\n0.2 0.3\n", "bad header"),
            ("# x | steps many\n0.2 0.3\n", "bad header"),
            (&format!("{good}{good}"), "a second header"),
            (&format!("{good}1 2 3\n"), "f:3: expected two times"),
            (&format!("{good}0.2\n"), "expected two times"),
            (&format!("{good}0.2 fast\n"), "expected two times"),
            (&format!("{good}0 0.3\n"), "positive"),
            (&format!("{good}0.2 -1\n"), "positive"),
            (&format!("{good}NaN 0.3\n"), "positive"),
            (&format!("{good}0.2 inf\n"), "positive"),
        ];
        for (text, why) in cases {
            let e = parse("f", text).expect_err(text);
            assert!(e.to_string().contains(why), "{text:?}: {e}");
        }
    }
}
