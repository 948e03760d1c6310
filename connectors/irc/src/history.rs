//! Catching up without duplicates.
//!
//! After a reconnect a server may replay recent channel history (InspIRCd's chanhistory on
//! join, or `CHATHISTORY AFTER` where `draft/chathistory` is offered). Each channel keeps a mark:
//! the server-time of the newest message relayed and the msgids of the last messages relayed.
//! A message whose msgid was relayed is a duplicate. Otherwise it is new when it is not older than
//! the mark — compared at whole seconds when it has a msgid, because chanhistory replays times
//! truncated to the second. A channel seen for the first time is marked at the server-time of our
//! own JOIN, so history from before the bridge existed is not relayed. Marks are saved in the
//! connector's data directory, so a restarted bridge catches up too. Lines without server-time
//! (servers without IRCv3) are always live.

use std::collections::HashMap;
use std::path::PathBuf;

use patchbay_sdk::Timestamp;

use crate::parse::{MsgTags, fold_case};

/// The newest relayed point of one channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    pub time: i64,
    /// The ids of the last messages relayed, oldest first (at most [`KEEP_IDS`]).
    pub ids: Vec<String>,
}

/// How many recent msgids a channel remembers: more than a server replays on join.
pub const KEEP_IDS: usize = 300;

#[derive(Debug, Default)]
pub struct History {
    path: Option<PathBuf>,
    marks: HashMap<String, Mark>,
    dirty: bool,
}

impl History {
    /// Load the marks saved in `path` (missing or unreadable files start empty; a bad line is
    /// skipped).
    pub fn load(path: Option<PathBuf>) -> Self {
        let mut marks = HashMap::new();
        if let Some(p) = &path
            && let Ok(text) = std::fs::read_to_string(p)
        {
            for line in text.lines() {
                let mut parts = line.split('\t');
                let (Some(channel), Some(time)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let Ok(time) = time.parse::<i64>() else {
                    continue;
                };
                let ids = parts
                    .next()
                    .map(|s| {
                        s.split(' ')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                marks.insert(channel.to_owned(), Mark { time, ids });
            }
        }
        History {
            path,
            marks,
            dirty: false,
        }
    }

    pub fn mark(&self, channel: &str) -> Option<&Mark> {
        self.marks.get(&fold_case(channel))
    }

    /// Give `channel` a mark from what the gateway last accepted from it, if it has none of
    /// its own (a fresh data dir: another instance ran the account until now). Catch-up then
    /// starts where the gateway's record stops rather than at our join.
    pub fn seed(&mut self, channel: &str, time: Timestamp, id: Option<String>) {
        if let std::collections::hash_map::Entry::Vacant(entry) =
            self.marks.entry(fold_case(channel))
        {
            entry.insert(Mark {
                time: time.0,
                ids: id.into_iter().collect(),
            });
            self.dirty = true;
        }
    }

    /// We joined `channel` at server-time `time`: a channel without a mark starts there.
    pub fn joined(&mut self, channel: &str, time: Option<Timestamp>) {
        let Some(time) = time else { return };
        if let std::collections::hash_map::Entry::Vacant(entry) =
            self.marks.entry(fold_case(channel))
        {
            entry.insert(Mark {
                time: time.0,
                ids: Vec::new(),
            });
            self.dirty = true;
        }
    }

    /// Whether a message with these tags in `channel` is new.
    pub fn is_new(&self, channel: &str, tags: &MsgTags) -> bool {
        let Some(mark) = self.marks.get(&fold_case(channel)) else {
            return true;
        };
        if let Some(id) = &tags.msgid
            && mark.ids.contains(id)
        {
            return false;
        }
        match (tags.time, &tags.msgid) {
            (None, _) => true,
            (Some(t), Some(_)) => t.0 >= mark.time.div_euclid(1000) * 1000,
            (Some(t), None) => t.0 > mark.time,
        }
    }

    /// Record that a message with these tags was relayed (or seen) in `channel`.
    pub fn relayed(&mut self, channel: &str, tags: &MsgTags) {
        if tags.time.is_none() && tags.msgid.is_none() {
            return;
        }
        let mark = self.marks.entry(fold_case(channel)).or_default();
        if let Some(time) = tags.time {
            mark.time = mark.time.max(time.0);
        }
        if let Some(id) = &tags.msgid
            && !id.contains(['\t', ' ', '\n'])
            && !mark.ids.contains(id)
        {
            mark.ids.push(id.clone());
            if mark.ids.len() > KEEP_IDS {
                let excess = mark.ids.len() - KEEP_IDS;
                mark.ids.drain(..excess);
            }
        }
        self.dirty = true;
    }

    /// Write the marks if they changed. Written to a temporary file and renamed, so a crash
    /// leaves the old marks, never half a file.
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut out = String::new();
        for (channel, mark) in &self.marks {
            out.push_str(&format!(
                "{channel}\t{}\t{}\n",
                mark.time,
                mark.ids.join(" ")
            ));
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, out)?;
        std::fs::rename(&tmp, path)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(time: i64, id: &str) -> MsgTags {
        MsgTags {
            time: Some(Timestamp(time)),
            msgid: Some(id.into()),
            ..MsgTags::default()
        }
    }

    #[test]
    fn replay_after_mark_only() {
        let mut h = History::load(None);
        h.joined("#C", Some(Timestamp(100_500)));
        assert!(!h.is_new("#c", &tags(50_000, "old")));
        assert!(h.is_new("#c", &tags(150_000, "a")));
        h.relayed("#c", &tags(150_250, "a"));
        h.relayed("#c", &tags(150_700, "b"));
        // Replayed after a reconnect with times cut to the second: a and b are known by id,
        // c in the same second and d later are new, anything before that second is old.
        assert!(!h.is_new("#c", &tags(150_000, "a")));
        assert!(!h.is_new("#c", &tags(150_000, "b")));
        assert!(h.is_new("#c", &tags(150_000, "c")));
        assert!(h.is_new("#c", &tags(151_000, "d")));
        assert!(!h.is_new("#c", &tags(149_000, "e")));
        // A rejoin does not move an existing mark.
        h.joined("#c", Some(Timestamp(500_000)));
        assert!(h.is_new("#c", &tags(151_000, "d")));
        // Lines without server-time are always live; without an id, only later ones are new.
        assert!(h.is_new("#c", &MsgTags::default()));
        let no_id = |t| MsgTags {
            time: Some(Timestamp(t)),
            ..MsgTags::default()
        };
        assert!(!h.is_new("#c", &no_id(150_700)));
        assert!(h.is_new("#c", &no_id(150_701)));
    }

    #[test]
    fn remembers_a_bounded_number_of_ids() {
        let mut h = History::load(None);
        for i in 0..(KEEP_IDS + 10) {
            h.relayed("#c", &tags(i as i64, &format!("id{i}")));
        }
        assert_eq!(h.mark("#c").expect("mark").ids.len(), KEEP_IDS);
        assert!(!h.is_new("#c", &tags(KEEP_IDS as i64, &format!("id{}", KEEP_IDS))));
    }

    #[test]
    fn marks_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("marks.tsv");
        let mut h = History::load(Some(path.clone()));
        h.joined("#a", Some(Timestamp(10)));
        h.relayed("#a", &tags(20, "x"));
        h.save().expect("save");
        let h = History::load(Some(path));
        assert_eq!(
            h.mark("#A"),
            Some(&Mark {
                time: 20,
                ids: vec!["x".into()]
            })
        );
    }
}
