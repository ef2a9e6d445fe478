//! `sidecar-bench --store vault --against-agent`: our sidecar beside Vault
//! Agent (`bao agent`, OpenBao's build of it) in one run. The same `bao server
//! -dev`, the same 10 kv-v2 secrets, the same render interval; the agent's 10
//! `template` stanzas write the files our sidecar writes, into another
//! directory. Measured for both from /proc: the first complete write from
//! process start, RSS (VmRSS sampled every second; steady = the median of the
//! samples, peak = the largest sample or VmHWM), CPU seconds (utime + stime,
//! live and reaped children included) over the polling window, and the
//! propagation of a change to one secret, written with `bao kv put` several
//! times during the window.
//!
//!   target/release/sidecar-bench --store vault --against-agent              # 600 s, as `make bench`
//!   target/release/sidecar-bench --store vault --against-agent --duration 60s

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{BAO_TOKEN, Bao, Sidecar, Target, percentile, spawn, wait_until};

/// What the comparison needs from the command line.
pub struct Options {
    pub sidecar_bin: PathBuf,
    pub bao_bin: PathBuf,
    pub secrets: usize,
    pub starts: usize,
    pub duration: Duration,
    pub interval: Duration,
    pub changes: usize,
}

/// `bao agent -config=<file>` with its own output directory.
struct Agent {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent's configuration: auto_auth with the `token_file` method (the
/// same root token our sidecar gets as VAULT_TOKEN), one `template` stanza
/// per secret, the static secrets re-read every `interval`.
fn agent_config(
    address: &str,
    token_file: &Path,
    dir: &Path,
    secrets: usize,
    interval: Duration,
) -> String {
    let mut hcl = format!(
        r#"log_level = "warn"
vault {{
  address = "{address}"
}}
auto_auth {{
  method {{
    type = "token_file"
    config = {{
      token_file_path = "{}"
    }}
  }}
}}
template_config {{
  static_secret_render_interval = "{}s"
}}
"#,
        token_file.display(),
        interval.as_secs()
    );
    for i in 0..secrets {
        hcl.push_str(&format!(
            r#"template {{
  contents = "{{{{ with secret \"secret/data/secret-{i}\" }}}}{{{{ .Data.data.v }}}}{{{{ end }}}}"
  destination = "{}"
}}
"#,
            dir.join(format!("secret-{i}")).display()
        ));
    }
    hcl
}

/// Starts the agent with `hcl(<its output directory>)` as its configuration,
/// written to `config`.
fn spawn_agent(
    bao_bin: &Path,
    config: &Path,
    hcl: impl Fn(&Path) -> String,
) -> anyhow::Result<Agent> {
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir())?;
    std::fs::write(config, hcl(dir.path()))?;
    let child = Command::new(bao_bin)
        .arg("agent")
        .arg(format!("-config={}", config.display()))
        .env_clear()
        // Its CLI setup runs `sh` (the token helper) even for the agent.
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("{} agent", bao_bin.display()))?;
    Ok(Agent { child, dir })
}

/// All `secrets` files in `dir` hold `value-<i>`.
fn complete(dir: &Path, secrets: usize) -> bool {
    (0..secrets).all(|i| {
        std::fs::read(dir.join(format!("secret-{i}")))
            .map(|v| v == format!("value-{i}").as_bytes())
            .unwrap_or(false)
    })
}

/// utime + stime + cutime + cstime of one process, in clock ticks.
fn ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14.
    let sum = fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    Some(sum)
}

