//! What the benchmarks share: percentiles, a time zone where the contact window
//! is open, and the memory and CPU time of processes read from `/proc`.

use chrono::{DateTime, Timelike as _, Utc};
use chrono_tz::Tz;

/// The `p` quantile (0..=1) of `sorted`, nearest rank; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// A fixed-offset zone where `at` falls in the early afternoon, so the contact
/// window stays open through a run.
pub fn zone_open_at(at: DateTime<Utc>) -> Tz {
    let hour = at.hour() as i32;
    // Offsets east of UTC are Etc/GMT-N, west Etc/GMT+N (the POSIX sign).
    let offset = (13 - hour + 36) % 24 - 12;
    let name = match offset {
        0 => "Etc/GMT".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    };
    name.parse().unwrap_or(chrono_tz::UTC)
}

/// What `/proc` says of one process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessUse {
    /// Peak resident set size (`VmHWM`), in KiB.
    pub peak_rss_kib: u64,
    /// Resident set size now (`VmRSS`), in KiB.
    pub rss_kib: u64,
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
}

/// Clock ticks per second as `/proc/<pid>/stat` counts them (`USER_HZ`, 100 on
/// Linux for every architecture the project builds on).
const TICKS_PER_SECOND: f64 = 100.0;

/// `pid`'s memory and CPU time; `None` when it is gone or `/proc` is unreadable.
pub fn process_use(pid: u32) -> Option<ProcessUse> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(ProcessUse {
        peak_rss_kib: status_kib(&status, "VmHWM:")?,
        rss_kib: status_kib(&status, "VmRSS:")?,
        cpu_seconds: stat_ticks(&stat)? as f64 / TICKS_PER_SECOND,
    })
}

/// The CPU time of every process whose command name is `comm`, in seconds.
pub fn cpu_seconds_of_all(comm: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|name| name.trim_end() == comm)
        })
        .filter_map(process_use)
        .map(|u| u.cpu_seconds)
        .sum()
}

/// The pids of processes whose command line contains `needle`.
pub fn pids_with_arg(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|line| line.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

/// The machine's busy CPU time over all cores (everything but idle and
/// iowait), in seconds, from `/proc/stat`.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .take(8)
        .map(|(_, t)| t)
        .sum();
    Some(busy as f64 / TICKS_PER_SECOND)
}

fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// utime + stime from a `/proc/<pid>/stat` line. The command name (field 2)
/// may hold spaces, so fields are counted from its closing parenthesis.
fn stat_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stat_line_is_read_past_a_command_name_with_spaces() {
        let line = "42 (tokio (x) 1) S 1 42 42 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(stat_ticks(line), Some(325));
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tx\nVmHWM:\t  20480 kB\nVmRSS:\t  10240 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(20_480));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_reads_its_own_use() {
        let own = process_use(std::process::id());
        assert!(own.is_some_and(|u| u.peak_rss_kib >= u.rss_kib && u.rss_kib > 0));
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 51.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
