//! Test support: real IRC servers on loopback, a raw IRC client for the "users", and a
//! collecting sink that stands in for the gateway.
//!
//! Each server writes its config into its own temp dir, runs in the foreground on a free
//! 127.0.0.1 port (pid and log files stay in the temp dir) and is killed on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use patchbay_irc::parse::{self, Parsed};
use patchbay_irc::transport::LineReader;
use patchbay_sdk::{
    AccountInfo, Author, Connector, ConnectorContext, ConnectorFactory, ConnectorState, Delivered,
    Delivery, DeliveryError, Emit, EmitError, Event, EventId, EventSink, Inbound, RichText,
    StateHandle,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// Whether a program is installed (tests say so and skip when it is not).
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ngircd,
    Inspircd,
}

/// A running IRC server.
pub struct IrcServer {
    pub kind: Kind,
    pub port: u16,
    /// The TLS listener, when started with TLS (certificate in `dir/cert.pem`).
    pub tls_port: Option<u16>,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    /// Atheme services linked to InspIRCd, when started with them.
    services: Option<Child>,
    /// The server password, empty for none.
    pub password: String,
}

/// What an InspIRCd test server offers beyond the basics.
#[derive(Clone, Copy, Debug, Default)]
pub struct InspOptions {
    /// A TLS listener with a self-signed certificate that asks for client certificates.
    pub tls: bool,
    /// Atheme services (NickServ, SASL PLAIN and EXTERNAL).
    pub services: bool,
    /// With services, do not offer SASL (NickServ only).
    pub no_sasl: bool,
}

/// Make a self-signed certificate and key (PEM) for `name` / 127.0.0.1 in `dir`; returns the
/// SHA-256 fingerprint of the certificate (hex, lower case), as IRC servers show CertFP.
pub fn make_cert(dir: &Path, stem: &str, name: &str) -> String {
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={name}"))
        .arg("-addext")
        .arg("subjectAltName=IP:127.0.0.1,DNS:localhost")
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl could not make a certificate");
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert)
        .output()
        .expect("openssl x509");
    let digest = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(&der.stdout)?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&digest.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

impl IrcServer {
    pub async fn ngircd() -> Self {
        Self::ngircd_with_password("").await
    }

    /// ngircd with a server password (`PASS`) when `password` is not empty.
    pub async fn ngircd_with_password(password: &str) -> Self {
        let dir = tempdir();
        let port = free_port();
        let conf = format!(
            "[Global]\nName = irc.ngircd.test\nInfo = patchbay test\nListen = 127.0.0.1\n\
             Ports = {port}\nMotdPhrase = \"test\"\nPidFile = {pid}\n\
             AdminInfo1 = test\nAdminInfo2 = test\nAdminEMail = test@localhost\n{pass}\
             [Limits]\nPingTimeout = 120\nPongTimeout = 60\nMaxConnectionsIP = 0\nMaxNickLength = 30\n\
             [Options]\nDNS = no\nIdent = no\nPAM = no\n",
            pid = dir.path().join("ngircd.pid").display(),
            pass = if password.is_empty() {
                String::new()
            } else {
                format!("Password = {password}\n")
            },
        );
        std::fs::write(dir.path().join("ngircd.conf"), conf).expect("write ngircd.conf");
        let mut server = IrcServer {
            kind: Kind::Ngircd,
            port,
            tls_port: None,
            dir,
            child: None,
            services: None,
            password: password.to_owned(),
        };
        server.start().await;
        server
    }

    pub async fn inspircd() -> Self {
        Self::inspircd_with(InspOptions::default()).await
    }

