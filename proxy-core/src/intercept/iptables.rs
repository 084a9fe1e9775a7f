//! `sidecar iptables`: the nat rules that send a pod's TCP traffic through the sidecar, run
//! once by an init container with `NET_ADMIN` before the app starts (as Istio's and
//! Linkerd's proxy-init do).
//!
//! Two chains of our own, so that installing is "flush our chains, fill them, jump to them
//! once" (idempotent), and removing is "drop the jumps, drop the chains" (nothing else in
//! the tables is touched):
//!
//! - `SIDECAR_INBOUND`, from `PREROUTING`: TCP arriving at the pod goes to the inbound
//!   listener, except the admin port, excluded ports and excluded source CIDRs.
//! - `SIDECAR_OUTPUT`, from `OUTPUT`: TCP leaving the pod's processes goes to the outbound
//!   listener, except the proxy's own connections (owner match on its UID, else they would
//!   loop back into it), loopback, excluded ports and excluded destination CIDRs.
//!
//! The rules are written the way `iptables-save` prints them, so what `--dry-run` shows is
//! exactly what `iptables-save` shows afterwards. The node's iptables flavour (nf_tables or
//! legacy) is detected the way Istio does: the one already holding rules wins, because the
//! kernel runs both and rules in the other would be invisible to the rest of the node.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};

/// The chain `PREROUTING` jumps to.
pub const INBOUND_CHAIN: &str = "SIDECAR_INBOUND";
/// The chain `OUTPUT` jumps to.
pub const OUTBOUND_CHAIN: &str = "SIDECAR_OUTPUT";

#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    #[error("cannot run {cmd}: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("no iptables found: install iptables (iptables-nft or iptables-legacy)")]
    NoBackend,
    #[error(
        "invalid CIDR {0:?}: expected an address, with a prefix length or without one (a host), like 10.0.0.0/8 or 169.254.169.254"
    )]
    Cidr(String),
}

impl IptablesError {
    /// A stable reason string for logs and scripts.
    pub fn reason(&self) -> &'static str {
        match self {
            IptablesError::Spawn { .. } => "iptables_not_runnable",
            IptablesError::Failed { .. } => "iptables_failed",
            IptablesError::NoBackend => "iptables_missing",
            IptablesError::Cidr(_) => "invalid_cidr",
        }
    }
}

/// Which iptables implementation the rules go into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Flavour {
    /// Detect: the one that already holds rules, else the system's `iptables`.
    Auto,
    /// `iptables-nft` (nf_tables).
    Nft,
    /// `iptables-legacy` (x_tables).
    Legacy,
}

/// An IP family the rules are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// The commands of one flavour and family: `iptables-nft`, `ip6tables-legacy-save`, ...
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// `iptables`, `iptables-nft`, `iptables-legacy` (or the `ip6tables` ones).
    pub iptables: String,
}

impl Backend {
    pub fn new(flavour: Flavour, family: Family) -> Backend {
        let base = match family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        let iptables = match flavour {
            Flavour::Auto => base.to_owned(),
            Flavour::Nft => format!("{base}-nft"),
            Flavour::Legacy => format!("{base}-legacy"),
        };
        Backend { iptables }
    }

    pub fn save(&self) -> String {
        format!("{}-save", self.iptables)
    }

    pub fn restore(&self) -> String {
        format!("{}-restore", self.iptables)
    }
}

/// What to intercept and what to leave alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The UID the sidecar runs as: its own connections are never redirected.
    pub proxy_uid: u32,
    /// Also exempt connections of this GID (when the proxy's group is dedicated to it).
    pub proxy_gid: Option<u32>,
    /// Port of the `intercept: inbound` listener.
    pub inbound_port: u16,
    /// Port of the `intercept: outbound` listener.
    pub outbound_port: u16,
    /// The admin port: probes and scrapes reach it directly.
    pub admin_port: u16,
    /// Inbound destination ports left alone (ssh, a metrics port served by the app itself).
    pub inbound_exclude_ports: Vec<u16>,
    /// Outbound destination ports left alone (a database the proxy must not see).
    pub outbound_exclude_ports: Vec<u16>,
    /// Inbound traffic from these sources is left alone.
    pub inbound_exclude_cidrs: Vec<Cidr>,
    /// Outbound traffic to these destinations is left alone (the node's metadata server).
    pub outbound_exclude_cidrs: Vec<Cidr>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            proxy_uid: 1337,
            proxy_gid: None,
            inbound_port: 15006,
            outbound_port: 15001,
            admin_port: 15000,
            inbound_exclude_ports: Vec::new(),
            outbound_exclude_ports: Vec::new(),
            inbound_exclude_cidrs: Vec::new(),
            outbound_exclude_cidrs: Vec::new(),
        }
    }
}

