//! A weak network link on this machine: a network namespace joined to the
//! host by a veth pair, with a token bucket (`tc qdisc tbf`) on the host's
//! end, so whatever the host sends into the namespace (the server's media
//! to a participant there) is held to a rate. What the participant sends
//! out is not shaped: a phone on a crowded cell downloads less than it is
//! sent. Made with iproute2 (`ip`, `tc`), which needs root (CAP_NET_ADMIN);
//! `netem` is not in this kernel, so there is no delay or loss emulation,
//! only the rate and the queue a rate builds.
//!
//! The bench puts its weak participants behind one; the weak-link test too.
//! Dropping it removes the namespace and the veth pair.

use anyhow::{Context, Result, bail};
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// How long a packet may wait in the bucket's queue before it is dropped:
/// a mobile network's buffer, which turns a link's overload first into
/// delay and then into loss.
const QUEUE_LATENCY_MS: u32 = 200;

/// The names and addresses of one link; pure, so the commands that make it
/// can be checked without root.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkPlan {
    pub namespace: String,
    /// The veth end in the host's namespace, where the rate is applied.
    pub host_interface: String,
    pub guest_interface: String,
    pub host_address: Ipv4Addr,
    pub guest_address: Ipv4Addr,
}

impl LinkPlan {
    /// The `index`-th link of process `pid`: names unique per process and
    /// link (interface names stay within Linux's 15 characters), and a /30
    /// of 10.201.0.0/16 from both.
    pub fn new(pid: u32, index: u32) -> LinkPlan {
        let slot = (pid.wrapping_mul(16).wrapping_add(index)) % (1 << 14);
        let base = u32::from(Ipv4Addr::new(10, 201, 0, 0)) + slot * 4;
        let short = pid % 1_000_000;
        LinkPlan {
            namespace: format!("gridmix-{pid}-{index}"),
            host_interface: format!("gm{short}-{index}h"),
            guest_interface: format!("gm{short}-{index}g"),
            host_address: Ipv4Addr::from(base + 1),
            guest_address: Ipv4Addr::from(base + 2),
        }
    }

    /// The commands (program and arguments) that make the link, in order.
    pub fn setup(&self, rate_kbit: u32) -> Vec<Vec<String>> {
        let ns = &self.namespace;
        let (host, guest) = (&self.host_interface, &self.guest_interface);
        let mut commands = vec![
            format!("ip netns add {ns}"),
            format!("ip link add {host} type veth peer name {guest}"),
            format!("ip link set {guest} netns {ns}"),
            format!("ip addr add {}/30 dev {host}", self.host_address),
            format!("ip link set {host} up"),
            format!(
                "ip netns exec {ns} ip addr add {}/30 dev {guest}",
                self.guest_address
            ),
            format!("ip netns exec {ns} ip link set {guest} up"),
            format!("ip netns exec {ns} ip link set lo up"),
        ];
        commands.push(self.shape(rate_kbit));
        commands.into_iter().map(split).collect()
    }

    /// The command that holds what the host sends into the namespace to
    /// `rate_kbit` (replacing any rate before).
    fn shape(&self, rate_kbit: u32) -> String {
        // A burst of at least one full-size packet, and about 20 ms of the rate.
        let burst_bytes = (rate_kbit * 1000 / 8 / 50).max(4096);
        format!(
            "tc qdisc replace dev {} root tbf rate {rate_kbit}kbit burst {burst_bytes} latency {QUEUE_LATENCY_MS}ms",
            self.host_interface
        )
    }

    /// The commands that undo `setup` (deleting the namespace deletes its
    /// veth end, and with it the host's).
    pub fn teardown(&self) -> Vec<Vec<String>> {
        vec![
            split(format!("ip netns del {}", self.namespace)),
            split(format!("ip link del {}", self.host_interface)),
        ]
    }
}

fn split(command: String) -> Vec<String> {
    command.split_whitespace().map(str::to_owned).collect()
}

/// Why a link could not be made.
#[derive(Debug)]
pub enum LinkError {
    /// Not root (or no CAP_NET_ADMIN): the bench skips its weak runs.
    NotPermitted(String),
    Failed(anyhow::Error),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::NotPermitted(why) => write!(
                f,
                "a shaped link needs root (a network namespace and tc): {why}"
            ),
            LinkError::Failed(e) => write!(f, "could not make a shaped link: {e:#}"),
        }
    }
}

