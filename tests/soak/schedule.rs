//! The world under test and the fault schedule. One round: the outbound receiver answers 500
//! for 5 s; the gateway is SIGKILLed and restarted 2 s later on its data dir; InspIRCd is
//! SIGSTOPped for 4 s; then ergo, Synapse, Devzat, ssh-chat and InspIRCd are restarted one at
//! a time — with traffic from every side in between.
//!
//! What counts as accepted, per side, follows the README's tables of what is recovered after
//! which outage: lines said on ergo, InspIRCd (chanhistory) and Matrix while the gateway is
//! down are recovered from the server's history, so those sides keep talking; Devzat and
//! ssh-chat keep no history for a bridge that was away, so their users pause (until the
//! console shows their last lines) while the gateway is down; the hook and the API retry until
//! they get 202. Before a server is restarted everything sent so far is let reach its room
//! (a line a crashing server took and never showed is the server's loss, not the bridge's);
//! while it is down the other sides talk on and their lines wait in the outbox. The gateway
//! reaches each server through a gate that stays closed until the server's users are back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use patchbay_sshchat_testserver::Dialect;
use patchbay_sshchat_testserver::real::{RealDevzat, RealSshChat};
use tokio::sync::OwnedMutexGuard;

use super::clients::{ChatUser, Http, IrcUser, MatrixUser, Receiver};
use super::irc::Ergo;
use super::irc::{Gate, IrcServer};
use super::rig::{Dest, Shown, Source, Voice, accepted, drain, probe, sent_logs};
use super::support::{Gateway, free_port};
use super::synapse::Synapse;
use super::{Faults, Ports, SSH_RUN, WAIT, config, tally};

pub struct World {
    dir: tempfile::TempDir,
    gateway: Option<Gateway>,
    http: Arc<Http>,
    ergo: Ergo,
    insp: IrcServer,
    synapse: Arc<Synapse>,
    devzat: RealDevzat,
    chat: RealSshChat,
    /// Devzat's state and ssh-chat's host key and log, removed after them.
    _peers: tempfile::TempDir,
    gates: Gates,
    receiver: Receiver,
    eve: Arc<IrcUser>,
    ian: Arc<IrcUser>,
    dana: Arc<ChatUser>,
    dora: Arc<ChatUser>,
    carl: Arc<ChatUser>,
    pub sources: Vec<Arc<Source>>,
    pub dests: Vec<Dest>,
    pub outage: Arc<AtomicBool>,
    faults: Faults,
    began: std::time::Instant,
}

struct Gates {
    ergo: Gate,
    insp: Gate,
    dz: Gate,
    dz_plugin: Gate,
    chat: Gate,
}

type Guards = Vec<OwnedMutexGuard<()>>;

