//! The process's own memory, for `/metrics` and the status page: resident set size from
//! `/proc/self/statm`, and the memory limit of its cgroup (systemd's `MemoryMax=`, a container's
//! memory limit) from cgroup v2's `memory.max`, so an alert can compare the two without knowing
//! how the gateway was deployed. Both are `None` where the files do not exist (not Linux).

/// Resident memory in bytes.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // 4 KiB pages on every target the gateway ships for (x86_64, aarch64, armv7).
    Some(pages * 4096)
}

/// The cgroup v2 memory limit in bytes; `None` when unlimited or unknown.
pub fn memory_limit_bytes() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|line| line.strip_prefix("0::"))?;
    let max = std::fs::read_to_string(format!("/sys/fs/cgroup{}/memory.max", path.trim_end_matches('/'))).ok()?;
    max.trim().parse().ok()
}
