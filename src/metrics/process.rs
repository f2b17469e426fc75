//! The standard `process_*` metrics (resident memory, CPU time, start time), read from /proc.

use std::fmt::Write;

use super::exposition::sample;

/// Linux reports CPU time in clock ticks of 1/100 s on every architecture the controller is built for.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// What the kernel tells about this process; `None` where it could not be read (not Linux, no /proc).
#[derive(Debug, Default)]
pub(crate) struct ProcessStats {
    resident_bytes: Option<u64>,
    cpu_seconds: Option<f64>,
    start_time_seconds: Option<f64>,
}

impl ProcessStats {
    pub(crate) fn read() -> ProcessStats {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields = stat_fields(&stat);
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        let boot_time = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok());
        ProcessStats {
            resident_bytes: statm
                .split_whitespace()
                .nth(1)
                .and_then(|pages| pages.parse::<u64>().ok())
                .map(|pages| pages * page_size()),
            // utime and stime are fields 14 and 15 of stat(5); starttime is field 22.
            cpu_seconds: ticks(11)
                .zip(ticks(12))
                .map(|(user, system)| (user + system) as f64 / CLOCK_TICKS_PER_SECOND),
            start_time_seconds: boot_time
                .zip(ticks(19))
                .map(|(boot, start)| boot as f64 + start as f64 / CLOCK_TICKS_PER_SECOND),
        }
    }
}

/// The fields of /proc/self/stat after the command name, which may itself contain spaces and parentheses;
/// index 0 is field 3 (state).
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

/// The page size from the ELF auxiliary vector (AT_PAGESZ), which the kernel hands every process; 4096 if
/// it cannot be read.
fn page_size() -> u64 {
    const AT_PAGESZ: u64 = 6;
    let word = std::mem::size_of::<usize>();
    let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
    auxv.chunks_exact(2 * word)
        .map(|pair| (read_word(&pair[..word]), read_word(&pair[word..])))
        .find(|(key, _)| *key == AT_PAGESZ)
        .map(|(_, value)| value)
        .filter(|size| size.is_power_of_two())
        .unwrap_or(4096)
}

fn read_word(bytes: &[u8]) -> u64 {
    let mut buffer = [0u8; 8];
    if cfg!(target_endian = "little") {
        buffer[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(buffer)
    } else {
        buffer[8 - bytes.len()..].copy_from_slice(bytes);
        u64::from_be_bytes(buffer)
    }
}

pub(crate) fn render_process(out: &mut String, stats: &ProcessStats) {
    let mut process = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(value) = value {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            sample(out, name, &[], value);
        }
    };
    process(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        stats.resident_bytes.map(|b| b as f64),
    );
    process(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        stats.cpu_seconds,
    );
    process(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        stats.start_time_seconds,
    );
}

#[cfg(test)]
mod tests {
    use super::super::exposition::reader::{find, parse};
    use super::*;

    #[test]
    fn process_metrics_come_from_proc() {
        let mut text = String::new();
        render_process(&mut text, &ProcessStats::read());
        let samples = parse(&text);
        let rss = find(&samples, "process_resident_memory_bytes", &[]).expect("rss");
        assert!(rss > 1_000_000.0, "{rss}");
        assert!(find(&samples, "process_cpu_seconds_total", &[]).expect("cpu") >= 0.0);
        let start = find(&samples, "process_start_time_seconds", &[]).expect("start");
        let now = chrono::Utc::now().timestamp() as f64;
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "{start}"
        );
        assert_eq!(page_size() % 4096, 0);
    }

    #[test]
    fn stat_fields_survive_odd_command_names() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 12345 0 0";
        let fields = stat_fields(stat);
        assert_eq!(fields[0], "S");
        assert_eq!(fields[11], "250");
        assert_eq!(fields[12], "50");
        assert_eq!(fields[19], "12345");
    }
}