/// An address prefix, as iptables prints it (`10.0.0.0/8`, `fd00::/8`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl std::str::FromStr for Cidr {
    type Err = IptablesError;

    /// `10.1.2.3/8` becomes `10.0.0.0/8` (iptables masks it the same way); a bare address
    /// is a host prefix.
    fn from_str(s: &str) -> Result<Cidr, IptablesError> {
        let bad = || IptablesError::Cidr(s.to_owned());
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Ok(Cidr { addr, len })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Cidr {
    fn family(&self) -> Family {
        if self.addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// The rules for one family, in `iptables-save` form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// `-A PREROUTING ... -j SIDECAR_INBOUND` and `-A OUTPUT ... -j SIDECAR_OUTPUT`.
    pub jumps: Vec<String>,
    /// The contents of our chains, in order.
    pub chain_rules: Vec<String>,
}

impl Rules {
    pub fn new(o: &Options, family: Family) -> Rules {
        let jumps = vec![
            format!("-A PREROUTING -p tcp -j {INBOUND_CHAIN}"),
            format!("-A OUTPUT -p tcp -j {OUTBOUND_CHAIN}"),
        ];
        let mut r = Vec::new();
        let inb = INBOUND_CHAIN;
        let port_return =
            |chain: &str, port: u16| format!("-A {chain} -p tcp -m tcp --dport {port} -j RETURN");
        r.push(port_return(inb, o.admin_port));
        for p in dedup(&o.inbound_exclude_ports) {
            if p != o.admin_port {
                r.push(port_return(inb, p));
            }
        }
        for c in o
            .inbound_exclude_cidrs
            .iter()
            .filter(|c| c.family() == family)
        {
            r.push(format!("-A {inb} -s {c} -j RETURN"));
        }
        r.push(format!(
            "-A {inb} -p tcp -j REDIRECT --to-ports {}",
            o.inbound_port
        ));
        let out = OUTBOUND_CHAIN;
        r.push(format!(
            "-A {out} -m owner --uid-owner {} -j RETURN",
            o.proxy_uid
        ));
        if let Some(gid) = o.proxy_gid {
            r.push(format!("-A {out} -m owner --gid-owner {gid} -j RETURN"));
        }
        // Loopback is the app talking to itself or to its sidecar: never redirected.
        r.push(format!("-A {out} -o lo -j RETURN"));
        for p in dedup(&o.outbound_exclude_ports) {
            r.push(port_return(out, p));
        }
        for c in o
            .outbound_exclude_cidrs
            .iter()
            .filter(|c| c.family() == family)
        {
            r.push(format!("-A {out} -d {c} -j RETURN"));
        }
        r.push(format!(
            "-A {out} -p tcp -j REDIRECT --to-ports {}",
            o.outbound_port
        ));
        Rules {
            jumps,
            chain_rules: r,
        }
    }

    /// What `iptables-save -t nat` shows of ours once installed (and what `--dry-run` prints).
    pub fn to_save_format(&self) -> String {
        let mut s = String::from("*nat\n");
        for chain in [INBOUND_CHAIN, OUTBOUND_CHAIN] {
            let _ = writeln!(s, ":{chain} - [0:0]");
        }
        for line in self.jumps.iter().chain(&self.chain_rules) {
            s.push_str(line);
            s.push('\n');
        }
        s.push_str("COMMIT\n");
        s
    }

    /// Input for `iptables-restore --noflush`: declaring our chains creates them or empties
    /// them, so running twice leaves one copy of each rule; other chains are not touched.
    pub fn restore_input(&self) -> String {
        let mut s = String::from("*nat\n");
        for chain in [INBOUND_CHAIN, OUTBOUND_CHAIN] {
            let _ = writeln!(s, ":{chain} - [0:0]");
        }
        for line in &self.chain_rules {
            s.push_str(line);
            s.push('\n');
        }
        s.push_str("COMMIT\n");
        s
    }
}

fn dedup(ports: &[u16]) -> Vec<u16> {
    let mut v = ports.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// How many rules (`-A` lines) a flavour's tables hold, or `None` when it cannot be run.
fn rule_count(b: &Backend) -> Option<usize> {
    let out = Command::new(b.save()).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("-A "))
            .count()
    })
}