    pub async fn inspircd_with(options: InspOptions) -> Self {
        let dir = tempdir();
        let port = free_port();
        let d = dir.path().display().to_string();
        let mut conf = format!(
            r#"<config format="xml">
<server name="irc.insp.test" description="patchbay test" network="PatchbayTest" id="9PB">
<admin name="test" nick="test" email="test@localhost">
<bind address="127.0.0.1" port="{port}" type="clients">
<connect name="main" allow="*" timeout="20" pingfreq="120" hardsendq="10M" softsendq="10M" recvq="10M" threshold="100000000" commandrate="1000000000" fakelag="no" localmax="1000" globalmax="1000" useident="no" resolvehostnames="no" limit="5000" maxchans="50">
<dns server="127.0.0.1" timeout="1">
<power diepass="x" restartpass="x">
<pid file="{d}/inspircd.pid">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{d}/ircd.log">
<files motd="{d}/motd.txt">
<path configdir="{d}" datadir="{d}" logdir="{d}" runtimedir="{d}">
<options prefixquit="Quit: " syntaxhints="no" defaultmodes="ntH 100:1d">
<security hideserver="" userstats="Pu" runasuser="" runasgroup="">
<performance netbuffersize="10240" somaxconn="128" softlimit="12800" clonesonconnect="no" timeskipwarn="0" quietbursts="yes">
<limits maxnick="30" maxchan="64" maxmodes="20" maxident="10" maxhost="64" maxquit="255" maxtopic="307" maxkick="255" maxreal="128" maxgecos="128" maxaway="200">
<module name="cap">
<module name="ircv3">
<module name="ircv3_servertime">
<module name="ircv3_msgid">
<module name="ircv3_echomessage">
<module name="ircv3_batch">
<module name="ircv3_accounttag">
<module name="ircv3_ctctags">
<module name="ircv3_capnotify">
<module name="chanhistory">
<chanhistory maxlines="100" notice="no" bots="yes">
"#
        );
        let mut tls_port = None;
        if options.tls {
            make_cert(dir.path(), "cert", "localhost");
            let p = free_port();
            tls_port = Some(p);
            conf.push_str(&format!(
                r#"<module name="ssl_gnutls">
<module name="sslinfo">
<sslprofile name="clients" provider="gnutls" certfile="{d}/cert.pem" keyfile="{d}/cert.key" hash="sha256" requestclientcert="yes" priority="NORMAL">
<bind address="127.0.0.1" port="{p}" type="clients" sslprofile="clients">
"#
            ));
        }
        let link_port = free_port();
        if options.services {
            if !options.no_sasl {
                conf.push_str(
                    "<module name=\"sasl\">\n<sasl target=\"services.insp.test\" requiressl=\"no\">\n",
                );
            }
            conf.push_str(&format!(
                r#"<module name="services_account">
<module name="spanningtree">
<bind address="127.0.0.1" port="{link_port}" type="servers">
<link name="services.insp.test" ipaddr="127.0.0.1" port="{link_port}" allowmask="127.0.0.1/32" sendpass="linkpw" recvpass="linkpw">
<uline server="services.insp.test" silent="yes">
"#
            ));
            let atheme = format!(
                r#"loadmodule "modules/protocol/inspircd";
loadmodule "modules/backend/opensex";
loadmodule "modules/crypto/pbkdf2v2";
loadmodule "modules/nickserv/main";
loadmodule "modules/nickserv/identify";
loadmodule "modules/nickserv/register";
loadmodule "modules/nickserv/cert";
loadmodule "modules/saslserv/main";
loadmodule "modules/saslserv/plain";
loadmodule "modules/saslserv/external";
pbkdf2v2 {{ }};
serverinfo {{
    name = "services.insp.test"; desc = "Atheme test"; numeric = "00A"; recontime = 1;
    netname = "PatchbayTest"; hidehostsuffix = "users.test"; adminname = "test";
    adminemail = "test@localhost"; registeremail = "test@localhost"; auth = none;
    casemapping = rfc1459; loglevel = {{ error; info; admin; network; }};
    maxlogins = 5; maxusers = 5;
}};
uplink "irc.insp.test" {{ host = "127.0.0.1"; password = "linkpw"; port = {link_port}; }};
nickserv {{ nick = "NickServ"; user = "NickServ"; host = "services.insp.test"; real = "Nickname Services"; }};
saslserv {{ nick = "SaslServ"; user = "SaslServ"; host = "services.insp.test"; real = "SASL"; }};
general {{ commit_interval = 5; maxlogins = 5; }};
"#
            );
            std::fs::write(dir.path().join("atheme.conf"), atheme).expect("write atheme.conf");
        }
        std::fs::write(dir.path().join("inspircd.conf"), conf).expect("write inspircd.conf");
        std::fs::write(dir.path().join("motd.txt"), "test\n").expect("write motd");
        let mut server = IrcServer {
            kind: Kind::Inspircd,
            port,
            tls_port,
            dir,
            child: None,
            services: None,
            password: String::new(),
        };
        server.start().await;
        if options.services {
            server.start_services().await;
        }
        server
    }

