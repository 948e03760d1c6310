//! Config errors that point at the file, line and column of the key they are about.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line and column; 0 when the problem is with the file as a whole.
    pub line: usize,
    pub column: usize,
    /// The dotted key the problem is about (`route[1].inout`, `irc.libera.port`).
    pub key: String,
    /// What is wrong and what would be right.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": `{}`: {}", self.key, self.message)
        }
    }
}

/// Every problem found in a config file: loading reports them all at once.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        writeln!(
            f,
            "{count} error{} in the config:",
            if count == 1 { "" } else { "s" }
        )?;
        for diagnostic in &self.0 {
            writeln!(f, "  {diagnostic}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics for one source file, turning byte spans into lines and columns.
pub struct Collector<'a> {
    file: &'a Path,
    source: &'a str,
    /// Errors: the file is not loaded.
    pub diagnostics: Vec<Diagnostic>,
    /// What loads but should change; reported beside a loaded config, never instead of it.
    pub warnings: Vec<Diagnostic>,
}

impl<'a> Collector<'a> {
    pub fn new(file: &'a Path, source: &'a str) -> Self {
        Collector {
            file,
            source,
            diagnostics: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn error(
        &mut self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.diagnostics
            .push(self.at(span, key.into(), message.into()));
    }

    pub fn warning(
        &mut self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.warnings
            .push(self.at(span, key.into(), message.into()));
    }

    fn at(&self, span: Option<Range<usize>>, key: String, message: String) -> Diagnostic {
        let (line, column) = match span {
            Some(span) => line_column(self.source, span.start),
            None => (0, 0),
        };
        Diagnostic {
            file: self.file.to_owned(),
            line,
            column,
            key,
            message,
        }
    }

    /// Record a serde/toml error, adding a did-you-mean to unknown-key errors.
    pub fn toml_error(&mut self, err: &toml::de::Error, key: impl Into<String>) {
        self.error(err.span(), key, with_suggestion(err.message()))
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The closest candidate to a misspelt name, if it is close enough to be what was meant.
pub fn closest<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        // The first of equally close candidates wins.
        .fold(None, |best: Option<(f64, &str)>, (score, c)| match best {
            Some((best_score, _)) if best_score >= score => best,
            _ => Some((score, c)),
        })
        .map(|(_, c)| c)
}

/// serde reports unknown keys as "unknown field `x`, expected one of `a`, `b`": add the
/// nearest expected key, if one is near.
pub fn with_suggestion(message: &str) -> String {
    // toml appends "in `key`" lines; a diagnostic names its key already.
    let lines: Vec<&str> = message
        .trim_end()
        .lines()
        .filter(|line| !line.starts_with("in `"))
        .collect();
    let message = lines.join("\n");
    let message = message.as_str();
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_owned();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message.to_owned();
    };
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match closest(unknown, candidates.iter().copied()) {
        Some(best) => format!("{message}; did you mean `{best}`?"),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based() {
        assert_eq!(line_column("a = 1\nbé = 2\n", 0), (1, 1));
        assert_eq!(line_column("a = 1\nbé = 2\n", 9), (2, 3));
    }

    #[test]
    fn suggests_the_nearest_expected_key() {
        assert_eq!(
            with_suggestion("unknown field `nik`, expected one of `nick`, `server`"),
            "unknown field `nik`, expected one of `nick`, `server`; did you mean `nick`?"
        );
        assert_eq!(
            with_suggestion("unknown field `zzz`, expected `nick`"),
            "unknown field `zzz`, expected `nick`"
        );
    }
}
