//! Processes as the host sees them, for tests that check a workload left nothing behind: found
//! by a distinctive argument, because a sandboxed workload's own pids are not the host's.

/// Whether `pid` is gone, or a zombie waiting for whoever inherited it.
pub fn process_is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Live processes that have `arg` among their arguments.
pub fn processes_with_arg(arg: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
                && !process_is_dead(*pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_found_by_its_argument_and_is_dead_once_reaped() {
        let marker = format!("37.{}", std::process::id());
        let mut child = std::process::Command::new("sleep")
            .arg(&marker)
            .spawn()
            .expect("sleep runs");
        // Until it has execed, the child still shows its parent's arguments.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while processes_with_arg(&marker).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(processes_with_arg(&marker), vec![child.id()]);
        assert!(!process_is_dead(child.id()));
        child.kill().expect("kills");
        child.wait().expect("reaps");
        assert!(processes_with_arg(&marker).is_empty());
        assert!(process_is_dead(child.id()));
    }
}
