//! What the figures were measured on.

use std::path::Path;

use serde::Serialize;

/// CPU features that change eddy's figures (CRC-32 and copies), reported as present or not.
const FEATURES: [&str; 5] = ["sse4_2", "pclmulqdq", "avx2", "vpclmulqdq", "avx512f"];

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    /// `cpu family` of /proc/cpuinfo (23 is AMD Zen 1 and 2).
    pub cpu_family: Option<u32>,
    /// Which of [`FEATURES`] the CPU has.
    pub cpu_features: Vec<String>,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// Filesystem and device holding the data directory.
    pub disk: String,
}

impl Machine {
    pub fn detect(data_dir: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let field = |name: &str| {
            cpuinfo.lines().find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_string())
            })
        };
        let flags = field("flags").unwrap_or_default();
        let flags: Vec<&str> = flags.split_whitespace().collect();
        let memory_kib: f64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("MemTotal:").and_then(|r| r.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        Machine {
            cpu,
            cpu_family: field("cpu family").and_then(|f| f.parse().ok()),
            cpu_features: FEATURES
                .iter()
                .filter(|f| flags.contains(f))
                .map(|f| f.to_string())
                .collect(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel,
            disk: mount_of(data_dir),
        }
    }
}

impl Machine {
    /// The machine section of `docs/benchmarks.md`, as a Markdown table; `rustc` is the
    /// compiler's `rustc -V`.
    pub fn markdown(&self, rustc: &str) -> String {
        let family = self.cpu_family.map_or(String::new(), |f| format!(" (family {f})"));
        let lacks: Vec<&str> = FEATURES
            .iter()
            .copied()
            .filter(|f| !self.cpu_features.iter().any(|c| c == f))
            .collect();
        let lacks =
            if lacks.is_empty() { String::new() } else { format!("; lacks {}", lacks.join(", ")) };
        [
            "| | |".to_string(),
            "|---|---|".to_string(),
            format!(
                "| CPU | {}{family}, {} cores; has {}{lacks} |",
                self.cpu,
                self.cores,
                self.cpu_features.join(", ")
            ),
            format!("| memory | {} GiB |", self.memory_gib),
            format!("| disk | {} |", self.disk),
            format!("| kernel | {} |", self.kernel),
            format!("| build | `--release` (thin LTO), {rustc} |"),
        ]
        .join("\n")
    }
}

/// "device (fstype) at mountpoint" for the longest mount point containing `path`.
fn mount_of(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?, f.next()?))
        })
        .filter(|(_, mnt, _)| path.starts_with(mnt))
        .max_by_key(|(_, mnt, _)| mnt.len())
        .map_or_else(|| "unknown".into(), |(dev, mnt, fs)| format!("{dev} ({fs}) at {mnt}"))
}