/// Pick the flavour for `Flavour::Auto`: of iptables-legacy and iptables-nft, the one that
/// holds more rules (the node's kube-proxy and CNI rules live there); on a tie (a fresh
/// pod namespace holds none), the system's own `iptables`, which Debian points at one of
/// them through alternatives.
pub fn detect(family: Family) -> Result<Backend, IptablesError> {
    let legacy = Backend::new(Flavour::Legacy, family);
    let nft = Backend::new(Flavour::Nft, family);
    let counts = (rule_count(&legacy), rule_count(&nft));
    let plain = Backend::new(Flavour::Auto, family);
    let plain_runs = Command::new(&plain.iptables)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    Ok(match counts {
        (Some(l), Some(n)) if l > n => legacy,
        (Some(l), Some(n)) if n > l => nft,
        _ if plain_runs => plain,
        (_, Some(_)) => nft,
        (Some(_), None) => legacy,
        (None, None) => return Err(IptablesError::NoBackend),
    })
}

fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> Result<String, IptablesError> {
    let shown = std::iter::once(cmd)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| IptablesError::Spawn {
            cmd: shown.clone(),
            source,
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|source| IptablesError::Spawn {
                cmd: shown.clone(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|source| IptablesError::Spawn {
            cmd: shown.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(IptablesError::Failed {
            cmd: shown,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Does `rule` (an `-A CHAIN ...` line) exist? `iptables -C` answers with its exit status.
fn has_rule(b: &Backend, rule: &str) -> Result<bool, IptablesError> {
    let args = check_args(rule);
    let status = Command::new(&b.iptables)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|source| IptablesError::Spawn {
            cmd: b.iptables.clone(),
            source,
        })?;
    Ok(status.success())
}

/// `-A CHAIN rest...` → `-t nat -C CHAIN rest...` (rules are written without quoting).
fn check_args(rule: &str) -> Vec<&str> {
    with_op(rule, "-C")
}

fn with_op<'a>(rule: &'a str, op: &'a str) -> Vec<&'a str> {
    let mut args = vec!["-t", "nat", op];
    args.extend(rule.split_whitespace().skip(1));
    args
}

fn chain_exists(b: &Backend, chain: &str) -> bool {
    Command::new(&b.iptables)
        .args(["-t", "nat", "-S", chain])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Install the rules: fill our chains, then add each jump unless it is already there.
pub fn install(b: &Backend, rules: &Rules) -> Result<(), IptablesError> {
    run(&b.restore(), &["--noflush"], Some(&rules.restore_input()))?;
    for jump in &rules.jumps {
        if !has_rule(b, jump)? {
            run(&b.iptables, &with_op(jump, "-A"), None)?;
        }
    }
    Ok(())
}

/// Remove the rules: every jump to our chains (however many), then the chains. Running it
/// when nothing is installed does nothing.
pub fn cleanup(b: &Backend, rules: &Rules) -> Result<(), IptablesError> {
    for jump in &rules.jumps {
        while has_rule(b, jump)? {
            run(&b.iptables, &with_op(jump, "-D"), None)?;
        }
    }
    for chain in [INBOUND_CHAIN, OUTBOUND_CHAIN] {
        if chain_exists(b, chain) {
            run(&b.iptables, &["-t", "nat", "-F", chain], None)?;
            run(&b.iptables, &["-t", "nat", "-X", chain], None)?;
        }
    }
    Ok(())
}

/// Our part of `iptables-save -t nat`: the lines that mention our chains.
pub fn installed(b: &Backend) -> Result<Vec<String>, IptablesError> {
    let out = run(&b.save(), &["-t", "nat"], None)?;
    Ok(out
        .lines()
        .filter(|l| l.contains(INBOUND_CHAIN) || l.contains(OUTBOUND_CHAIN))
        .map(str::to_owned)
        .collect())
}

/// `sidecar iptables` flags.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// UID the sidecar runs as; its own connections are not redirected.
    #[arg(long, default_value_t = 1337)]
    pub proxy_uid: u32,
    /// Also exempt connections made by processes of this GID.
    #[arg(long)]
    pub proxy_gid: Option<u32>,
    /// Port of the sidecar's `intercept: inbound` listener.
    #[arg(long, default_value_t = 15006)]
    pub inbound_port: u16,
    /// Port of the sidecar's `intercept: outbound` listener.
    #[arg(long, default_value_t = 15001)]
    pub outbound_port: u16,
    /// The sidecar's admin port, reached directly by probes and scrapers.
    #[arg(long, default_value_t = 15000)]
    pub admin_port: u16,
    /// Inbound ports not redirected (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub inbound_exclude_ports: Vec<u16>,
    /// Outbound destination ports not redirected (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub outbound_exclude_ports: Vec<u16>,
    /// Inbound traffic from these source CIDRs is not redirected (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub inbound_exclude_cidrs: Vec<Cidr>,
    /// Outbound traffic to these destination CIDRs is not redirected (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub outbound_exclude_cidrs: Vec<Cidr>,
    /// Which iptables: auto (the flavour already holding more rules: the node's), nft or
    /// legacy.
    #[arg(long, value_enum, default_value_t = Flavour::Auto)]
    pub iptables: Flavour,
    /// Also install the rules for IPv6 (ip6tables).
    #[arg(long)]
    pub ipv6: bool,
    /// Print the rules, in iptables-save form, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove the rules instead of installing them.
    #[arg(long)]
    pub cleanup: bool,
}

impl Args {
    pub fn options(&self) -> Options {
        Options {
            proxy_uid: self.proxy_uid,
            proxy_gid: self.proxy_gid,
            inbound_port: self.inbound_port,
            outbound_port: self.outbound_port,
            admin_port: self.admin_port,
            inbound_exclude_ports: self.inbound_exclude_ports.clone(),
            outbound_exclude_ports: self.outbound_exclude_ports.clone(),
            inbound_exclude_cidrs: self.inbound_exclude_cidrs.clone(),
            outbound_exclude_cidrs: self.outbound_exclude_cidrs.clone(),
        }
    }
}

/// Run `sidecar iptables`: install, remove or print the rules for each family asked for,
/// saying on `out` what was done and with which iptables.
pub fn command(args: &Args, out: &mut dyn std::io::Write) -> Result<(), IptablesError> {
    let options = args.options();
    let families: &[Family] = if args.ipv6 {
        &[Family::V4, Family::V6]
    } else {
        &[Family::V4]
    };
    for &family in families {
        let rules = Rules::new(&options, family);
        let backend = match args.iptables {
            Flavour::Auto => detect(family),
            f => Ok(Backend::new(f, family)),
        };
        if args.dry_run {
            let name = match &backend {
                Ok(b) => b.iptables.clone(),
                Err(_) => "none found".to_owned(),
            };
            let what = if args.cleanup { "remove" } else { "install" };
            let _ = writeln!(
                out,
                "# sidecar iptables --dry-run: would {what} with {name}"
            );
            let _ = write!(out, "{}", rules.to_save_format());
            continue;
        }
        let backend = backend?;
        if args.cleanup {
            cleanup(&backend, &rules)?;
            let _ = writeln!(out, "removed the sidecar's rules with {}", backend.iptables);
        } else {
            install(&backend, &rules)?;
            let _ = writeln!(
                out,
                "installed the sidecar's rules with {}: inbound -> :{}, outbound -> :{}, uid {} exempt",
                backend.iptables, options.inbound_port, options.outbound_port, options.proxy_uid
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            inbound_exclude_ports: vec![22, 15000, 22],
            outbound_exclude_ports: vec![5432],
            inbound_exclude_cidrs: vec!["198.18.9.0/24".parse().unwrap()],
            outbound_exclude_cidrs: vec![
                "169.254.169.254".parse().unwrap(),
                "fd00::1/8".parse().unwrap(),
            ],
            ..Options::default()
        }
    }

    #[test]
    fn v4_rules_in_save_format() {
        let r = Rules::new(&opts(), Family::V4);
        assert_eq!(
            r.to_save_format(),
            "*nat\n\
             :SIDECAR_INBOUND - [0:0]\n\
             :SIDECAR_OUTPUT - [0:0]\n\
             -A PREROUTING -p tcp -j SIDECAR_INBOUND\n\
             -A OUTPUT -p tcp -j SIDECAR_OUTPUT\n\
             -A SIDECAR_INBOUND -p tcp -m tcp --dport 15000 -j RETURN\n\
             -A SIDECAR_INBOUND -p tcp -m tcp --dport 22 -j RETURN\n\
             -A SIDECAR_INBOUND -s 198.18.9.0/24 -j RETURN\n\
             -A SIDECAR_INBOUND -p tcp -j REDIRECT --to-ports 15006\n\
             -A SIDECAR_OUTPUT -m owner --uid-owner 1337 -j RETURN\n\
             -A SIDECAR_OUTPUT -o lo -j RETURN\n\
             -A SIDECAR_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN\n\
             -A SIDECAR_OUTPUT -d 169.254.169.254/32 -j RETURN\n\
             -A SIDECAR_OUTPUT -p tcp -j REDIRECT --to-ports 15001\n\
             COMMIT\n"
        );
    }

    #[test]
    fn v6_rules_take_only_v6_cidrs() {
        let r = Rules::new(&opts(), Family::V6);
        let text = r.to_save_format();
        assert!(text.contains("-A SIDECAR_OUTPUT -d fd00::/8 -j RETURN\n"));
        assert!(!text.contains("169.254"));
        assert!(!text.contains("198.18"));
    }

    #[test]
    fn restore_input_has_no_jumps() {
        let r = Rules::new(&Options::default(), Family::V4);
        let input = r.restore_input();
        assert!(!input.contains("PREROUTING"));
        assert!(!input.contains("-A OUTPUT"));
        assert!(input.starts_with("*nat\n:SIDECAR_INBOUND - [0:0]\n"));
        assert!(input.ends_with("COMMIT\n"));
    }

    #[test]
    fn gid_exemption_follows_uid() {
        let o = Options {
            proxy_gid: Some(1337),
            ..Options::default()
        };
        let r = Rules::new(&o, Family::V4);
        let i = r
            .chain_rules
            .iter()
            .position(|l| l.contains("--gid-owner 1337"))
            .unwrap();
        assert!(r.chain_rules[i - 1].contains("--uid-owner 1337"));
    }

    #[test]
    fn cidrs_parse_and_mask() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        let c: Cidr = "0.0.0.0/0".parse().unwrap();
        assert_eq!(c.to_string(), "0.0.0.0/0");
        let c: Cidr = "::/0".parse().unwrap();
        assert_eq!(c.to_string(), "::/0");
        for bad in ["10.0.0.0/33", "10.0.0/8", "nope", "fd00::/129", ""] {
            let e = bad.parse::<Cidr>().unwrap_err();
            assert_eq!(e.reason(), "invalid_cidr", "{bad}");
        }
    }

    #[test]
    fn check_and_delete_args_come_from_the_rule() {
        assert_eq!(
            check_args("-A OUTPUT -p tcp -j SIDECAR_OUTPUT"),
            [
                "-t",
                "nat",
                "-C",
                "OUTPUT",
                "-p",
                "tcp",
                "-j",
                "SIDECAR_OUTPUT"
            ]
        );
        assert_eq!(
            with_op("-A PREROUTING -j X", "-D")[2..],
            ["-D", "PREROUTING", "-j", "X"]
        );
    }

    #[test]
    fn backends_are_named_by_flavour_and_family() {
        assert_eq!(
            Backend::new(Flavour::Nft, Family::V4).save(),
            "iptables-nft-save"
        );
        assert_eq!(
            Backend::new(Flavour::Legacy, Family::V6).restore(),
            "ip6tables-legacy-restore"
        );
        assert_eq!(Backend::new(Flavour::Auto, Family::V4).iptables, "iptables");
    }
}