impl World {
    pub async fn start() -> World {
        let synapse = Arc::new(
            tokio::task::spawn_blocking(Synapse::start)
                .await
                .expect("Synapse starts"),
        );
        let ergo = Ergo::start(100).await;
        let insp = IrcServer::inspircd().await;
        // Anti-spam off: every test client and the bridge share 127.0.0.1, and the soak
        // reconnects many times.
        let peers = tempfile::tempdir().expect("a dir for Devzat and ssh-chat");
        let devzat = RealDevzat::start(peers.path(), false)
            .await
            .expect("Devzat");
        let chat = RealSshChat::start(peers.path()).await.expect("ssh-chat");
        let gates = Gates {
            ergo: Gate::new(ergo.port).await,
            insp: Gate::new(insp.port).await,
            dz: Gate::new(devzat.port).await,
            dz_plugin: Gate::new(devzat.plugin_port).await,
            chat: Gate::new(chat.port).await,
        };
        let receiver = Receiver::start().await;

        let unique = std::process::id();
        let alice_name = format!("alice{unique}");
        let bot_name = format!("soakbot{unique}");
        let alice_id = synapse.register(&alice_name, "password").await;
        let bot = synapse.register(&bot_name, "password").await;
        let alice = Arc::new(MatrixUser::login(&synapse.url(), &alice_id, &alice_name).await);
        let alias = format!("soak{unique}");
        let room_id = alice.create_room(&alias).await;
        let mx_seen = alice.watch(&room_id).await;

        let eve = Arc::new(IrcUser::connect(ergo.port, "eve", "#soak").await);
        let ian = Arc::new(IrcUser::connect(insp.port, "ian", "#soak").await);
        let dz_addr = format!("127.0.0.1:{}", devzat.port);
        let dana = Arc::new(ChatUser::connect(&dz_addr, "dana", Dialect::Devzat, None).await);
        let dora =
            Arc::new(ChatUser::connect(&dz_addr, "dora", Dialect::Devzat, Some("#soak")).await);
        let chat_addr = format!("127.0.0.1:{}", chat.port);
        let carl = Arc::new(ChatUser::connect(&chat_addr, "carl", Dialect::SshChat, None).await);

        let ports = Ports {
            http: free_port(),
            ergo: gates.ergo.port,
            insp: gates.insp.port,
            matrix: synapse.url(),
            bot,
            room: format!("#{alias}:localhost"),
            dz: gates.dz.port,
            dz_plugin: gates.dz_plugin.port,
            token: devzat.token.clone(),
            chat: gates.chat.port,
            receiver: receiver.port,
        };
        let mut dir = tempfile::tempdir().expect("gateway dir");
        // PATCHBAY_SOAK_KEEP=1 keeps the gateway's dir (config, log, store) to look into.
        if std::env::var_os("PATCHBAY_SOAK_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("soak: the gateway runs in {}", dir.path().display());
        }
        let gateway = Gateway::start(dir.path(), &config(&ports));
        let http = Arc::new(Http::new(ports.http));
        let api_seen = http.watch_api();

        // ssh-chat shows the bridge 3 lines per 3.5 s; under mixed traffic its room took about
        // 4 deliveries a second (merged), so the seven other sides together stay under that.
        let every = Duration::from_millis(2000);
        let sources = vec![
            Source::new("ergo", Voice::Irc(eve.clone()), every),
            Source::new("insp", Voice::Irc(ian.clone()), every),
            Source::new("mx", Voice::Matrix(alice.clone(), room_id.clone()), every),
            Source::new("dzp", Voice::Chat(dana.clone()), every),
            Source::new("dzs", Voice::Chat(dora.clone()), every),
            // ssh-chat allows a user 3 lines per 3 s.
            Source::new(
                "chat",
                Voice::Chat(carl.clone()),
                Duration::from_millis(1500),
            ),
            Source::new("hook", Voice::Hook(http.clone()), every),
            Source::new("api", Voice::Api(http.clone()), every),
        ];
        let dest = |name: &str, own: Option<&str>, shown: Shown, per_fault: usize| Dest {
            name: name.to_owned(),
            own: own.map(str::to_owned),
            shown,
            per_fault,
            faults: 0,
        };
        let dests = vec![
            dest(
                "console",
                None,
                Shown::File(dir.path().join("console.log")),
                1,
            ),
            dest("ergo", Some("ergo"), Shown::Seen(eve.seen.clone()), 1),
            dest("insp", Some("insp"), Shown::Seen(ian.seen.clone()), 1),
            dest("mx", Some("mx"), Shown::Seen(mx_seen), 1),
            dest("dzp", Some("dzp"), Shown::Chat(dana.clone()), SSH_RUN),
            dest("dzs", Some("dzs"), Shown::Chat(dora.clone()), SSH_RUN),
            dest("chat", Some("chat"), Shown::Chat(carl.clone()), SSH_RUN),
            dest("out", None, Shown::Seen(receiver.seen.clone()), 1),
            dest("api", Some("api"), Shown::Seen(api_seen), 1),
        ];
        World {
            dir,
            gateway: Some(gateway),
            http,
            ergo,
            insp,
            synapse,
            devzat,
            chat,
            _peers: peers,
            gates,
            receiver,
            eve,
            ian,
            dana,
            dora,
            carl,
            sources,
            dests,
            outage: Arc::default(),
            faults: Faults::default(),
            began: std::time::Instant::now(),
        }
    }

    /// A line of the fault log, with the time since the world started.
    fn note(&self, what: &str) {
        eprintln!("soak: [{:6.1}s] {what}", self.began.elapsed().as_secs_f64());
    }

    fn source(&self, side: &str) -> Arc<Source> {
        self.sources
            .iter()
            .find(|s| s.side == side)
            .cloned()
            .expect("a known side")
    }