impl std::error::Error for LinkError {}

/// A link that exists until dropped.
#[derive(Debug)]
pub struct ShapedLink {
    plan: LinkPlan,
}

static NEXT_INDEX: AtomicU32 = AtomicU32::new(0);

impl ShapedLink {
    pub fn create(rate_kbit: u32) -> Result<ShapedLink, LinkError> {
        let plan = LinkPlan::new(
            std::process::id(),
            NEXT_INDEX.fetch_add(1, Ordering::Relaxed),
        );
        // Whatever is left of the same names (a run that was killed) goes first.
        let link = ShapedLink { plan };
        for command in link.plan.teardown() {
            let _ = quiet(&command);
        }
        for command in link.plan.setup(rate_kbit) {
            if let Err(e) = run(&command) {
                let text = format!("{e:#}");
                return Err(
                    if text.contains("Operation not permitted")
                        || text.contains("Permission denied")
                    {
                        LinkError::NotPermitted(text)
                    } else {
                        LinkError::Failed(e)
                    },
                );
            }
        }
        Ok(link)
    }

    pub fn plan(&self) -> &LinkPlan {
        &self.plan
    }

    /// The address the host has on the link: what a participant in the
    /// namespace reaches the server at.
    pub fn host_address(&self) -> Ipv4Addr {
        self.plan.host_address
    }

    pub fn guest_address(&self) -> Ipv4Addr {
        self.plan.guest_address
    }

    /// A new rate for what goes into the namespace.
    pub fn set_rate(&self, rate_kbit: u32) -> Result<()> {
        run(&split(self.plan.shape(rate_kbit)))
    }

    /// Takes the rate off: the link runs at the veth's own speed.
    pub fn lift(&self) -> Result<()> {
        run(&split(format!(
            "tc qdisc del dev {} root",
            self.plan.host_interface
        )))
    }

    /// `program` to be run inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.plan.namespace])
            .arg(program);
        command
    }
}

impl Drop for ShapedLink {
    fn drop(&mut self) {
        for command in self.plan.teardown() {
            let _ = quiet(&command);
        }
    }
}

fn run(command: &[String]) -> Result<()> {
    let output = Command::new(&command[0])
        .args(&command[1..])
        .output()
        .with_context(|| format!("running {}", command[0]))?;
    if !output.status.success() {
        bail!(
            "`{}` failed: {}",
            command.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn quiet(command: &[String]) -> std::io::Result<std::process::Output> {
    Command::new(&command[0]).args(&command[1..]).output()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_linux_interface_names_and_links_do_not_share_addresses() {
        let a = LinkPlan::new(4_194_303, 12);
        assert!(a.host_interface.len() <= 15, "{a:?}");
        assert!(a.guest_interface.len() <= 15, "{a:?}");
        let b = LinkPlan::new(4_194_303, 13);
        assert_ne!(a.host_address, b.host_address);
        assert_eq!(u32::from(a.guest_address), u32::from(a.host_address) + 1);
        // The /30's network address is a multiple of four.
        assert_eq!(u32::from(a.host_address) % 4, 1);
        assert_eq!(a.host_address.octets()[..2], [10, 201]);
    }

    #[test]
    fn the_rate_is_applied_on_the_host_end_so_only_the_downlink_is_shaped() {
        let plan = LinkPlan::new(77, 0);
        let setup = plan.setup(300);
        let shape = setup.last().unwrap().join(" ");
        assert_eq!(
            shape,
            "tc qdisc replace dev gm77-0h root tbf rate 300kbit burst 4096 latency 200ms"
        );
        assert_eq!(setup[0], ["ip", "netns", "add", "gridmix-77-0"]);
        let guest = format!(
            "ip netns exec gridmix-77-0 ip addr add {}/30 dev gm77-0g",
            plan.guest_address
        );
        assert!(setup.iter().any(|c| c.join(" ") == guest), "{setup:?}");
        assert_eq!(plan.teardown()[0], ["ip", "netns", "del", "gridmix-77-0"]);
    }
}
