//! What each process of a run costs the machine, read from `/proc`: CPU time (user + system)
//! and resident memory (now and at its peak).
//!
//! Besides CutX's own processes, a distributed run watches the servers it leans on: PostgreSQL
//! (the postmaster and every backend, with the CPU time of backends that have exited, so a
//! difference of two readings is what the server spent between them) and the mesh's own
//! nats-server.

use std::time::Duration;

use cutx_tests::Server;

/// One process (or process tree) to read.
#[derive(Debug, Clone)]
pub(crate) struct Watched {
    pub name: String,
    pub pid: u32,
    /// The process and its children: PostgreSQL's postmaster and backends. Its memory is not
    /// reported (the backends share their buffers; a sum would count them many times).
    pub tree: bool,
}

/// One reading of one watched process.
#[derive(Debug, Clone)]
pub(crate) struct Reading {
    pub name: String,
    pub cpu: Duration,
    pub rss_kib: Option<u64>,
    pub peak_rss_kib: Option<u64>,
}

/// Every process of `server` worth watching: CutX's own (by name), then PostgreSQL and NATS
/// when the mesh uses them.
pub(crate) fn of(server: &Server) -> Vec<Watched> {
    let mut watched: Vec<Watched> =
        server.pids().into_iter().map(|(name, pid)| Watched { name, pid, tree: false }).collect();
    if server.database_url.is_some() {
        watched.extend(postgres());
    }
    if let Some(nats) = &server.nats
        && let Some(port) = nats.url.rsplit(':').next()
        && let Some(pid) = find_process("nats-server", &["-p", port])
    {
        watched.push(Watched { name: "nats".into(), pid, tree: false });
    }
    watched
}

/// The postmaster of `scripts/infra.sh`'s PostgreSQL, from the data folder it names
/// (`CUTX_TEST_POSTGRES_DIR`).
pub(crate) fn postgres() -> Option<Watched> {
    let dir = std::env::var("CUTX_TEST_POSTGRES_DIR").ok()?;
    let pid = std::fs::read_to_string(format!("{dir}/postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()?;
    Some(Watched { name: "postgres".into(), pid, tree: true })
}

/// The path of a running process's executable.
pub(crate) fn executable(pid: u32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// A process whose command is `program` and whose arguments contain `args` in a row.
fn find_process(program: &str, args: &[&str]) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let words: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
        let named = words.first()?.rsplit(|b| *b == b'/').next()? == program.as_bytes();
        let has = words.windows(args.len()).any(|w| w.iter().zip(args).all(|(a, b)| *a == b.as_bytes()));
        (named && has).then_some(pid)
    })
}

/// A reading of every watched process; one that has gone is left out.
pub(crate) fn read(watched: &[Watched]) -> Vec<Reading> {
    watched.iter().filter_map(reading).collect()
}

fn reading(w: &Watched) -> Option<Reading> {
    let stat = Stat::of(w.pid)?;
    if w.tree {
        // Exited children's time is in the parent's cutime/cstime once reaped; live ones count
        // their own.
        let children: Duration = children_of(w.pid).iter().filter_map(|pid| Stat::of(*pid)).map(|s| s.cpu).sum();
        return Some(Reading {
            name: w.name.clone(),
            cpu: stat.cpu + stat.children_cpu + children,
            rss_kib: None,
            peak_rss_kib: None,
        });
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", w.pid)).ok()?;
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Reading { name: w.name.clone(), cpu: stat.cpu, rss_kib: kib("VmRSS:"), peak_rss_kib: kib("VmHWM:") })
}

/// The CPU times of `/proc/<pid>/stat`.
struct Stat {
    ppid: u32,
    cpu: Duration,
    children_cpu: Duration,
}

impl Stat {
    fn of(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The fields after the command's closing parenthesis, from the state (field 3): the
        // parent is field 4, utime, stime, cutime and cstime fields 14 to 17.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            ppid: u32::try_from(field(4)?).ok()?,
            cpu: ticks(field(14)? + field(15)?),
            children_cpu: ticks(field(16)? + field(17)?),
        })
    }
}

/// Linux counts CPU time in clock ticks of 1/100 s (USER_HZ).
fn ticks(n: u64) -> Duration {
    Duration::from_millis(n * 10)
}

fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| Stat::of(*pid).is_some_and(|s| s.ppid == parent))
        .collect()
}

/// The TCP ports process `pid` listens on (IPv4), from its sockets and `/proc/net/tcp`.
pub(crate) fn listening_ports(pid: u32) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    let inodes: std::collections::HashSet<String> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| Some(target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.to_string()))
        .collect();
    let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")) else { return Vec::new() };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (cols.get(1)?, cols.get(3)?, cols.get(9)?);
            const LISTEN: &str = "0A";
            if *state != LISTEN || !inodes.contains(*inode) {
                return None;
            }
            u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let me = Watched { name: "me".into(), pid: std::process::id(), tree: false };
        let reading = read(&[me]).pop().expect("a reading of this process");
        assert!(reading.rss_kib.is_some_and(|k| k > 0) && reading.peak_rss_kib.is_some_and(|k| k > 0));
    }

    #[test]
    fn a_port_this_process_listens_on_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listening_ports(std::process::id()).contains(&port));
    }
}