    /// Start Atheme and wait until NickServ answers.
    async fn start_services(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("services.out"))
            .expect("services log");
        let child = Command::new("atheme-services")
            .arg("-n")
            .arg("-c")
            .arg(d.join("atheme.conf"))
            .arg("-l")
            .arg(d.join("atheme.log"))
            .arg("-p")
            .arg(d.join("atheme.pid"))
            .arg("-D")
            .arg(d)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start atheme-services");
        self.services = Some(child);
        let mut probe = TestClient::connect(self.port, "svcprobe").await;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            probe.send("PRIVMSG NickServ :HELP").await;
            let answered = tokio::time::timeout(
                Duration::from_millis(500),
                probe.expect("NickServ or no such nick", |cmd, _, p| {
                    cmd == "401"
                        || (cmd == "NOTICE"
                            && p.source.as_ref().is_some_and(|s| s.nick == "NickServ"))
                }),
            )
            .await;
            if let Ok(p) = answered
                && p.source.as_ref().is_some_and(|s| s.nick == "NickServ")
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "services did not come up: {}",
                std::fs::read_to_string(d.join("atheme.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        probe.send("QUIT").await;
    }

    /// Register a services account (the nick `account` is used while registering).
    pub async fn register_account(&self, account: &str, password: &str, certfp: Option<&str>) {
        let mut c = TestClient::connect(self.port, account).await;
        c.send(&format!(
            "PRIVMSG NickServ :REGISTER {password} {account}@example.org"
        ))
        .await;
        c.expect("registration", |cmd, _, p| {
            cmd == "NOTICE"
                && p.source.as_ref().is_some_and(|s| s.nick == "NickServ")
                && parse::command_params(&p.message)
                    .1
                    .last()
                    .is_some_and(|t| t.contains("registered"))
        })
        .await;
        if let Some(fp) = certfp {
            c.send(&format!("PRIVMSG NickServ :CERT ADD {fp}")).await;
            c.expect("cert add", |cmd, _, p| {
                cmd == "NOTICE" && p.source.as_ref().is_some_and(|s| s.nick == "NickServ")
            })
            .await;
        }
        c.send("QUIT").await;
    }

    fn command(&self) -> Command {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("server.out"))
            .expect("server log");
        let mut cmd = match self.kind {
            Kind::Ngircd => {
                let mut c = Command::new("ngircd");
                c.arg("-n").arg("-f").arg(d.join("ngircd.conf"));
                c
            }
            Kind::Inspircd => {
                let mut c = Command::new("inspircd");
                c.arg("--nofork")
                    .arg("--runasroot")
                    .arg("--config")
                    .arg(d.join("inspircd.conf"));
                c
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        cmd
    }

    /// Start (or start again, on the same port) and wait until a client can register.
    pub async fn start(&mut self) {
        let child = self.command().spawn().expect("start the IRC server");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Ok(Ok(mut c)) = tokio::time::timeout(
                Duration::from_secs(5),
                TestClient::try_connect_full(self.port, "probe", &[], &self.password),
            )
            .await
            {
                c.send("QUIT :probe done").await;
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{:?} did not accept a client: {}", self.kind, self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.services.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Send a signal to the server process (`STOP` makes it hang, `CONT` resumes it).
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status();
        }
    }

    pub async fn restart(&mut self) {
        self.stop();
        self.start().await;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default()
    }
}

impl Drop for IrcServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A temp dir the servers (which drop root privileges) can write their pid file into.
pub fn tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777));
    }
    dir
}

