//! Faults between real hosts: two network namespaces joined by a veth pair, a server process
//! in one and client processes in the other (the `netns-peer` helper).
//!
//! Needs root and iproute2 (`.ci/run` installs it). Outside CI, where that may be missing, the
//! tests say so and stop; under CI (`CI` set) a missing prerequisite fails them.

use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Two hosts, `a` (10.201.N.1) and `b` (10.201.N.2), on one link; removed on drop.
struct Hosts {
    a: String,
    b: String,
    link_a: String,
    subnet: u8,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Hosts {
    /// Creates the two hosts, or says why it cannot.
    fn create(subnet: u8) -> Result<Hosts, String> {
        let tag = format!("{}{subnet}", std::process::id() % 100_000);
        let hosts = Hosts {
            a: format!("rpca{tag}"),
            b: format!("rpcb{tag}"),
            link_a: format!("va{tag}"),
            subnet,
        };
        let link_b = format!("vb{tag}");
        ip(&["netns", "add", &hosts.a])?;
        ip(&["netns", "add", &hosts.b])?;
        ip(&[
            "link",
            "add",
            &hosts.link_a,
            "netns",
            &hosts.a,
            "type",
            "veth",
            "peer",
            "name",
            &link_b,
            "netns",
            &hosts.b,
        ])?;
        for (ns, link, host) in [(&hosts.a, &hosts.link_a, 1), (&hosts.b, &link_b, 2)] {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("10.201.{subnet}.{host}/24"),
                "dev",
                link,
            ])?;
            ip(&["-n", ns, "link", "set", link, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }

    fn server_address(&self) -> String {
        format!("10.201.{}.1:7000", self.subnet)
    }

    /// Takes host `a`'s side of the link down (`up = false`) or up again.
    fn link_a(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.a, "link", "set", &self.link_a, state]).expect("set the link");
    }

    /// Runs the helper in namespace `ns`.
    fn spawn(&self, ns: &str, role: &str) -> Peer {
        let mut child = tokio::process::Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_netns-peer"), role])
            .arg(self.server_address())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn netns-peer");
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Peer {
            child,
            stdin,
            lines,
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace also removes its end of the veth pair, and with it the pair.
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}

/// A helper process and its lines.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Peer {
    async fn say(&mut self, command: &str) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("write to the peer");
    }

    /// The next line that starts with `prefix` (others are skipped), within `within`.
    async fn expect(&mut self, prefix: &str, within: Duration) -> String {
        let wait = async {
            loop {
                match self.lines.next_line().await {
                    Ok(Some(line)) if line.starts_with(prefix) => return line,
                    Ok(Some(_)) => {}
                    other => panic!("the peer ended while waiting for `{prefix}`: {other:?}"),
                }
            }
        };
        tokio::time::timeout(within, wait)
            .await
            .unwrap_or_else(|_| panic!("no `{prefix}` line within {within:?}"))
    }
}

/// The hosts, or `None` (having said why) when this machine cannot make them outside CI.
fn hosts(subnet: u8) -> Option<Hosts> {
    match Hosts::create(subnet) {
        Ok(hosts) => Some(hosts),
        Err(reason) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "skipped: cannot create network namespaces here ({reason}); run as root with iproute2"
            );
            None
        }
        Err(reason) => panic!("cannot create network namespaces in CI: {reason}"),
    }
}

const SOON: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_server_host_cut_off_mid_call_fails_the_call_and_comes_back() {
    let Some(hosts) = hosts(1) else { return };
    let mut server = hosts.spawn(&hosts.a, "server");
    server.expect("listening", SOON).await;
    let mut client = hosts.spawn(&hosts.b, "client");
    client.expect("connected", SOON).await;
    client.say("echo 1").await;
    assert_eq!(client.expect("ok", SOON).await, "ok 1");

    client.say("slow").await;
    client.expect("pending", SOON).await;
    hosts.link_a(false); // the server host drops off the network, mid-call
    let failed = client.expect("slow", SOON).await;
    assert!(
        failed.starts_with("slow error Disconnected") && failed.contains("keep-alive"),
        "the pending call should fail with Disconnected by keep-alive: {failed}"
    );

    hosts.link_a(true);
    client.say("echo 2").await;
    assert_eq!(
        client.expect("ok", SOON).await,
        "ok 2",
        "calls succeed again"
    );
    client.say("quit").await;
    let _ = client.child.wait().await;
    drop(server);
}

#[tokio::test]
async fn a_killed_client_is_noticed_and_the_others_keep_being_served() {
    let Some(hosts) = hosts(2) else { return };
    let mut server = hosts.spawn(&hosts.a, "server");
    server.expect("listening", SOON).await;
    let mut doomed = hosts.spawn(&hosts.b, "client");
    doomed.expect("connected", SOON).await;
    let mut survivor = hosts.spawn(&hosts.b, "client");
    survivor.expect("connected", SOON).await;
    doomed.say("echo 1").await;
    doomed.expect("ok", SOON).await;
    survivor.say("echo 2").await;
    survivor.expect("ok", SOON).await;

    // SIGKILL: no goodbye from the process; its kernel closes the socket.
    doomed.child.start_kill().expect("kill the client");
    let _ = doomed.child.wait().await;
    let line = server.expect("disconnected", SOON).await;
    assert!(line.contains("10.201.2.2"), "{line}");

    survivor.say("echo 3").await;
    assert_eq!(
        survivor.expect("ok", SOON).await,
        "ok 3",
        "the server keeps serving others"
    );
    survivor.say("quit").await;
    let _ = survivor.child.wait().await;
}