/// The live descendants of `pid` (none expected for either tool; counted if any).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
                .and_then(|f| f.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((p, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(q) = frontier.pop() {
        for &(p, pp) in &parents {
            if pp == q {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

/// CPU seconds of the process tree.
fn cpu_seconds(pid: u32, tick: f64) -> anyhow::Result<f64> {
    let own = ticks(pid).with_context(|| format!("no /proc/{pid}/stat"))?;
    let children: u64 = descendants(pid).into_iter().filter_map(ticks).sum();
    Ok((own + children) as f64 / tick)
}

/// VmRSS of the process tree, KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let own = crate::kib(pid, "VmRSS:")?;
    let children: u64 = descendants(pid)
        .into_iter()
        .filter_map(|p| crate::kib(p, "VmRSS:").ok())
        .sum();
    Ok(own + children)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median_ms(v: &mut [Duration]) -> f64 {
    v.sort();
    ms(percentile(v, 0.5))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

/// One tool's process, wherever its files go.
struct Tool<'a> {
    pid: u32,
    dir: &'a Path,
    started: Instant,
}

pub fn run(opts: Options, bao: &Bao) -> anyhow::Result<()> {
    let Options {
        sidecar_bin,
        bao_bin,
        secrets,
        starts,
        duration,
        interval,
        changes,
    } = opts;
    let tick = clock_ticks();
    let work = tempfile::tempdir()?;
    let token_file = work.path().join("token");
    std::fs::write(&token_file, BAO_TOKEN)?;
    let address = bao.address.clone();
    let target = Target::Vault {
        address: address.clone(),
    };
    let objects: Vec<String> = (0..secrets)
        .map(|i| format!(r#"{{"file":"secret-{i}","source":"vault://secret/secret-{i}#v"}}"#))
        .collect();
    let spec = format!(
        r#"{{"objects":[{}],"mountPath":"/mnt/secrets-store","rotation":"{}s","filePermission":"0644"}}"#,
        objects.join(","),
        interval.as_secs()
    );
    let config = work.path().join("agent.hcl");
    let hcl = |dir: &Path| agent_config(&address, &token_file, dir, secrets, interval);

    println!(
        "sidecar-bench --against-agent: {} beside {} agent, {secrets} kv-v2 secrets in one OpenBao ({address}, bao server -dev), render interval {} s, polling window {} s, 2 cores, load average {}",
        sidecar_bin.display(),
        bao_bin.display(),
        interval.as_secs_f64(),
        duration.as_secs_f64(),
        loadavg()
    );

    // Cold starts, one tool at a time (alternating), so neither competes with
    // the other for the 2 cores or the server.
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..starts {
        let started = Instant::now();
        let s = spawn(&sidecar_bin, &spec, &target)?;
        wait_until(Duration::from_secs(30), || complete(s.dir.path(), secrets))
            .context("sidecar: first complete write")?;
        ours.push(started.elapsed());
        drop(s);
        let started = Instant::now();
        let a = spawn_agent(&bao_bin, &config, hcl)?;
        wait_until(Duration::from_secs(30), || complete(a.dir.path(), secrets))
            .context("agent: first complete write")?;
        theirs.push(started.elapsed());
        drop(a);
    }
    let first_ours = median_ms(&mut ours);
    let first_theirs = median_ms(&mut theirs);

    // The run: both started together, each into its own directory.
    let s_started = Instant::now();
    let sidecar: Sidecar = spawn(&sidecar_bin, &spec, &target)?;
    let a_started = Instant::now();
    let agent = spawn_agent(&bao_bin, &config, hcl)?;
    let tools = [
        Tool {
            pid: sidecar.child.id(),
            dir: sidecar.dir.path(),
            started: s_started,
        },
        Tool {
            pid: agent.child.id(),
            dir: agent.dir.path(),
            started: a_started,
        },
    ];
    let mut together: [Option<Duration>; 2] = [None, None];
    let until = Instant::now() + Duration::from_secs(30);
    while together.iter().any(Option::is_none) {
        for (t, slot) in tools.iter().zip(together.iter_mut()) {
            if slot.is_none() && complete(t.dir, secrets) {
                *slot = Some(t.started.elapsed());
            }
        }
        if Instant::now() > until {
            bail!("no first complete write within 30 s: {together:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }

    // The polling window.
    let cpu0 = [
        cpu_seconds(tools[0].pid, tick)?,
        cpu_seconds(tools[1].pid, tick)?,
    ];
    let window = Instant::now();
    let end = window + duration;
    let timeout = interval * 3 + Duration::from_secs(5);
    let spacing = (duration.saturating_sub(interval * 2 + Duration::from_secs(2)))
        .checked_div(changes.max(1) as u32)
        .unwrap_or_default()
        .max(interval * 2 + Duration::from_secs(2));
    let mut next_change = window + interval;
    let mut next_sample = window;
    let mut samples: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    let mut propagation: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut missed = [0usize; 2];
    // (value, set at, who has seen it)
    let mut pending: Option<(String, Instant, [bool; 2])> = None;
    let mut made = 0usize;
    let file = |t: &Tool| t.dir.join("secret-0");
    loop {
        let now = Instant::now();
        if now >= end && pending.is_none() {
            break;
        }
        if now >= next_sample && now < end {
            for (t, s) in tools.iter().zip(samples.iter_mut()) {
                s.push(rss_kib(t.pid)?);
            }
            next_sample += Duration::from_secs(1);
        }
        if let Some((value, set_at, seen)) = &mut pending {
            for (i, t) in tools.iter().enumerate() {
                if !seen[i]
                    && std::fs::read(file(t))
                        .map(|v| v == value.as_bytes())
                        .unwrap_or(false)
                {
                    seen[i] = true;
                    propagation[i].push(set_at.elapsed());
                }
            }
            if seen.iter().all(|s| *s) {
                pending = None;
            } else if set_at.elapsed() > timeout {
                for (i, s) in seen.iter().enumerate() {
                    if !s {
                        missed[i] += 1;
                    }
                }
                pending = None;
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        if now >= next_change && made < changes && now + timeout < end {
            let value = format!("changed-{made}");
            bao.put("secret-0", &value)?;
            // From when `bao kv put` returned: the write is committed then.
            pending = Some((value, Instant::now(), [false, false]));
            made += 1;
            next_change += spacing;
            continue;
        }
        let wake = [next_sample, next_change, end]
            .into_iter()
            .filter(|t| *t > now)
            .min()
            .unwrap_or(end);
        std::thread::sleep(
            wake.saturating_duration_since(now)
                .min(Duration::from_secs(1)),
        );
    }
    let elapsed = window.elapsed().as_secs_f64();
    let cpu = [
        cpu_seconds(tools[0].pid, tick)? - cpu0[0],
        cpu_seconds(tools[1].pid, tick)? - cpu0[1],
    ];
    let hwm = [
        crate::kib(tools[0].pid, "VmHWM:")?,
        crate::kib(tools[1].pid, "VmHWM:")?,
    ];
    let children = [
        descendants(tools[0].pid).len(),
        descendants(tools[1].pid).len(),
    ];
    let threads = [
        crate::kib(tools[0].pid, "Threads:")?,
        crate::kib(tools[1].pid, "Threads:")?,
    ];
    let load = loadavg();
    drop(agent);
    drop(sidecar);

    let steady = |s: &mut Vec<u64>| -> f64 {
        s.sort_unstable();
        s.get(s.len() / 2).copied().unwrap_or_default() as f64 / 1024.0
    };
    let peak = |s: &[u64], hwm: u64| -> f64 {
        s.iter().copied().max().unwrap_or_default().max(hwm) as f64 / 1024.0
    };
    let [mut s0, mut s1] = samples;
    let rss = [steady(&mut s0), steady(&mut s1)];
    let rss_peak = [peak(&s0, hwm[0]), peak(&s1, hwm[1])];
    let [mut p0, mut p1] = propagation;
    p0.sort();
    p1.sort();
    let prop_median = |p: &[Duration]| {
        if p.is_empty() {
            f64::NAN
        } else {
            percentile(p, 0.5).as_secs_f64()
        }
    };
    let prop_max = |p: &[Duration]| p.last().map(|d| d.as_secs_f64()).unwrap_or(f64::NAN);
    let limit = interval.as_secs_f64() + 1.0;

    println!(
        "polling window {elapsed:.0} s, {} RSS samples each, {made} changes of secret-0 (bao kv put, one every {:.1} s); threads {} / {}, child processes at the end {} / {}; load average at the end {load}",
        s0.len(),
        spacing.as_secs_f64(),
        threads[0],
        threads[1],
        children[0],
        children[1]
    );
    println!();
    println!(
        "| {:<52} | {:>12} | {:>12} | {:>7} | {:<20} |",
        "figure", "sidecar", "bao agent", "ratio", "goal"
    );
    println!(
        "|{:-<54}|{:-<14}|{:-<14}|{:-<9}|{:-<22}|",
        "", "", "", "", ""
    );
    let row = |name: &str, a: f64, b: f64, unit: &str, goal: &str| {
        println!(
            "| {name:<52} | {:>12} | {:>12} | {:>6.3}x | {goal:<20} |",
            format!("{a:.2} {unit}"),
            format!("{b:.2} {unit}"),
            a / b
        );
    };
    let rss_ok = rss[0] <= 0.1 * rss[1];
    row(
        "RSS steady (median of 1 s samples)",
        rss[0],
        rss[1],
        "MiB",
        &format!("<= 0.1x: {}", verdict(rss_ok)),
    );
    row("RSS peak", rss_peak[0], rss_peak[1], "MiB", "");
    let cpu_ok = cpu[0] <= 0.5 * cpu[1];
    row(
        &format!("CPU seconds over {elapsed:.0} s of polling (user+sys)"),
        cpu[0],
        cpu[1],
        "s",
        &format!("<= 0.5x: {}", verdict(cpu_ok)),
    );
    let first_ok = first_ours <= first_theirs;
    row(
        &format!("first complete write, median of {starts} cold starts"),
        first_ours,
        first_theirs,
        "ms",
        &format!("<= 1x: {}", verdict(first_ok)),
    );
    row(
        "first complete write, both started together",
        together[0].map(ms).unwrap_or(f64::NAN),
        together[1].map(ms).unwrap_or(f64::NAN),
        "ms",
        "",
    );
    let prop_ok = missed[0] == 0 && !p0.is_empty() && prop_max(&p0) <= limit;
    row(
        &format!(
            "propagation of a change, median of {}",
            p0.len().min(p1.len())
        ),
        prop_median(&p0),
        prop_median(&p1),
        "s",
        "",
    );
    row(
        "propagation of a change, max",
        prop_max(&p0),
        prop_max(&p1),
        "s",
        &format!("<= {limit:.0} s: {}", verdict(prop_ok)),
    );
    if missed.iter().any(|m| *m > 0) {
        println!(
            "missed changes (not seen within {:.0} s): sidecar {}, bao agent {}",
            timeout.as_secs_f64(),
            missed[0],
            missed[1]
        );
    }
    println!(
        "the agent's propagation against the same limit: {}",
        verdict(missed[1] == 0 && !p1.is_empty() && prop_max(&p1) <= limit)
    );
    Ok(())
}