/// A TCP proxy in front of a server whose gate the test opens and closes: while closed, new
/// connections are dropped at once. It lets a test decide when a bridge may reconnect.
pub struct Gate {
    pub port: u16,
    open: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    pub async fn new(upstream: u16) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gate");
        let port = listener.local_addr().expect("addr").port();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = open.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Gate { port, open, task }
    }

    pub fn set_open(&self, open: bool) {
        self.open.store(open, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A raw IRC client: the people in the channels.
pub struct TestClient {
    pub nick: String,
    reader: LineReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl TestClient {
    pub async fn try_connect(port: u16, nick: &str, caps: &[&str]) -> std::io::Result<Self> {
        Self::try_connect_full(port, nick, caps, "").await
    }

    pub async fn try_connect_full(
        port: u16,
        nick: &str,
        caps: &[&str],
        password: &str,
    ) -> std::io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let (rd, wr) = stream.into_split();
        let mut client = TestClient {
            nick: nick.to_owned(),
            reader: LineReader::new(rd),
            writer: wr,
        };
        if !caps.is_empty() {
            client.send(&format!("CAP REQ :{}", caps.join(" "))).await;
        }
        if !password.is_empty() {
            client.send(&format!("PASS {password}")).await;
        }
        client.send(&format!("NICK {nick}")).await;
        client.send(&format!("USER {nick} 0 * :{nick}")).await;
        if !caps.is_empty() {
            client.send("CAP END").await;
        }
        loop {
            let Some(line) = client.next_parsed().await else {
                return Err(std::io::Error::other("closed during registration"));
            };
            let (cmd, _) = parse::command_params(&line.message);
            if cmd == "001" {
                return Ok(client);
            }
            if cmd == "433" {
                return Err(std::io::Error::other("nick in use"));
            }
        }
    }

    pub async fn connect(port: u16, nick: &str) -> Self {
        Self::connect_with_caps(port, nick, &[]).await
    }

    pub async fn connect_with_caps(port: u16, nick: &str, caps: &[&str]) -> Self {
        tokio::time::timeout(TIMEOUT, Self::try_connect(port, nick, caps))
            .await
            .expect("test client registers in time")
            .expect("test client registers")
    }

    pub async fn send(&mut self, line: &str) {
        let _ = self
            .writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.writer.write_all(bytes).await;
    }

    async fn next_parsed(&mut self) -> Option<Parsed> {
        loop {
            let line = self.reader.next_line().await.ok()??;
            let Some(bytes) = line else { continue };
            let Ok(p) = parse::parse_line(&bytes, patchbay_irc::encoding_rs::WINDOWS_1252) else {
                continue;
            };
            let (cmd, params) = parse::command_params(&p.message);
            if cmd == "PING" {
                let token = params.first().cloned().unwrap_or_default();
                self.send(&format!("PONG :{token}")).await;
                continue;
            }
            return Some(p);
        }
    }

    /// Wait for a line matching `pred`.
    pub async fn expect(
        &mut self,
        what: &str,
        pred: impl Fn(&str, &[String], &Parsed) -> bool,
    ) -> Parsed {
        let fut = async {
            loop {
                let Some(p) = self.next_parsed().await else {
                    panic!("connection closed while waiting for {what}");
                };
                let (cmd, params) = parse::command_params(&p.message);
                if pred(&cmd, &params, &p) {
                    return p;
                }
            }
        };
        tokio::time::timeout(TIMEOUT, fut)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    pub async fn join(&mut self, channel: &str) {
        self.send(&format!("JOIN {channel}")).await;
        let ch = channel.to_owned();
        self.expect(
            &format!("end of names for {channel}"),
            move |cmd, params, _| {
                cmd == "366" && params.get(1).is_some_and(|c| c.eq_ignore_ascii_case(&ch))
            },
        )
        .await;
    }

    /// Wait for a PRIVMSG to `target` whose text contains `needle`; returns the text.
    pub async fn expect_privmsg(&mut self, target: &str, needle: &str) -> String {
        let t = target.to_owned();
        let n = needle.to_owned();
        let p = self
            .expect(
                &format!("PRIVMSG {target} containing {needle:?}"),
                move |cmd, params, _| {
                    cmd == "PRIVMSG"
                        && params.first().is_some_and(|x| x.eq_ignore_ascii_case(&t))
                        && params.get(1).is_some_and(|x| x.contains(&n))
                },
            )
            .await;
        parse::command_params(&p.message)
            .1
            .get(1)
            .cloned()
            .unwrap_or_default()
    }

    /// Wait until `nick` joins `channel` (as seen by this client).
    pub async fn expect_join(&mut self, nick_prefix: &str, channel: &str) {
        let n = nick_prefix.to_owned();
        let ch = channel.to_owned();
        self.expect(
            &format!("{nick_prefix} joining {channel}"),
            move |cmd, params, p| {
                cmd == "JOIN"
                    && params.first().is_some_and(|c| c.eq_ignore_ascii_case(&ch))
                    && p.source.as_ref().is_some_and(|s| s.nick.starts_with(&n))
            },
        )
        .await;
    }
}

/// Stands in for the gateway: records what the connector emits.
#[derive(Default)]
pub struct Collector {
    events: Mutex<Vec<Inbound>>,
    notify: Notify,
}

#[async_trait]
impl Emit for Collector {
    async fn emit(&self, _account: &str, inbound: Inbound) -> Result<Option<EventId>, EmitError> {
        self.events.lock().expect("lock").push(inbound);
        self.notify.notify_waiters();
        Ok(Some(EventId::new()))
    }
}

impl Collector {
    pub fn all(&self) -> Vec<Inbound> {
        self.events.lock().expect("lock").clone()
    }

    /// Plain texts of messages (not echoes) in `room`, in order.
    pub fn texts(&self, room: &str) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|e| e.room == room && !e.is_echo)
            .filter_map(|e| match e.kind {
                patchbay_sdk::Kind::Message { body, .. } => Some(body.to_plain()),
                _ => None,
            })
            .collect()
    }

    /// Wait until an emitted event satisfies `pred`.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Inbound) -> bool) -> Inbound {
        let fut = async {
            loop {
                let notified = self.notify.notified();
                if let Some(e) = self.all().into_iter().find(|e| pred(e)) {
                    return e;
                }
                let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
            }
        };
        tokio::time::timeout(TIMEOUT, fut)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}; got {:#?}", self.all()))
    }

    /// Wait until `room` has at least `n` messages.
    pub async fn wait_texts(&self, room: &str, n: usize) -> Vec<String> {
        let fut = async {
            loop {
                let notified = self.notify.notified();
                let texts = self.texts(room);
                if texts.len() >= n {
                    return texts;
                }
                let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
            }
        };
        tokio::time::timeout(TIMEOUT * 3, fut)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out waiting for {n} messages in {room}; got {:#?}",
                    self.texts(room)
                )
            })
    }
}

