//! Process figures from /proc: CPU time and resident memory.

/// user + system clock ticks of the processes.
pub fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            // Fields after the command name (which may contain spaces) start after ") ".
            let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
            fields
                .get(11)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                + fields
                    .get(12)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
        })
        .sum()
}

/// Resident memory of the processes together, in KiB (`VmRSS`).
pub fn rss_kib(pids: &[u32]) -> i64 {
    pids.iter().map(|pid| status_kib(*pid, "VmRSS:")).sum()
}

/// A figure in KiB from the process's status (0 once it is gone).
fn status_kib(pid: u32, field: &str) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .unwrap_or(0)
}

/// The most resident memory the process has had, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> i64 {
    status_kib(pid, "VmHWM:")
}
