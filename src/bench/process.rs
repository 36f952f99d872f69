//! CPU time, memory and threads of a process, from /proc (Linux).

use anyhow::{Context, Result, anyhow};

/// What one look at /proc/<pid> shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessSample {
    /// User + system CPU time so far, seconds.
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub threads: u64,
}

/// User + system time (clock ticks) from the text of /proc/<pid>/stat.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: count the
    // fields after its closing parenthesis. utime and stime are fields 14, 15.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// (VmRSS in bytes, Threads) from the text of /proc/<pid>/status.
pub fn parse_status(status: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")? * 1024, field("Threads:")?))
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Looks at a process now; `pid` None means this process.
pub fn sample(pid: Option<u32>) -> Result<ProcessSample> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat"))
        .with_context(|| format!("reading {dir}/stat"))?;
    let status = std::fs::read_to_string(format!("{dir}/status"))
        .with_context(|| format!("reading {dir}/status"))?;
    let ticks = parse_stat_ticks(&stat).ok_or_else(|| anyhow!("{dir}/stat is not as expected"))?;
    let (rss_bytes, threads) =
        parse_status(&status).ok_or_else(|| anyhow!("{dir}/status is not as expected"))?;
    Ok(ProcessSample {
        cpu_seconds: ticks as f64 / clock_ticks_per_second(),
        rss_bytes,
        threads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_past_an_awkward_command_name() {
        let stat = "4242 (tokio rt) worker) S 1 4242 4242 0 -1 4194560 2000 0 0 0 1500 250 0 0 20 0 33 0 100 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(1750));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn reads_rss_and_threads() {
        let status = "Name:\tgridmix\nVmHWM:\t  9000 kB\nVmRSS:\t  8192 kB\nThreads:\t37\n";
        assert_eq!(parse_status(status), Some((8192 * 1024, 37)));
        assert_eq!(parse_status("Name: x\n"), None);
    }

    #[test]
    fn a_sample_follows_the_threads_memory_and_cpu_time_of_a_process() {
        let before = sample(None).unwrap();
        // Eight threads that live until told, 64 MiB written to (so
        // resident), and a fifth of a second of CPU burnt: each shows in the
        // next look.
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let stopped = std::sync::Arc::new(std::sync::Mutex::new(stopped));
        let parked: Vec<_> = (0..8)
            .map(|_| {
                let stopped = stopped.clone();
                std::thread::spawn(move || {
                    let _ = stopped.lock().map(|s| s.recv());
                })
            })
            .collect();
        let memory = vec![1u8; 64 << 20];
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(200) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let after = sample(None).unwrap();
        // Other tests' threads may end meanwhile, one per test running at once.
        let harness = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        assert!(
            after.threads >= before.threads + 8 - harness.min(7),
            "{before:?} -> {after:?}"
        );
        assert!(
            after.rss_bytes >= before.rss_bytes + (60 << 20),
            "{before:?} -> {after:?}"
        );
        // Clock ticks are 10 ms; other tests' threads only add to it.
        assert!(
            after.cpu_seconds - before.cpu_seconds >= 0.15,
            "{before:?} -> {after:?}"
        );
        std::hint::black_box(&memory);
        drop(stop);
        for thread in parked {
            thread.join().unwrap();
        }
    }

    #[test]
    fn another_process_is_sampled_by_pid_and_a_missing_one_is_an_error() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let s = sample(Some(child.id())).unwrap();
        assert_eq!(s.threads, 1, "{s:?}");
        assert!(s.rss_bytes > 0 && s.rss_bytes < (64 << 20), "{s:?}");
        child.kill().unwrap();
        child.wait().unwrap();
        let gone = sample(Some(child.id())).unwrap_err();
        assert!(
            format!("{gone:#}").contains(&format!("/proc/{}", child.id())),
            "{gone:#}"
        );
    }
}