/// A connector running against a test server, with its own collector.
pub struct Running {
    pub connector: Arc<dyn Connector>,
    pub events: Arc<Collector>,
    pub state: watch::Receiver<ConnectorState>,
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<Result<(), patchbay_sdk::ConnectorError>>,
}

pub fn account(data_dir: &Path) -> AccountInfo {
    AccountInfo {
        account: "irc.test".into(),
        config_dir: data_dir.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
    }
}

/// Build and run a connector from a TOML table body.
pub fn start_connector(toml_body: &str, data_dir: &Path) -> Running {
    let table: toml::Table = toml::from_str(toml_body).expect("test config parses");
    let connector = patchbay_irc::IrcFactory
        .build(&account(data_dir), table)
        .expect("test config is valid");
    let events = Arc::new(Collector::default());
    let (state_handle, state) = StateHandle::new();
    let shutdown = CancellationToken::new();
    let ctx = ConnectorContext {
        account: "irc.test".into(),
        sink: EventSink::new("irc.test", events.clone()),
        state: state_handle,
        shutdown: shutdown.clone(),
        data_dir: PathBuf::from(data_dir),
    };
    let c = connector.clone();
    let handle = tokio::spawn(async move { c.run(ctx).await });
    Running {
        connector,
        events,
        state,
        shutdown,
        handle,
    }
}

impl Running {
    pub async fn wait_state(&mut self, what: &str, pred: impl Fn(&ConnectorState) -> bool) {
        let fut = async {
            loop {
                if pred(&self.state.borrow_and_update()) {
                    return;
                }
                if self.state.changed().await.is_err() {
                    panic!("connector stopped while waiting for {what}");
                }
            }
        };
        tokio::time::timeout(TIMEOUT, fut)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}: {:?}", self.state.borrow()));
    }

    pub async fn wait_up(&mut self) {
        self.wait_state("up", |s| *s == ConnectorState::Up).await;
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(TIMEOUT, self.handle).await;
    }
}

/// A delivery of `text` from `nick` into `room`, as the gateway would make it.
pub fn delivery(room: &str, nick: &str, body: RichText) -> Delivery {
    let inbound = Inbound::message("#elsewhere", Author::named(nick), body);
    Delivery {
        room: room.into(),
        event: Event::from_inbound("test.src", inbound),
        nick: nick.into(),
        route: "test".into(),
        quote: None,
    }
}

/// Deliver like the gateway's worker: retry retryable errors until it succeeds.
pub async fn deliver(connector: &Arc<dyn Connector>, d: Delivery) -> Delivered {
    let fut = async {
        loop {
            match connector.deliver(d.clone()).await {
                Ok(done) => return done,
                Err(DeliveryError::Retryable { retry_after, .. }) => {
                    tokio::time::sleep(
                        retry_after
                            .unwrap_or(Duration::from_millis(200))
                            .min(Duration::from_millis(500)),
                    )
                    .await;
                }
                Err(e) => panic!("delivery failed permanently: {e}"),
            }
        }
    };
    tokio::time::timeout(TIMEOUT * 3, fut)
        .await
        .expect("delivered in time")
}
