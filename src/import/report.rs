//! What the import could not carry over, or carried over with a difference: each finding
//! names the matterbridge key (`irc.libera.SkipTLSVerify`, `gateway "main".inout[2]`) and why.

use std::fmt;

/// How a setting fared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Left out of the patchbay config: patchbay has no equivalent, or would refuse it.
    Skipped,
    /// Carried over, but patchbay behaves somewhat differently; the reason says how.
    Changed,
}

/// One setting and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub outcome: Outcome,
    /// The key path in the matterbridge file.
    pub key: String,
    pub reason: String,
}

/// The findings of one import, in the order they were made, without repeats.
#[derive(Clone, Debug, Default)]
pub struct Findings(Vec<Finding>);

impl Findings {
    /// Record a setting that is not carried over.
    pub fn skip(&mut self, key: &str, reason: impl Into<String>) {
        self.push(Outcome::Skipped, key, reason.into());
    }

    /// Record a setting carried over with a difference.
    pub fn change(&mut self, key: &str, reason: impl Into<String>) {
        self.push(Outcome::Changed, key, reason.into());
    }

    fn push(&mut self, outcome: Outcome, key: &str, reason: String) {
        let finding = Finding {
            outcome,
            key: key.to_owned(),
            reason,
        };
        if !self.0.contains(&finding) {
            self.0.push(finding);
        }
    }

    /// Forget what was found about the keys of `account` (`irc.libera`): the account is left
    /// out and reported as a whole.
    pub fn forget_keys_of(&mut self, account: &str) {
        let prefix = format!("{account}.");
        self.0.retain(|f| !f.key.starts_with(&prefix));
    }

    pub fn all(&self) -> &[Finding] {
        &self.0
    }

    pub fn skipped(&self) -> impl Iterator<Item = &Finding> {
        self.0.iter().filter(|f| f.outcome == Outcome::Skipped)
    }

    pub fn changed(&self) -> impl Iterator<Item = &Finding> {
        self.0.iter().filter(|f| f.outcome == Outcome::Changed)
    }
}

/// The list printed on standard error: what was left out, then what changed.
impl fmt::Display for Findings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups = [
            ("not carried over", Outcome::Skipped),
            ("carried over with a difference", Outcome::Changed),
        ];
        for (title, outcome) in groups {
            let items: Vec<&Finding> = self.0.iter().filter(|x| x.outcome == outcome).collect();
            if items.is_empty() {
                continue;
            }
            writeln!(f, "{title} ({}):", items.len())?;
            for item in items {
                writeln!(f, "  {}: {}", item.key, item.reason)?;
            }
        }
        Ok(())
    }
}