    fn dest(&self, name: &str) -> &Dest {
        self.dests
            .iter()
            .find(|d| d.name == name)
            .expect("a known room")
    }

    fn touched(&mut self, names: &[&str]) {
        for d in self.dests.iter_mut() {
            if names.contains(&d.name.as_str()) {
                d.faults += 1;
            }
        }
    }

    /// Every side gets a line through to the console before the counted traffic starts.
    pub async fn probe_all(&self) {
        for source in &self.sources {
            probe(self.dest("console"), source, WAIT).await;
        }
    }

    /// Let the sides talk for `span` (the schedule's spacing, not a synchronisation).
    pub async fn traffic(&self, span: Duration) {
        tokio::time::sleep(span).await;
    }

    pub async fn round(&mut self) {
        let spell = Duration::from_secs(2);
        self.traffic(Duration::from_secs(3)).await;
        self.receiver_fails(Duration::from_secs(4)).await;
        self.traffic(spell).await;
        self.kill_gateway().await;
        self.traffic(spell).await;
        self.stall_inspircd(Duration::from_secs(3)).await;
        self.traffic(spell).await;
        self.restart_ergo().await;
        self.traffic(spell).await;
        self.restart_synapse().await;
        self.traffic(spell).await;
        self.restart_devzat().await;
        self.traffic(spell).await;
        self.restart_ssh_chat().await;
        self.traffic(spell).await;
        self.restart_inspircd().await;
    }

    async fn receiver_fails(&mut self, span: Duration) {
        self.note(&format!("the outbound receiver answers 500 for {span:?}"));
        self.receiver.failing.store(true, Ordering::SeqCst);
        tokio::time::sleep(span).await;
        self.receiver.failing.store(false, Ordering::SeqCst);
        self.faults.receiver_500s += 1;
        self.touched(&["out"]);
    }

    async fn kill_gateway(&mut self) {
        self.note("SIGKILL the gateway");
        let quiet = ["dzp", "dzs", "chat"].map(|s| self.source(s));
        let mut held = Guards::new();
        for source in &quiet {
            held.push(source.pause().await);
        }
        accepted(self.dest("console"), &quiet, WAIT).await;
        self.outage.store(true, Ordering::SeqCst);
        if let Some(gateway) = self.gateway.take() {
            gateway.kill();
        }
        // Down for 2 s while ergo, InspIRCd, Matrix, the hook and the API keep talking.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let config = self.dir.path().join("patchbay.toml");
        self.gateway = Some(Gateway::start_with(self.dir.path(), &config));
        for source in &quiet {
            probe(self.dest("console"), source, WAIT).await;
        }
        self.outage.store(false, Ordering::SeqCst);
        drop(held);
        self.faults.gateway_kills += 1;
    }

    async fn stall_inspircd(&mut self, span: Duration) {
        self.note(&format!("SIGSTOP InspIRCd for {span:?}"));
        self.insp.signal("STOP");
        tokio::time::sleep(span).await;
        self.insp.signal("CONT");
        self.faults.stalls += 1;
        self.touched(&["insp"]);
    }

    /// Pause every side, let the rooms of `rooms` show everything sent so far and the
    /// console everything `own` sides said; returns the guards (own sides' apart).
    async fn quiesce(&self, rooms: &[&str], own: &[&str]) -> (Guards, Guards) {
        let mut mine = Guards::new();
        let mut others = Guards::new();
        for source in &self.sources {
            let guard = source.pause().await;
            if own.contains(&source.side.as_str()) {
                mine.push(guard);
            } else {
                others.push(guard);
            }
        }
        let own_sources: Vec<_> = own.iter().map(|s| self.source(s)).collect();
        accepted(self.dest("console"), &own_sources, WAIT).await;
        for room in rooms {
            drain(self.dest(room), &self.sources, WAIT).await;
        }
        (mine, others)
    }

    async fn reopened(&mut self, own: &[&str], mine: Guards, name: &'static str) {
        for side in own {
            probe(self.dest("console"), &self.source(side), WAIT).await;
        }
        drop(mine);
        self.faults.restarts.push(name);
        self.touched(own);
    }

