//! The game-server split across processes: a Realm, a Gate, two Maps and two scripted
//! players, with unit locations on a real etcd (ET's shape).
//!
//! ```text
//! cargo run -p rpc-examples --features etcd --example game
//! ```
//!
//! Needs the `etcd` binary (Debian: `apt install etcd-server`) and `protoc` to build
//! (`protobuf-compiler`). Each player logs in at the Realm, enters the Gate and steps its
//! unit through the Gate's relay; meanwhile this driver moves each unit to the other Map.
//! Every step must be answered, in order, once: the players check the step counts their
//! units report, on both Maps. Each player also tries the Gate's inner gateway from the
//! outer network, and is refused.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rpc_examples::game::{self, Error, MapAdminClient};
use rpc_ha::Locations;
use rpc_ha::etcd::{EtcdLocations, LocalEtcd};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Steps each player takes at least.
const STEPS: u64 = 200;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] => drive().await,
        ["map", name, etcd] => {
            let map = game::map(name, locations(etcd).await?).await?;
            println!("EVENT map {name} {}", map.local_address()?);
            std::future::pending().await
        }
        ["gate", etcd, maps @ ..] => {
            let maps = maps.iter().map(|m| m.parse()).collect::<Result<_, _>>()?;
            let gate = game::gate(maps, locations(etcd).await?).await?;
            println!(
                "EVENT gate {} {}",
                gate.local_address()?,
                gate.outer_address()?
            );
            std::future::pending().await
        }
        ["realm", gate_inner, gate_outer] => {
            let (_realm, outer) = game::realm(gate_inner.parse()?, gate_outer.parse()?).await?;
            println!("EVENT realm {outer}");
            std::future::pending().await
        }
        ["player", name, realm] => {
            let played = game::play(name, realm.parse()?, STEPS, 2, |map| {
                println!("EVENT playing {name} {map}");
            })
            .await?;
            println!("EVENT refused {name} {}", played.refused);
            for told in &played.told {
                println!("EVENT told {name} {told}");
            }
            println!(
                "EVENT done {name} {} {}",
                played.steps,
                played.maps.join(",")
            );
            Ok(())
        }
        _ => Err(
            "usage: game (runs everything), or game map NAME ETCD | gate ETCD MAP.. | \
                  realm GATE_INNER GATE_OUTER | player NAME REALM"
                .into(),
        ),
    }
}

async fn locations(etcd: &str) -> Result<Locations, Error> {
    let store = EtcdLocations::connect(&[etcd], "/game/units/").await?;
    Ok(Locations::new(Arc::new(store)))
}

/// One line a role printed.
struct Line {
    words: Vec<String>,
}

/// Runs `role` of this same program, forwarding its `EVENT` lines.
fn spawn(role: &[&str], lines: &mpsc::UnboundedSender<Line>) -> Result<Child, Error> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(role)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let lines = lines.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if let Some(event) = line.strip_prefix("EVENT ") {
                println!("  {event}");
                let words = event.split_whitespace().map(str::to_owned).collect();
                let _ = lines.send(Line { words });
            }
        }
    });
    Ok(child)
}

/// The roles' lines, and those no one has waited for yet.
struct Lines {
    receiver: mpsc::UnboundedReceiver<Line>,
    unclaimed: Vec<Vec<String>>,
}

/// Waits (up to 60 s) for a line whose first words are `first`; its words.
async fn wait_for(lines: &mut Lines, first: &[&str]) -> Result<Vec<String>, Error> {
    let matches = |words: &[String]| {
        words.len() >= first.len() && words.iter().zip(first).all(|(w, f)| w == f)
    };
    if let Some(index) = lines.unclaimed.iter().position(|words| matches(words)) {
        return Ok(lines.unclaimed.remove(index));
    }
    let found = async {
        while let Some(line) = lines.receiver.recv().await {
            if matches(&line.words) {
                return Some(line.words);
            }
            lines.unclaimed.push(line.words);
        }
        None
    };
    match tokio::time::timeout(Duration::from_secs(60), found).await {
        Ok(Some(words)) => Ok(words),
        _ => Err(format!("gave up waiting for `{}`", first.join(" ")).into()),
    }
}

fn address(words: &[String], index: usize) -> Result<SocketAddr, Error> {
    Ok(words.get(index).ok_or("a short event line")?.parse()?)
}

async fn drive() -> Result<(), Error> {
    if !LocalEtcd::available() {
        return Err(
            "this example needs the `etcd` binary (Debian: apt install etcd-server)".into(),
        );
    }
    let etcd = LocalEtcd::start().await?;
    let at = etcd.client_address().to_owned();
    println!("etcd at {at}");
    let (sender, receiver) = mpsc::unbounded_channel();
    let mut lines = Lines {
        receiver,
        unclaimed: Vec::new(),
    };
    let mut children = Vec::new();
    let mut maps = Vec::new();
    for name in ["map-1", "map-2"] {
        children.push(spawn(&["map", name, &at], &sender)?);
        maps.push(address(&wait_for(&mut lines, &["map", name]).await?, 2)?);
    }
    let (map_1, map_2) = (maps[0].to_string(), maps[1].to_string());
    children.push(spawn(&["gate", &at, &map_1, &map_2], &sender)?);
    let gate = wait_for(&mut lines, &["gate"]).await?;
    let (gate_inner, gate_outer) = (address(&gate, 1)?, address(&gate, 2)?);
    children.push(spawn(
        &["realm", &gate_inner.to_string(), &gate_outer.to_string()],
        &sender,
    )?);
    let realm = address(&wait_for(&mut lines, &["realm"]).await?, 1)?.to_string();

    let players = ["alice", "bob"];
    let mut playing = Vec::new();
    for player in players {
        playing.push(spawn(&["player", player, &realm], &sender)?);
    }
    // This driver is a server of the inner network: it moves each unit, mid-session.
    let driver = rpc_netty::client();
    for player in players {
        let words = wait_for(&mut lines, &["playing", player]).await?;
        let on = words.get(2).ok_or("no map")?.as_str();
        let (from, to) = if on == "map-1" {
            (maps[0], maps[1])
        } else {
            (maps[1], maps[0])
        };
        let admin: MapAdminClient = driver.connect(from, "map").await?;
        admin.transfer(game::unit_of(player), to).await??;
        println!("moved {} from {on} to the other map", game::unit_of(player));
    }
    for player in players {
        let refused = wait_for(&mut lines, &["refused", player]).await?;
        if !refused.join(" ").contains("inner network only") {
            return Err(format!("{player} was not refused clearly: {refused:?}").into());
        }
        wait_for(&mut lines, &["told", player]).await?;
        let done = wait_for(&mut lines, &["done", player]).await?;
        let steps: u64 = done.get(2).ok_or("no steps")?.parse()?;
        let seen = done.get(3).ok_or("no maps")?.split(',').count();
        if steps < STEPS || seen != 2 {
            return Err(format!("{player}: {steps} steps on {seen} maps").into());
        }
    }
    for mut player in playing {
        let status = player.wait().await?;
        if !status.success() {
            return Err(format!("a player exited with {status}").into());
        }
    }
    println!("both players played on, every step answered once, across the move to the other map");
    drop(children);
    Ok(())
}
