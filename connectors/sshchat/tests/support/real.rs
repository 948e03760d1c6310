//! The real servers from `../shared/peers/` (Devzat with its plugin API, ssh-chat), each on
//! free loopback ports with its state in a temporary directory, stopped when dropped.
//!
//! A test that needs one and cannot find it prints why and returns: it is skipped, never
//! passed by pretending. `PATCHBAY_PEERS` overrides where the builds are.

// The servers themselves: shared with the gateway's end-to-end tests through the test server
// crate.
use patchbay_sshchat_testserver::real::{RealDevzat, RealSshChat};

/// A real server with its state in a temporary directory of its own, removed after it.
pub struct InTempDir<S> {
    server: S,
    _dir: tempfile::TempDir,
}

/// The real Devzat (`run-devzat.sh`).
pub type Devzat = InTempDir<RealDevzat>;

/// The real ssh-chat.
pub type SshChat = InTempDir<RealSshChat>;

impl Devzat {
    /// Start Devzat, anti-spam on unless asked otherwise, or `None` (with the reason printed)
    /// when the build is not here.
    pub async fn start(antispam: bool) -> Option<Devzat> {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = RealDevzat::start(dir.path(), antispam).await?;
        Some(InTempDir { server, _dir: dir })
    }

    /// The table of the account `relay` on this server over its plugin API with `token`,
    /// reconnecting after 1 to 2 s.
    pub fn plugin_config(&self, token: &str) -> String {
        format!(
            "server = \"{}\"\ndialect = \"devzat\"\nnick = \"relay\"\nreconnect_min_secs = 1\nreconnect_max_secs = 2\nplugin = {{ address = \"{}\", token = \"{token}\" }}\n",
            self.ssh_addr(),
            self.plugin_addr(),
        )
    }
}

impl SshChat {
    /// Start ssh-chat, or `None` (with the reason printed) when the build is not here.
    pub async fn start() -> Option<SshChat> {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = RealSshChat::start(dir.path()).await?;
        Some(InTempDir { server, _dir: dir })
    }
}

impl<S> std::ops::Deref for InTempDir<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.server
    }
}

impl<S> std::ops::DerefMut for InTempDir<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.server
    }
}
