//! Memory figures of the current process, from `/proc/self/status` (Linux).

/// One `kB` field of `/proc/self/status`, in bytes; `None` off Linux or if
/// the field is absent.
pub fn status_field_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_field(&status, field)
}

/// Peak resident set size so far (`VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    status_field_bytes("VmHWM")
}

/// Current resident set size (`VmRSS`), in bytes.
pub fn rss_bytes() -> Option<u64> {
    status_field_bytes("VmRSS")
}

fn parse_status_field(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// `bytes` as MiB with one decimal, or `n/a`.
pub fn fmt_mib(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
        None => "n/a".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kb_fields() {
        let s = "Name:\tx\nVmHWM:\t  123456 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_status_field(s, "VmHWM"), Some(123_456 * 1024));
        assert_eq!(parse_status_field(s, "VmRSS"), Some(1000 * 1024));
        assert_eq!(parse_status_field(s, "VmPeak"), None);
    }

    #[test]
    fn reads_own_status_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().unwrap() > 0);
        }
    }
}
