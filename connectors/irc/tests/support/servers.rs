//! The IRC servers tests run against: ngircd and InspIRCd (optionally with TLS and Atheme
//! services), each configured in its own temp dir, on a free 127.0.0.1 port, killed on drop;
//! and a gate (TCP proxy) that lets a test decide when a bridge may reconnect.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::{TIMEOUT, TestClient, free_port, logging_to};
use patchbay_irc::parse;

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
<options prefixquit="Quit: " syntaxhints="no" defaultmodes="notH 100:1d">
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
<module name="blockcaps">
<blockcaps percent="50" minlen="5">
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
        let mut command = Command::new("atheme-services");
        command
            .arg("-n")
            .arg("-c")
            .arg(d.join("atheme.conf"))
            .arg("-l")
            .arg(d.join("atheme.log"))
            .arg("-p")
            .arg(d.join("atheme.pid"))
            .arg("-D")
            .arg(d);
        let child = logging_to(&mut command, &d.join("services.out"))
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
        logging_to(&mut cmd, &d.join("server.out"));
        cmd
    }

    /// Start (or start again, on the same port) and wait until a client can register.
    pub async fn start(&mut self) {
        let child = self.command().spawn().expect("start the IRC server");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while !TestClient::probe(self.port, &self.password).await {
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
/// connections are dropped at once. It lets a test decide when a bridge may reconnect; with
/// [`Gate::cut`] it also ends the connections open through it (a network failure).
pub struct Gate {
    pub port: u16,
    open: Arc<std::sync::atomic::AtomicBool>,
    links: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    pub async fn new(upstream: u16) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gate");
        let port = listener.local_addr().expect("addr").port();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let links = Arc::new(std::sync::Mutex::new(Vec::new()));
        let flag = open.clone();
        let held = links.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                held.lock().expect("gate links").push(link);
            }
        });
        Gate {
            port,
            open,
            links,
            task,
        }
    }

    pub fn set_open(&self, open: bool) {
        self.open.store(open, std::sync::atomic::Ordering::SeqCst);
    }

    /// Drop every connection open through the gate (both ends see the socket close).
    pub fn cut(&self) {
        for link in self.links.lock().expect("gate links").drain(..) {
            link.abort();
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