    async fn restart_ergo(&mut self) {
        self.note("restart ergo");
        let (mine, others) = self.quiesce(&["ergo"], &["ergo"]).await;
        self.gates.ergo.set_open(false);
        self.ergo.kill();
        drop(others);
        self.ergo.run().await;
        self.eve.reconnect().await;
        self.gates.ergo.set_open(true);
        self.reopened(&["ergo"], mine, "ergo").await;
    }

    async fn restart_inspircd(&mut self) {
        self.note("restart InspIRCd");
        let (mine, others) = self.quiesce(&["insp"], &["insp"]).await;
        self.gates.insp.set_open(false);
        self.insp.stop();
        drop(others);
        self.insp.start().await;
        self.ian.reconnect().await;
        self.gates.insp.set_open(true);
        self.reopened(&["insp"], mine, "InspIRCd").await;
    }

    /// Synapse keeps its timeline: nobody pauses; the Matrix user retries its transaction
    /// until stored, the reader pages on from its token.
    async fn restart_synapse(&mut self) {
        self.note("restart Synapse");
        let synapse = self.synapse.clone();
        tokio::task::spawn_blocking(move || {
            synapse.stop();
            synapse.resume();
        })
        .await
        .expect("Synapse restarts");
        self.faults.restarts.push("Synapse");
        self.touched(&["mx"]);
    }

    async fn restart_devzat(&mut self) {
        self.note("restart Devzat");
        let own = ["dzp", "dzs"];
        let (mine, others) = self.quiesce(&own, &own).await;
        self.gates.dz.set_open(false);
        self.gates.dz_plugin.set_open(false);
        self.devzat.kill().await;
        drop(others);
        self.devzat.launch().await;
        self.dana.reconnect().await;
        self.dora.reconnect().await;
        self.gates.dz.set_open(true);
        self.gates.dz_plugin.set_open(true);
        self.reopened(&own, mine, "Devzat").await;
    }

    async fn restart_ssh_chat(&mut self) {
        self.note("restart ssh-chat");
        let (mine, others) = self.quiesce(&["chat"], &["chat"]).await;
        self.gates.chat.set_open(false);
        self.chat.kill().await;
        drop(others);
        self.chat.launch().await;
        self.carl.reconnect().await;
        self.gates.chat.set_open(true);
        self.reopened(&["chat"], mine, "ssh-chat").await;
    }

    /// Count every room, print the table, and hold the figures to the promises.
    pub async fn check(&self, talked: Duration) {
        let logs = sent_logs(&self.sources);
        let kills = self.faults.gateway_kills;
        let mut rows = Vec::new();
        for dest in &self.dests {
            let shown = dest.shown.texts().await;
            let mut row = tally::count(&dest.name, dest.own.as_deref(), &shown, &logs);
            // One delivery (or run) per fault that hit the room or the gateway, and one
            // retried POST per kill from the hook (its sender cannot tell a lost answer).
            row.bound = (kills + dest.faults) * dest.per_fault + kills;
            rows.push(row);
        }
        let sent: usize = self
            .sources
            .iter()
            .map(|s| s.sent.lock().map(|l| l.lines.len()).unwrap_or(0))
            .sum();
        println!(
            "soak: {talked:.0?} of traffic, {sent} lines from {} sides, {} rooms",
            self.sources.len(),
            self.dests.len()
        );
        println!(
            "faults: {} gateway SIGKILLs, {} receiver 500 spells, {} SIGSTOP stalls, \
             restarts: {} (refused webhook deliveries: {})",
            kills,
            self.faults.receiver_500s,
            self.faults.stalls,
            self.faults.restarts.join(", "),
            self.receiver.refused.load(Ordering::SeqCst)
        );
        print!("{}", tally::table(&rows));
        for row in &rows {
            assert_eq!(
                row.lost,
                0,
                "{}: lost {:?}",
                row.dest,
                row.lost_ids.iter().take(20).collect::<Vec<_>>()
            );
            assert!(
                row.dup <= row.bound,
                "{}: {} doubled, more than the bound {}",
                row.dest,
                row.dup,
                row.bound
            );
            assert_eq!(row.reordered, 0, "{}: lines out of order", row.dest);
        }
    }

    pub fn finish(mut self) {
        if let Some(gateway) = self.gateway.take() {
            assert!(gateway.stop(), "the gateway stops cleanly");
        }
        // Keep the http client alive to the end (the API reader uses it).
        drop(self.http);
    }
}
